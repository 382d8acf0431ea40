"""The editors' review, end to end and in process: the scheduler's review job builds a draft and
mails the editors a [TEST] copy; editors pin and exclude (the draft is rebuilt) and approve; the
send job then sends the APPROVED SNAPSHOT, never a fresh build. The jobs' own functions
(``jobs.review`` and ``jobs.send``) are called with explicit send times on the bundled
sample (dated November 2026), so nothing here waits for a clock."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import Settings, load
from digest.schedule import jobs
from digest.store import Store
from factories import KEY, NOW, SECRET, copy_sample, html_of, read_eml, text_of

SEND_AT = NOW  # Friday 09:00 in New York
EDITORS = ["editor@responsiblestatecraft.example", "chief@responsiblestatecraft.example"]
SITE = "https://responsiblestatecraft.example"
PINNED = f"{SITE}/2026/11/22/gaza-aid-corridor/"  # second in Middle East, no image (cannot become the lead)
IRAN = f"{SITE}/2026/11/26/iran-talks-oman-channel/"  # first in Middle East until the pin
EXCLUDED = f"{SITE}/2026/11/25/japan-counterstrike-missiles/"
LATE = f"{SITE}/2026/11/27/late-breaking-featured/"  # added to the feed after approval

LATE_ITEM = f"""
    <item>
      <title>A late-breaking story that would lead the issue</title>
      <link>{LATE}</link>
      <guid isPermaLink="false">rs-2026-1127-late</guid>
      <pubDate>Fri, 27 Nov 2026 07:30:00 -0500</pubDate>
      <category>Asia-Pacific</category>
      <category>Featured</category>
      <description>Added after the editors approved the issue; it must not go out in it.</description>
      <media:content url="{SITE}/media/late.jpg" medium="image" width="1200" height="675"/>
    </item>
