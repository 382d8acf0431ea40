"""The command line as a user meets it: files written, one-line errors, exit codes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from factories import SECRET, copy_sample

NOW = "2026-11-27T09:00"


@pytest.fixture
def sample(tmp_path) -> Path:
    return copy_sample(tmp_path)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_build_writes_html_text_and_eml(sample, tmp_path):
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Built 2026-W48: ")
    assert "Subject: Statecraft Weekly: " in result.stdout
    for ext in ("html", "txt", "eml"):
        assert (tmp_path / "out" / f"2026-W48.{ext}").stat().st_size > 1000
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_build_json_prints_one_object(sample, tmp_path):
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["issue"] == "2026-W48"
    assert data["subject"].startswith("Statecraft Weekly: ")


def test_a_different_week_is_a_different_issue(sample, tmp_path):
    result = run("build", "--config", str(sample), "--now", "2026-11-20T09:00", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["issue"] == "2026-W47"
    later = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path), "--json")
    titles_47 = {a["title"] for s in data["sections"] for a in s["articles"]}
    titles_48 = {a["title"] for s in json.loads(later.stdout)["sections"] for a in s["articles"]}
    assert titles_47 and titles_48 and not titles_47 & titles_48


def test_bad_config_key_is_one_line_and_exit_2(sample, tmp_path):
    edit(sample, "min_items = 3", "min_itmes = 3")
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "config.toml: [issue] min_itmes: unknown key" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nobody listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed.xml"


def unreachable_analysis_feed(config: Path) -> str:
    """Point the sample's second feed at a dead server, tried once."""
    url = refused_url()
    edit(config, 'url = "examples/feeds/analysis.atom"', f'url = "{url}"')
    edit(config, "retries = 3", "retries = 0")
    return url


def test_one_unreachable_feed_of_two_is_named_and_the_issue_built_from_the_other(sample, tmp_path):
    unreachable_analysis_feed(sample)
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    warning = 'digest: warning: feed down, left out of this issue: feed "Statecraft Analysis": could not connect'
    assert warning in result.stderr
    data = json.loads(result.stdout)
    assert any(w.startswith('feed down, left out of this issue: feed "Statecraft Analysis"') for w in data["warnings"])
    assert not data["thin"]
    assert sum(len(s["articles"]) for s in data["sections"]) == 11  # the first feed's; 14 with both
    assert (tmp_path / "out" / "2026-W48.eml").exists()


def test_a_missing_feed_file_is_a_feed_down_too(sample, tmp_path):
    edit(sample, 'url = "examples/feeds/analysis.atom"', 'url = "examples/feeds/missing.atom"')
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Built 2026-W48: 11 article(s)")  # 14 with both feeds
    assert 'feed "Statecraft Analysis": no such file ' in result.stderr and "missing.atom" in result.stderr


def test_require_all_fails_the_build_on_one_feed_down_in_one_line(sample, tmp_path):
    unreachable_analysis_feed(sample)
    edit(sample, "require_all = false", "require_all = true")
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith('digest: error: feed "Statecraft Analysis": could not connect (')
    assert result.stderr.rstrip().endswith("[fetch] require_all = true builds no issue without every feed")
    assert not (tmp_path / "out").exists()


def test_every_feed_down_fails_in_one_line_naming_each(sample, tmp_path):
    unreachable_analysis_feed(sample)
    edit(sample, 'url = "examples/feeds/statecraft.rss"', 'url = "examples/feeds/gone.rss"')
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith('digest: error: no feed could be read: feed "Statecraft": no such file ')
    assert 'feed "Statecraft Analysis": could not connect' in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_feed_down_and_a_thin_rest_is_no_issue(sample, tmp_path):
    # 14 articles with both feeds, 11 from the first alone: a thin week only without the second.
    edit(sample, "min_items = 3", "min_items = 12")
    assert run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "all")).exit_code == 0
    unreachable_analysis_feed(sample)
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    error = result.stderr
    assert error.startswith('digest: error: feed "Statecraft Analysis": could not connect')
    assert "the other feeds make only a thin week (11 article(s), fewer than [issue] min_items = 12)" in error
    assert not (tmp_path / "out").exists()


