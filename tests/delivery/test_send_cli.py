"""`digest subscribers` and `digest send` as an operator uses them, with the embedded defaults
(a SQLite file in the data directory and the outbox transport)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

import hostile
from digest.cli import cli
from digest.delivery.tokens import Signer
from factories import KEY, SECRET, copy_sample, html_of, read_eml, text_of

NOW = "2026-11-27T09:00"


@pytest.fixture
def sample(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    return copy_sample(tmp_path)


def run(*args: str, secret: str | None = SECRET):
    env = {"DIGEST_SECRET": secret} if secret else {"DIGEST_SECRET": ""}
    return CliRunner(env=env).invoke(cli, list(args))


def imported(sample: Path):
    result = run("subscribers", "import", "--config", str(sample), str(sample.parent / "examples/subscribers.csv"))
    assert result.exit_code == 0, result.output
    return result


def outbox(sample: Path) -> list[Path]:
    return sorted((sample.parent / ".digest" / "outbox" / KEY).glob("*.eml"))


def test_import_reports_bad_rows_by_line_and_merges_duplicates(sample):
    result = imported(sample)
    assert "5 added, 0 updated, 0 unchanged, 2 bad row(s) skipped, 1 duplicate(s) merged" in result.stdout
    assert "subscribers.csv:6: 'not-an-address' is not a valid email address" in result.stderr
    assert "subscribers.csv:9: unknown section 'Antarctica'" in result.stderr
    listing = run("subscribers", "list", "--config", str(sample)).stdout.splitlines()
    assert "ben.okafor@example.org\tBen Okafor\tactive\tAsia-Pacific; Middle East" in {
        line.replace("Ben.Okafor@example.org", "ben.okafor@example.org") for line in listing
    }
    assert "ana.lima@example.net\tAna M. Lima\tactive\tall sections" in listing  # the later row won


ENCODED_NAME = "=?utf-8?q?Eve=0D=0ABcc:_all@example.com?="


def test_import_reports_names_that_would_break_a_header_by_line(sample, tmp_path):
    path = tmp_path / "names.csv"
    path.write_text(
        "email,name\n"
        "ok@example.org,Ok Reader\n"
        f"eve@example.org,{ENCODED_NAME}\n"
        'nul@example.org,"Nul\x00Reader"\n'
        'two@example.org,"Two\nLines"\n'
        "zoe@example.org,Zoë =? not encoded\n"
        f"long@example.org,{'x' * 201}\n",
        encoding="utf-8",
    )
    result = run("subscribers", "import", "--config", str(sample), str(path))
    assert result.exit_code == 0, result.output
    assert "2 added, 0 updated, 0 unchanged, 4 bad row(s) skipped" in result.stdout
    assert result.stderr.splitlines() == [
        f"digest: warning: {path}:3: name '{ENCODED_NAME}' contains an RFC 2047 encoded word (=?...?=), which mail "
        "programs decode; row skipped",
        f"digest: warning: {path}:4: name 'Nul\\x00Reader' contains a line break or control character; row skipped",
        f"digest: warning: {path}:6: name 'Two\\nLines' contains a line break or control character; row skipped",
        f"digest: warning: {path}:8: name '{'x' * 20}'... has 201 characters; the most a name may have is 200; "
        "row skipped",
    ]
    listed = run("subscribers", "list", "--config", str(sample)).stdout
    assert [line.split("\t")[:2] for line in listed.splitlines()] == [
        ["ok@example.org", "Ok Reader"],
        ["zoe@example.org", "Zoë =? not encoded"],
    ]


def test_add_refuses_a_name_that_would_break_a_header(sample):
    result = run("subscribers", "add", "--config", str(sample), "eve@example.org", "--name", ENCODED_NAME)
    assert result.exit_code == 2
    assert result.stderr == (
        f"digest: error: name '{ENCODED_NAME}' contains an RFC 2047 encoded word (=?...?=), which mail programs "
        "decode; give the name as plain text\n"
    )
    assert run("subscribers", "list", "--config", str(sample)).stdout == ""


def test_a_stored_name_hiding_a_line_break_fails_nobody_and_adds_no_header(sample):
    # A ledger filled before names were checked: the name goes straight into the store.
    from digest.config import load
    from digest.store import NewSubscriber, Store

    imported(sample)
    store = Store.open(load(sample).database_url)
    store.subscribers.merge([NewSubscriber("eve@example.org", ENCODED_NAME)])  # Eve Adams, in the "all" batch
    store.close()

    result = run("send", "--config", str(sample), "--now", NOW)

    assert result.exit_code == 0, result.output
    assert f"{KEY}: 5 submitted (this run: 5 in 4 batch(es))" in result.stdout
    (eve,) = [p for p in outbox(sample) if b"eve@example.org" in p.read_bytes()]
    raw = eve.read_bytes()
    assert hostile.header_names(raw) == hostile.expected()
    assert hostile.parsed(raw)["To"].addresses[0].display_name == "Eve Bcc: all@example.com"


def test_removed_address_is_not_brought_back_by_a_reimport(sample):
    imported(sample)
    assert run("subscribers", "remove", "--config", str(sample), "ana.lima@example.net").exit_code == 0
    again = imported(sample)
    assert "1 address(es) stay suppressed" in again.stdout
    listed = run("subscribers", "list", "--config", str(sample), "--status", "unsubscribed").stdout
    assert listed.startswith("ana.lima@example.net\t")
    back = run("subscribers", "add", "--config", str(sample), "ana.lima@example.net", "--resubscribe")
    assert back.exit_code == 0
    assert "ana.lima@example.net" in run("subscribers", "list", "--config", str(sample), "--status", "active").stdout


def test_export_round_trips_through_import(sample, tmp_path):
    imported(sample)
    out = tmp_path / "export.csv"
    assert run("subscribers", "export", "--config", str(sample), "--out", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["email"] for r in rows][:2] == ["ana.lima@example.net", "Ben.Okafor@example.org"]
    assert {r["status"] for r in rows} == {"active"}
    again = run("subscribers", "import", "--config", str(sample), str(out))
    assert "0 added, 0 updated, 5 unchanged, 0 bad row(s)" in again.stdout


def test_forget_deletes_and_unknown_address_is_an_error(sample):
    imported(sample)
    assert run("subscribers", "remove", "--config", str(sample), "eve@example.org", "--forget").exit_code == 0
    missing = run("subscribers", "remove", "--config", str(sample), "eve@example.org")
    assert missing.exit_code == 1
    assert missing.stderr == (
        "digest: error: eve@example.org: no such subscriber; check the address with `digest subscribers list`\n"
    )


def test_send_writes_one_message_per_subscriber_and_a_rerun_sends_nothing(sample):
    imported(sample)
    first = run("send", "--config", str(sample), "--now", NOW)
    assert first.exit_code == 0, first.output
    # Four variants among the sample's subscribers (all; Asia-Pacific + Middle East; Europe;
    # Military Industrial Complex), one batch each.
    assert f"{KEY}: 5 submitted (this run: 5 in 4 batch(es))" in first.stdout
    files = outbox(sample)
    assert len(files) == 5
    second = run("send", "--config", str(sample), "--now", NOW)
    assert f"{KEY}: 5 submitted (this run: 0 in 0 batch(es))" in second.stdout
    assert outbox(sample) == files
    run("subscribers", "add", "--config", str(sample), "new@example.org", "--name", "New Reader")
    third = run("send", "--config", str(sample), "--now", NOW)
    assert "(this run: 1 in 1 batch(es))" in third.stdout
    assert len(outbox(sample)) == 6


def test_each_message_carries_its_own_signed_unsubscribe_link(sample):
    imported(sample)
    run("send", "--config", str(sample), "--now", NOW)
    status = json.loads(run("status", "--config", str(sample), "--json").stdout)
    assert status == {"issue": KEY, "counts": {"submitted": 5}, "problems": []}
    seen = set()
    for path in outbox(sample):
        msg = read_eml(path)
        link = msg["List-Unsubscribe"].strip("<>")
        assert link.startswith("https://newsletter.responsiblestatecraft.example/unsubscribe?t=")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        query = parse_qs(urlsplit(link).query)
        subscriber = Signer(SECRET).subscriber_id(query["t"][0])
        assert query["i"] == [KEY]  # the issue it came from, for the desk's report
        html, text = html_of(msg), text_of(msg)
        assert link in text and link in html.replace("&amp;", "&")
        assert "%%" not in html and "%%" not in text
        seen.add((subscriber, msg["To"]))
    assert len(seen) == 5


def test_test_copy_is_marked_and_recorded_nowhere(sample):
    imported(sample)
    result = run("send", "--config", str(sample), "--now", NOW, "--to", "editor@example.org")
    assert result.exit_code == 0, result.output
    (copy,) = (sample.parent / ".digest" / "outbox" / f"test-{KEY}").glob("*.eml")
    assert read_eml(copy)["Subject"].startswith("[TEST] ")
    status = run("status", "--config", str(sample))
    assert status.exit_code == 1 and "no recorded issue" in status.stderr


def test_dry_run_records_and_sends_nothing(sample):
    imported(sample)
    result = run("send", "--config", str(sample), "--now", NOW, "--dry-run", secret=None)
    assert result.exit_code == 0, result.output
    assert "would go to 5 active subscriber(s)" in result.stdout
    assert outbox(sample) == []


def test_thin_week_is_not_sent(sample):
    imported(sample)
    text = sample.read_text().replace("min_items = 3", "min_items = 50")
    sample.write_text(text)
    result = run("send", "--config", str(sample), "--now", NOW)
    assert result.exit_code == 1
    assert result.stderr == (
        "digest: error: 2026-W48: thin week: 14 new article(s), fewer than [issue] min_items = 50; not sent; "
        "lower min_items or wait for more articles\n"
    )
    assert outbox(sample) == []


def test_without_a_secret_nothing_is_recorded_or_sent(sample):
    imported(sample)
    result = run("send", "--config", str(sample), "--now", NOW, secret=None)
    assert result.exit_code == 2  # a missing secret is a configuration problem, like a bad key
    assert result.stderr.startswith("digest: error: $DIGEST_SECRET is not set: it signs the unsubscribe links")
    assert result.stderr.count("\n") == 1
    assert outbox(sample) == []


def section_headings(path: Path) -> list[str]:
    import re

    return re.findall(r'<h2 class="section-name"[^>]*>([^<]+)</h2>', html_of(read_eml(path)))


def test_subscribers_get_only_the_sections_they_chose(sample, monkeypatch):
    from digest.issue import render

    imported(sample)
    calls = []
    real = render.inline_css
    monkeypatch.setattr(render, "inline_css", lambda html: calls.append(1) or real(html))
    assert run("send", "--config", str(sample), "--now", NOW).exit_code == 0
    assert len(calls) == 4  # one inlining per variant, not per subscriber
    by_reader = {}
    for path in outbox(sample):
        to = read_eml(path)["To"]
        by_reader[str(to)] = section_headings(path)
    assert by_reader["Chloé Martin <chloe@example.com>"] == ["Europe"]
    assert by_reader["Ben Okafor <Ben.Okafor@example.org>"] == ["Asia-Pacific", "Middle East"]
    assert by_reader["Eve Adams <eve@example.org>"] == ["Military Industrial Complex"]
    assert by_reader["Dev Patel <dev.patel@example.net>"] == [
        "Asia-Pacific",
        "Military Industrial Complex",
        "Middle East",
        "Europe",
        "Also this week",
    ]


def test_a_choice_with_nothing_this_week_is_skipped_not_sent_empty(sample):
    text = sample.read_text()
    text = text.replace(
        "[issue]\n", '[[sections]]\nname = "Arctic"\ncategories = ["arctic"]\nlimit = 3\n\n[issue]\n', 1
    )
    sample.write_text(text)
    imported(sample)
    run("subscribers", "add", "--config", str(sample), "polar@example.org", "--section", "Arctic")
    result = run("send", "--config", str(sample), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert f"{KEY}: 5 submitted, 1 skipped" in result.stdout
    assert not [p for p in outbox(sample) if "polar" in p.read_text()]
    # A reader who chooses a new combination after the issue was recorded still gets it,
    # rendered from the same articles.
    run(
        "subscribers",
        "add",
        "--config",
        str(sample),
        "late@example.org",
        "--section",
        "Europe",
        "--section",
        "Asia-Pacific",
    )
    again = run("send", "--config", str(sample), "--now", NOW)
    assert "(this run: 1 in 1 batch(es))" in again.stdout
    (late,) = [p for p in outbox(sample) if "late@example.org" in p.read_text()]
    assert section_headings(late) == ["Asia-Pacific", "Europe"]
