"""The config file: a working example, and one clear line for each kind of mistake."""

import re
from pathlib import Path

import pytest

from digest import config
from digest.errors import ConfigError
from factories import ROOT, copy_sample

MINIMAL = """
[newsletter]
name = "T"
from = "T <t@example.org>"
base_url = "https://example.org/"
postal_address = "1 Main St"

[[feeds]]
url = "feed.xml"

[[sections]]
name = "A"
categories = ["a"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_config_is_valid_and_resolves_paths_against_its_directory():
    s = config.load(ROOT / "config.toml")
    assert s.newsletter.name
    assert s.path(s.feeds[0].url).is_file()
    assert s.data_dir == ROOT / ".digest"


def test_minimal_config_gets_defaults(tmp_path):
    s = config.load(write(tmp_path, MINIMAL))
    assert s.issue.window_days == 7
    assert s.newsletter.base_url == "https://example.org"  # trailing slash dropped
    assert s.newsletter.timezone == "UTC"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[[sections]]", "[[sections]]\nlimt = 3"), r"config.toml: \[sections\[1\]\] limt: unknown key"),
        (('name = "T"\n', ""), r"config.toml: \[newsletter\] name: required key is missing"),
        (('categories = ["a"]', 'categories = ["a"]\nlimit = "five"'), r"\[sections\[1\]\] limit: .*integer.*'five'"),
        (("[[feeds]]", "[issue]\nmin_items = 0\n[[feeds]]"), r"\[issue\] min_items: .*greater than or equal to 1"),
        (
            ('base_url = "https://example.org/"', 'base_url = "example.org"\ntimezone = "Mars/Base"'),
            r"\[newsletter\] (base_url|timezone)",
        ),
        (
            ('name = "T"', 'name = "T"\nsubject = "{newsletter} {title}"'),
            r"subject: uses unknown field\(s\) \['title'\]",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, change, expected):
    old, new = change
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(expected, message), message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[render]\naccent = "red"', r"\[render\] accent: .*'red' is not a colour: write it as #rrggbb"),
        ('[render]\nfont = "Arial; color: red"', r"\[render\] font: .*must be a CSS font stack"),
        ('[render]\nlayout = "tiny"', r"\[render\] layout: .*'compact' or 'full'"),
        (
            '[newsletter.logo]\nurl = "logo.png"\nwidth = 200\nheight = 40',
            r"\[newsletter\.logo\] url: must be an absolute http\(s\) URL",
        ),
        (
            '[newsletter.logo]\nurl = "https://example.org/l.png"',
            r"\[newsletter\.logo\] width: required key is missing",
        ),
        ("[delivery.smtp]\nconnections = 0", r"\[delivery\.smtp\] connections: .*greater than or equal to 1"),
        ("[delivery.smtp]\nconnections = 33", r"\[delivery\.smtp\] connections: .*less than or equal to 32"),
    ],
)
def test_bad_look_settings_are_one_line_naming_the_key(tmp_path, extra, expected):
    text = MINIMAL.replace("[[feeds]]", extra + "\n\n[[feeds]]", 1)
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert re.search(expected, str(info.value)), str(info.value)


def test_logo_table_and_the_older_logo_url_both_give_a_logo(tmp_path):
    table = '[newsletter.logo]\nurl = "https://example.org/l.png"\nwidth = 220\nheight = 44\nalt = "T"'
    s = config.load(write(tmp_path, MINIMAL.replace("[[feeds]]", table + "\n\n[[feeds]]", 1)))
    assert s.newsletter.logo == config.Logo(url="https://example.org/l.png", width=220, height=44, alt="T")
    old = MINIMAL.replace(
        'postal_address = "1 Main St"', 'postal_address = "1 Main St"\nlogo_url = "https://e.org/l.png"'
    )
    s = config.load(write(tmp_path, old))
    assert s.newsletter.logo == config.Logo(url="https://e.org/l.png", width=200, height=40)
    assert config.load(write(tmp_path, MINIMAL)).render.layout == "compact"


def test_invalid_toml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 3"):
        config.load(write(tmp_path, '[newsletter]\nname = "x"\nfrom = \n'))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")


def test_every_config_key_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = readme.split("## Configuration reference", 1)
    assert len(reference) == 2, "README.md has no '## Configuration reference' section"
    missing = [key for key in config.documented_keys() if f"`{key}`" not in reference[1]]
    assert not missing, f"config keys not documented in README.md: {missing}"


# --- secrets: from the environment, long enough to resist guessing -----------------------------

GOOD_SECRET = "a-test-secret-of-well-over-32-bytes-for-signing"
MAKE_ONE = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DIGEST_SECRET": "x"}, "$DIGEST_SECRET is 1 byte(s) long"),
        ({"DIGEST_SECRET": "sample-secret"}, "$DIGEST_SECRET is 13 byte(s) long"),
        ({"DIGEST_SECRET": GOOD_SECRET, "DIGEST_SECRET_PREVIOUS": "old"}, "$DIGEST_SECRET_PREVIOUS is 3 byte(s) long"),
    ],
)
def test_a_short_secret_is_one_line_saying_how_to_make_one_and_nothing_is_sent(tmp_path, monkeypatch, env, expected):
    from click.testing import CliRunner

    from digest.cli import cli

    config_path = str(copy_sample(tmp_path))
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("DIGEST_SECRET_PREVIOUS", raising=False)
    runner = CliRunner(env=env)
    imported = runner.invoke(
        cli, ["subscribers", "import", "--config", config_path, str(tmp_path / "examples/subscribers.csv")]
    )
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(cli, ["send", "--config", config_path, "--now", "2026-11-27T09:00"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"digest: error: {expected}: a secret that signs unsubscribe links needs at least")
    assert MAKE_ONE in result.stderr
    assert result.stderr.count("\n") == 1
    assert not list(tmp_path.glob(".digest/outbox/*/*.eml"))


@pytest.mark.parametrize(("secret", "accepted"), [("s" * 31, False), ("s" * 32, True), ("é" * 16, True)])
def test_a_secret_needs_32_bytes(monkeypatch, secret, accepted):
    from digest.delivery.tokens import Signer

    monkeypatch.setenv("DIGEST_SECRET", secret)
    monkeypatch.delenv("DIGEST_SECRET_PREVIOUS", raising=False)
    if accepted:
        assert Signer.from_env().current == secret
    else:
        with pytest.raises(ConfigError, match=r"\$DIGEST_SECRET is 31 byte\(s\) long"):
            Signer.from_env()


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/hour", config.Rate(20, 1, "hour")),
        ("5 per minute", config.Rate(5, 1, "minute")),
        ("100/2 days", config.Rate(100, 2, "day")),
        (" 3 / Second ", config.Rate(3, 1, "second")),
    ],
)
def test_a_rate_is_read_as_limits_reads_it(text, rate):
    from limits import parse

    from digest.delivery.signup import limit_item

    assert config.parse_rate(text) == rate
    counted, expected = limit_item(rate), parse(text)
    assert (counted.amount, counted.get_expiry()) == (expected.amount, expected.get_expiry())


@pytest.mark.parametrize("text", ["20", "20/fortnight", "0/hour", "20/0 hours", "twenty/hour", "20/hour;5/minute"])
def test_a_bad_sign_up_rate_is_one_line_naming_the_key(tmp_path, text):
    path = write(tmp_path, MINIMAL + f'\n[signup]\nper_ip = "{text}"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"\[signup\] per_ip: .*is not a rate; write it like 20/hour", message), message
    assert info.value.exit_code == 2