def test_empty_week_is_an_error_not_an_empty_issue(sample, tmp_path):
    # A first run remembers when it first saw the sample's undated item (in week 48).
    assert run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "w48")).exit_code == 0
    result = run("build", "--config", str(sample), "--now", "2027-06-01T09:00", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    # --now without an offset is New York time, and the window is given in it, zone named.
    assert "no articles published between 2027-05-25 09:00 and 2027-06-01 09:00 (America/New_York)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_build_refuses_a_week_whose_articles_were_all_sent_as_send_does(sample, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    assert run("send", "--config", str(sample), "--now", NOW).exit_code == 0  # 2026-W48 goes out
    monday = "2026-11-30T09:00"  # 2026-W49: its window holds only articles W48 carried
    built = run("build", "--config", str(sample), "--now", monday, "--out", str(tmp_path / "out"))
    sent = run("send", "--config", str(sample), "--now", monday)
    assert built.exit_code == sent.exit_code == 1
    assert built.stderr.count("\n") == 1 and built.stdout == ""
    assert built.stderr.startswith(
        "digest: error: no new articles published between 2026-11-23 09:00 and 2026-11-30 09:00 "
        "(America/New_York): all "
    )
    assert "already sent in an earlier issue" in built.stderr
    assert built.stderr.splitlines()[-1] == sent.stderr.splitlines()[-1]  # the same refusal
    assert not (tmp_path / "out").exists()


def test_thin_week_is_built_with_a_plain_warning(sample, tmp_path):
    edit(sample, "min_items = 3", "min_items = 50")
    result = run("build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert "(thin week)" in result.stdout
    assert "digest: warning: thin week: " in result.stderr


def test_bad_now_is_a_usage_error(sample):
    result = run("build", "--config", str(sample), "--now", "next friday")
    assert result.exit_code == 2
    assert "'next friday' is not an ISO-8601 time" in result.stderr


def test_debug_shows_the_traceback(sample, tmp_path):
    edit(sample, "min_items = 3", "min_itmes = 3")
    result = run("--debug", "build", "--config", str(sample), "--now", NOW)
    assert result.exit_code != 0
    assert result.exc_info is not None and result.exc_info[0].__name__ == "ConfigError"


def test_console_script_and_module_entry_points(sample, tmp_path):
    for prefix in ([sys.executable, "-m", "digest"], [str(Path(sys.executable).with_name("digest"))]):
        proc = subprocess.run(
            [*prefix, "build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "o"), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["issue"] == "2026-W48"


def test_a_build_loads_nothing_it_does_not_use(sample, tmp_path):
    """What a build never uses stays unread: requests (premailer's, for style sheets on the web),
    limits (the sign-up counters of `digest serve`), the PostgreSQL dialect in a SQLite build,
    and pydantic's search of every installed package for plugins. (The first build on a new
    database runs the migrations, and Alembic loads every dialect: this is the next one.)"""
    probe = (
        "import sys\n"
        "from digest.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "from pydantic.plugin import _loader\n"
        "loaded = {'requests': type(sys.modules['requests']).__name__}\n"
        "loaded['plugins searched'] = _loader._plugins is not None\n"
        "for name in ('limits', 'urllib3', 'sqlalchemy.dialects.postgresql'):\n"
        "    loaded[name] = name in sys.modules\n"
        "print(loaded)\n"
    )
    args = ["build", "--config", str(sample), "--now", NOW, "--out", str(tmp_path / "o")]
    assert run(*args).exit_code == 0
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "2026-W48.html").is_file()
    assert proc.stdout.splitlines()[-1] == str(
        {
            "requests": "_Deferred",
            "plugins searched": False,
            "limits": False,
            "urllib3": False,
            "sqlalchemy.dialects.postgresql": False,
        }
    )