"""


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled sample with editors, a 24-hour review and the outbox, 5 subscribers imported."""
    config = copy_sample(tmp_path, append="[schedule]\nreview_hours = 24\n")
    edit_config(config, "[newsletter]\n", f"[newsletter]\neditors = {json.dumps(EDITORS)}\n")
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    result = run("subscribers", "import", "--config", str(config), str(tmp_path / "examples" / "subscribers.csv"))
    assert "5 added" in result.stdout
    return config


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def edit_config(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")


def add_late_article(config: Path) -> None:
    feed = config.parent / "examples" / "feeds" / "statecraft.rss"
    text = feed.read_text(encoding="utf-8")
    feed.write_text(text.replace("<ttl>60</ttl>", "<ttl>60</ttl>" + LATE_ITEM, 1), encoding="utf-8")


def opened(config: Path) -> tuple[Settings, Store]:
    settings = load(config)
    return settings, Store.open(settings.database_url)


def outbox(config: Path, folder: str) -> list[Path]:
    return sorted((config.parent / ".digest" / "outbox" / folder).glob("*.eml"))


def section(html: str, name: str) -> str:
    """The part of the issue's HTML under one section heading ("" if it has none)."""
    found = re.search(rf'class="section-name"[^>]*>{re.escape(name)}</h2>', html)
    if found is None:
        return ""
    end = html.find('class="section-name"', found.end())
    return html[found.end() : end if end != -1 else len(html)]


def stored_html(store: Store, key: str = KEY) -> str:
    return store.issues.variant(key, "all")[1]


def test_review_builds_a_draft_and_mails_the_editors_a_test_copy(sample):
    settings, store = opened(sample)
    try:
        assert jobs.review(settings, store, SEND_AT) == f"draft {KEY}"
        record = store.issues.get(KEY)
        assert record is not None and record.status == "draft" and record.send_at == SEND_AT
        copies = outbox(sample, f"test-{KEY}")
        assert [p.name for p in copies] == sorted(f"{e}.eml" for e in EDITORS)
        copy = read_eml(copies[0])
        assert copy["Subject"].startswith("[TEST] Statecraft Weekly: ")
        assert "/2026/11/21/nationalize-defense-primes/" in html_of(copy)  # the week's lead
        assert not outbox(sample, KEY)  # subscribers get nothing yet
    finally:
        store.close()
    listing = run("issues", "--config", str(sample)).stdout
    assert listing.startswith(f"{KEY}  draft ")


def test_editors_pin_exclude_and_approve_and_the_approved_snapshot_is_sent(sample):
    settings, store = opened(sample)
    try:
        jobs.review(settings, store, SEND_AT)
        before = section(stored_html(store), "Middle East")
        assert before.index(IRAN) < before.index(PINNED)

        pinned = run("pin", "--config", str(sample), PINNED)
        assert f"Pinned {PINNED} in {KEY}; the draft is rebuilt" in pinned.stdout
        middle_east = section(stored_html(store), "Middle East")
        assert middle_east.index(PINNED) < middle_east.index(IRAN)  # first in its section now

        assert EXCLUDED in stored_html(store)
        excluded = run("exclude", "--config", str(sample), EXCLUDED)
        assert f"Excluded {EXCLUDED} in {KEY}; the draft is rebuilt" in excluded.stdout
        approved_html = stored_html(store)
        assert EXCLUDED not in approved_html
        assert section(approved_html, "Middle East").index(PINNED) < section(approved_html, "Middle East").index(IRAN)
        record = store.issues.get(KEY)
        assert record is not None and record.status == "draft"

        approved = run("approve", "--config", str(sample), KEY)
        assert f"Approved {KEY}; it will be sent at Fri 2026-11-27 09:00 EST" in approved.stdout

        add_late_article(sample)  # a fresh build now would lead with it
        fresh = json.loads(
            run(
                "build",
                "--config",
                str(sample),
                "--now",
                "2026-11-27T09:00",
                "--json",
                "--out",
                str(sample.parent / "out"),
            ).stdout
        )
        assert fresh["lead"] == LATE

        outcome = jobs.send(settings, store, SEND_AT)
        assert outcome == f"sent {KEY}: 5 submitted"
        record = store.issues.get(KEY)
        assert record is not None and record.status == "sent" and record.sent_at is not None
        assert stored_html(store) == approved_html
    finally:
        store.close()

    sent = outbox(sample, KEY)
    assert len(sent) == 5
    whole = 0
    for path in sent:  # the whole issue, or the sections a subscriber chose: each from the snapshot
        message = read_eml(path)
        html, text = html_of(message), text_of(message)
        assert LATE not in html and LATE not in text
        assert EXCLUDED not in html
        middle_east = section(html, "Middle East")
        if middle_east:  # the pin is first in its section (Iran may lead a variant of fewer sections)
            assert middle_east.index(PINNED) < (middle_east.index(IRAN) if IRAN in middle_east else len(middle_east))
        whole += bool(section(html, "Europe"))
    assert whole == 3  # Ana and Dev get every section, Chloé chose Europe
    listing = run("issues", "--config", str(sample)).stdout
    line = next(line for line in listing.splitlines() if line.startswith(KEY))
    assert " sent " in line and "5 submitted" in line
    as_json = json.loads(run("issues", "--config", str(sample), "--json").stdout)
    assert as_json[0]["issue"] == KEY and as_json[0]["status"] == "sent"
    assert as_json[0]["deliveries"] == {"submitted": 5}


def test_an_unapproved_draft_is_not_sent_and_is_skipped_at_its_send_time(sample):
    settings, store = opened(sample)
    try:
        jobs.review(settings, store, SEND_AT)
        outcome = jobs.send(settings, store, SEND_AT)
        assert outcome.startswith("skipped: the draft was not approved")
        record = store.issues.get(KEY)
        # Past its send time the scheduler will not send it, so it is not left looking "draft"
        # (or "approved" later, forever unsent): never sent late.
        assert record is not None and record.status == "skipped"
        assert "not approved" in record.note
        assert store.ledger.counts(KEY) == {}
    finally:
        store.close()
    assert not outbox(sample, KEY)
    notices = outbox(sample, f"notices-{KEY}")
    assert sorted(str(read_eml(p)["To"]) for p in notices) == sorted(EDITORS)
    notice = read_eml(notices[0])
    assert notice["Subject"] == f"[digest] {KEY} was not sent"
    assert "the draft was not approved" in text_of(notice)
    late = run("approve", "--config", str(sample), KEY, code=1)
    assert f"{KEY} is skipped; only a draft can be approved" in late.stderr


def test_no_draft_at_the_send_time_means_nothing_is_sent(sample):
    settings, store = opened(sample)
    try:
        outcome = jobs.send(settings, store, SEND_AT)  # the review never ran
        assert outcome.startswith("skipped: no draft was built and approved")
        record = store.issues.get(KEY)
        assert record is not None and record.status == "skipped"
    finally:
        store.close()
    assert not outbox(sample, KEY)
    assert len(outbox(sample, f"notices-{KEY}")) == 2


def test_auto_approve_sends_the_draft_snapshot_without_approval(sample):
    edit_config(sample, "review_hours = 24\n", "review_hours = 24\nauto_approve = true\n")
    settings, store = opened(sample)
    try:
        jobs.review(settings, store, SEND_AT)
        run("exclude", "--config", str(sample), EXCLUDED)
        draft_html = stored_html(store)
        add_late_article(sample)
        assert jobs.send(settings, store, SEND_AT) == f"sent {KEY}: 5 submitted"
        record = store.issues.get(KEY)
        assert record is not None and record.status == "sent" and record.approved_at is not None
        assert stored_html(store) == draft_html
    finally:
        store.close()
    sent = outbox(sample, KEY)
    assert len(sent) == 5
    for path in sent:
        html = html_of(read_eml(path))
        assert LATE not in html and EXCLUDED not in html
    assert not outbox(sample, f"notices-{KEY}")


def test_an_article_sent_in_an_earlier_issue_is_not_chosen_again(sample):
    edit_config(sample, "window_days = 7", "window_days = 14")  # W47's last days fall in W48's window
    gulf = f"{SITE}/2026/11/19/gulf-security-pact/"
    plain = json.loads(
        run(
            "build", "--config", str(sample), "--now", "2026-11-27T09:00", "--json", "--out", str(sample.parent / "out")
        ).stdout
    )
    assert gulf in [a["url"] for s in plain["sections"] for a in s["articles"]]  # it would be chosen

    w47 = run("send", "--config", str(sample), "--now", "2026-11-20T09:00")
    assert "2026-W47" in w47.stdout
    settings, store = opened(sample)
    try:
        record = store.issues.get("2026-W47")
        assert record is not None and record.status == "sent"
        assert jobs.review(settings, store, SEND_AT) == f"draft {KEY}"
        html = stored_html(store)
        assert gulf not in html
        assert IRAN in html  # the rest of the week is still there
    finally:
        store.close()
    assert gulf not in html_of(read_eml(outbox(sample, f"test-{KEY}")[0]))


# --- a feed down --------------------------------------------------------------------------------

ANALYSIS = 'url = "examples/feeds/analysis.atom"'


def notices(config: Path) -> list[EmailMessage]:
    return [read_eml(p) for p in outbox(config, f"notices-{KEY}")]


def test_a_draft_built_without_a_feed_tells_the_editors_which(sample):
    edit_config(sample, ANALYSIS, 'url = "examples/feeds/missing.atom"')
    settings, store = opened(sample)
    try:
        assert jobs.review(settings, store, SEND_AT) == f"draft {KEY}"
        record = store.issues.get(KEY)
        assert record is not None and record.status == "draft"
    finally:
        store.close()
    assert len(outbox(sample, f"test-{KEY}")) == 2  # the review copy still goes out
    told = notices(sample)
    assert sorted(str(n["To"]) for n in told) == sorted(EDITORS)
    assert told[0]["Subject"] == f"[digest] {KEY} is built without 1 feed(s)"
    body = text_of(told[0])
    assert f'{KEY} was built without 1 of its 2 feeds: feed "Statecraft Analysis": no such file ' in body
    assert "missing.atom" in body and "The draft holds the other feeds' articles" in body


def test_a_full_issue_missing_a_feed_is_sent_on_time_and_the_editors_told(sample):
    edit_config(sample, "review_hours = 24\n", "review_hours = 0\n")
    edit_config(sample, ANALYSIS, 'url = "examples/feeds/missing.atom"')
    settings, store = opened(sample)
    try:
        assert jobs.send(settings, store, SEND_AT) == f"sent {KEY}: 5 submitted"
    finally:
        store.close()
    assert len(outbox(sample, KEY)) == 5
    (first, _) = told = notices(sample)
    assert len(told) == 2 and first["Subject"] == f"[digest] {KEY} is built without 1 feed(s)"
    assert 'feed "Statecraft Analysis": no such file ' in text_of(first)
    assert "It goes out with the other feeds' articles." in text_of(first)


def test_require_all_skips_the_issue_when_a_feed_stays_down_past_the_grace(sample):
    edit_config(sample, "review_hours = 24\n", "review_hours = 0\n")
    edit_config(sample, ANALYSIS, 'url = "examples/feeds/missing.atom"')
    edit_config(sample, "require_all = false", "require_all = true")
    settings, store = opened(sample)
    try:
        outcome = jobs.send(settings, store, SEND_AT)  # past its send time: no retry left
        reason = 'feeds could not be fetched within the grace: feed "Statecraft Analysis": no such file '
        assert outcome.startswith(f"skipped: {reason}")
        record = store.issues.get(KEY)
        assert record is not None and record.status == "skipped"
    finally:
        store.close()
    assert not outbox(sample, KEY)
    (first, _) = notices(sample)
    assert first["Subject"] == f"[digest] {KEY} was not sent"
    assert "[fetch] require_all = true builds no issue without every feed" in text_of(first)


@pytest.mark.parametrize(
    "command", [["pin", PINNED, "--issue"], ["exclude", EXCLUDED, "--issue"], ["approve"], ["status"]]
)
def test_a_mistyped_issue_key_is_refused_and_nothing_is_recorded(sample, command):
    name, *rest = command
    refused = run(name, "--config", str(sample), *rest, "2026-48", code=2)
    assert "'2026-48' is not an issue key; issue keys are ISO weeks like 2026-W48" in refused.stderr
    assert "Traceback" not in refused.stderr
    _, store = opened(sample)
    try:
        assert store.issues.edits("2026-48") == ([], [])  # no pin or exclusion kept for a week that never comes
    finally:
        store.close()


def test_an_issue_key_typed_in_lower_case_names_the_issue(sample):
    settings, store = opened(sample)
    try:
        jobs.review(settings, store, SEND_AT)
    finally:
        store.close()
    approved = run("approve", "--config", str(sample), KEY.lower())
    assert approved.stdout.startswith(f"Approved {KEY}; it will be sent at Fri 2026-11-27 09:00 EST")
