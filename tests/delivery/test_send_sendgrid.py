"""Sending through the SendGrid transport to the local stand-in: the outcome rules of delivery/outcomes.py.

The stand-in checks each request against SendGrid's contract and records what it accepted, so
"each subscriber exactly once" is counted on the receiving side, not taken from our own ledger.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

import hostile
from digest.config import Settings
from digest.delivery import runner as deliver
from digest.delivery.transports.base import AuthError, Batch, Recipient
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.issue.render import Rendered, fill
from digest.store import Claimed, NewSubscriber, Problem, Store
from digest.store.schema import batches
from factories import KEY, SIGNER, VARIANT, Sleeps, ready_to_send, record_issue, sending


def make_settings(tmp_path: Path, api_host: str, sendgrid: dict[str, Any] | None = None, **delivery: Any) -> Settings:
    """Sending to ``api_host``; ``sendgrid`` adds [delivery.sendgrid] keys, ``delivery`` [delivery] ones."""
    table = {"api_host": api_host, "timeout": 10, **(sendgrid or {})}
    return sending(tmp_path, "sendgrid", table, **{"retries": 2, "backoff": 0.01, "max_rate_wait": 30, **delivery})


def prepare(store: Store, count: int) -> None:
    ready_to_send(store, count, name="Reader <{i}> & co")


def send(store: Store, settings: Settings, sleeps: Sleeps | None = None, key: str = "SG.test"):
    transport = SendGridTransport(settings, key)
    try:
        return deliver.send_pending(
            store, settings, transport, SIGNER, KEY, sleep=sleeps if sleeps is not None else Sleeps()
        )
    finally:
        transport.close()


def test_every_subscriber_gets_the_issue_once_in_requests_of_at_most_1000(tmp_path, sg, store):
    prepare(store, 2500)
    settings = make_settings(tmp_path, sg.url)
    report = send(store, settings)
    assert report.counts == {"submitted": 2500}
    # Two requests in flight: the 500 may arrive before the second 1,000.
    assert sorted(a.personalizations for a in sg.accepted) == [500, 1000, 1000]
    received = sg.recipients()
    assert len(received) == len(set(received)) == 2500
    # Run again: nothing more goes out.
    assert send(store, settings).sent_now == 0
    assert len(sg.accepted) == 3


def test_request_carries_per_recipient_values_headers_and_tags(tmp_path, sg, store):
    prepare(store, 2)
    send(store, make_settings(tmp_path, sg.url))
    (request,) = sg.accepted
    body = request.body
    assert body["from"] == {"email": "news@example.org", "name": "Statecraft Weekly"}
    assert body["reply_to"] == {"email": "editors@example.org"}
    assert body["subject"] == VARIANT.subject
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["newsletter"]
    assert body["custom_args"] == {"issue": KEY}
    assert body["headers"] == {"List-Id": "Statecraft Weekly <statecraft-weekly.example.org>"}
    by_email = {p["to"][0]["email"]: p for p in body["personalizations"]}
    first = store.subscribers.by_email("reader0@example.org")
    p = by_email["reader0@example.org"]
    assert p["to"][0]["name"] == "Reader <0> & co"
    assert p["custom_args"] == {"subscriber_id": str(first.id)}
    # The link is written into the message once, and each recipient's token alone substituted.
    (text, html) = (c["value"] for c in body["content"])
    link = f"https://news.example.org/unsubscribe?t=%%token%%&i={KEY}"
    assert text == f"%%name:text%% {link}\n"
    assert html == f'<p>%%name%% <a href="{link.replace("&", "&amp;")}">u</a></p>\n'
    token = p["substitutions"]["%%token%%"]
    assert SIGNER.subscriber_id(token) == first.id
    url = link.replace("%%token%%", token)
    assert parse_qs(urlsplit(url).query)["i"] == [KEY]  # the issue it came from, for the desk's report
    assert p["substitutions"]["%%name%%"] == "Reader &lt;0&gt; &amp; co"  # HTML part: escaped
    assert p["substitutions"]["%%name:text%%"] == "Reader <0> & co"  # text part: as is
    # Only the placeholders the message holds (no preferences or confirmation link in VARIANT).
    assert sorted(p["substitutions"]) == ["%%name%%", "%%name:text%%", "%%token%%"]
    assert p["headers"] == {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert request.headers["authorization"] == "Bearer SG.test"


def as_sendgrid_delivers(body: dict[str, Any], personalization: dict[str, Any]) -> tuple[str, str]:
    """The text and HTML one personalization's recipient gets: SendGrid replaces each
    substitution tag wherever it stands in the content."""
    text, html = (c["value"] for c in body["content"])
    for tag, value in personalization["substitutions"].items():
        text, html = text.replace(tag, value), html.replace(tag, value)
    return text, html


LINKS_VARIANT = Rendered(
    subject="Links",
    html='<p>%%name%% <a href="%%unsubscribe_url%%">u</a> <a href="%%preferences_url%%">p</a> %%email%%</p>\n',
    text="%%name:text%% %%unsubscribe_url:text%% %%preferences_url:text%% %%email:text%%\n",
    warnings=(),
)


@pytest.mark.parametrize("by_token", [True, False], ids=["links-once-and-tokens", "whole-values"])
def test_each_reader_gets_what_the_outbox_would_write_for_them(tmp_path, sg, by_token):
    """Links written once with a token's tag, or each recipient's whole values (a batch of
    recipients without tokens: test copies, mails to editors): what SendGrid makes of the request
    is, for every reader, the message filled with their own values."""
    settings = make_settings(tmp_path, sg.url)
    people = [(i + 1, 40 + i, f"r{i}@example.org", name) for i, name in enumerate(["Zoë <O'Brien>", "", "A & B"])]
    recipients = tuple(
        deliver.recipient(settings, SIGNER, did, sid, email, name, issue_key=KEY) for did, sid, email, name in people
    )
    if not by_token:
        recipients = tuple(Recipient(r.delivery_id, r.subscriber_id, r.email, r.values) for r in recipients)
    batch = deliver._batch(settings, SIGNER, Claimed(7, KEY, "all", ()), LINKS_VARIANT)
    batch = Batch(KEY, LINKS_VARIANT, recipients, batch_id=7, links=batch.links)
    result = SendGridTransport(settings, "SG.test").send(batch)
    assert set(result.outcomes.values()) == {("submitted", "")}
    (request,) = sg.accepted
    assert ("%%token%%" in request.body["personalizations"][0]["substitutions"]) is by_token
    for r, p in zip(recipients, request.body["personalizations"], strict=True):
        assert p["to"][0]["email"] == r.email
        assert as_sendgrid_delivers(request.body, p) == (
            fill(LINKS_VARIANT.text, r.values, "text"),
            fill(LINKS_VARIANT.html, r.values, "html"),
        )
        assert p["headers"]["List-Unsubscribe"] == f"<{r.values['unsubscribe_url']}>"


def test_refused_key_stops_the_send_and_marks_nothing_submitted(tmp_path, sg, store):
    prepare(store, 1500)
    settings = make_settings(tmp_path, sg.url)
    with pytest.raises(AuthError, match="SendGrid answered 401"):
        send(store, settings, key="not-a-sendgrid-key")  # refused for every request, in every lane
    assert store.ledger.counts(KEY) == {"pending": 1500}
    assert sg.accepted == []
    assert send(store, settings).counts == {"submitted": 1500}  # a working key later: all go out once
    assert Counter(sg.recipients()).most_common(1)[0][1] == 1


def test_400_fails_that_batch_and_the_send_goes_on(tmp_path, sg, store):
    prepare(store, 2500)
    settings = make_settings(tmp_path, sg.url, {"connections": 1})  # the first request is the first batch
    sg.fail_next(400, message="The from address does not match a verified Sender Identity", field="from.email")
    report = send(store, settings)
    assert report.counts == {"failed": 1000, "submitted": 1500}
    problems = store.ledger.problems(KEY)
    assert len(problems) == 1000
    assert problems[0].error == (
        "SendGrid answered 400: from.email: The from address does not match a verified Sender Identity"
    )
    assert store.ledger.retry_failed(KEY) == 1000
    assert send(store, settings).counts == {"submitted": 2500}
    received = sg.recipients()
    assert len(received) == len(set(received)) == 2500


def test_413_splits_the_batch(tmp_path, sg, store):
    prepare(store, 1000)
    sg.max_personalizations = 300
    report = send(store, make_settings(tmp_path, sg.url))
    assert report.counts == {"submitted": 1000}
    assert all(a.personalizations <= 300 for a in sg.accepted)
    assert sorted(sg.recipients()) == sorted(f"reader{i}@example.org" for i in range(1000))


def test_429_waits_until_the_reset_then_sends_the_same_batch(tmp_path, sg, store):
    prepare(store, 10)
    sg.fail_next(429, reset_in=7)
    sleeps = Sleeps()
    report = send(store, make_settings(tmp_path, sg.url), sleeps)
    assert report.counts == {"submitted": 10}
    assert len(sleeps) == 1 and 5 <= sleeps[0] <= 9
    assert len(sg.recipients()) == 10


def test_429_past_the_longest_wait_fails_the_batch(tmp_path, sg, store):
    prepare(store, 10)
    sg.fail_next(429, reset_in=120)
    sleeps = Sleeps()
    report = send(store, make_settings(tmp_path, sg.url, max_rate_wait=60), sleeps)
    assert report.counts == {"failed": 10}
    assert sleeps == []
    assert "max_rate_wait" in store.ledger.problems(KEY)[0].error


def test_5xx_is_retried_with_growing_waits_then_succeeds(tmp_path, sg, store):
    prepare(store, 10)
    sg.fail_next(500, times=2)
    sleeps = Sleeps()
    report = send(store, make_settings(tmp_path, sg.url, backoff=1.0), sleeps)
    assert report.counts == {"submitted": 10}
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # doubling, with jitter


def test_5xx_past_the_retries_fails_the_batch(tmp_path, sg, store):
    prepare(store, 10)
    sg.fail_next(503, times=3)
    sleeps = Sleeps()
    report = send(store, make_settings(tmp_path, sg.url), sleeps)
    assert report.counts == {"failed": 10}
    assert len(sleeps) == 2
    assert "SendGrid answered 503" in store.ledger.problems(KEY)[0].error
    assert "after 3 tries" in store.ledger.problems(KEY)[0].error


def test_a_slow_answer_within_the_timeout_is_submitted(tmp_path, sg, store):
    prepare(store, 3)
    sg.stall_next(1)  # answered after a second: slow, but inside [delivery.sendgrid] timeout
    assert send(store, make_settings(tmp_path, sg.url)).counts == {"submitted": 3}
    assert len(sg.accepted) == 1


def test_a_timeout_after_the_request_went_out_is_unknown_and_never_resent(tmp_path, sg, store):
    prepare(store, 1500)
    # One request at a time: the first to reach the stand-in is the first batch's (with two in
    # flight, the 500's may get there first).
    settings = make_settings(tmp_path, sg.url, {"timeout": 0.5, "connections": 1})
    sg.stall_next(3)
    report = send(store, settings)
    assert report.counts == {"unknown": 1000, "submitted": 500}
    assert "may have been accepted" in store.ledger.problems(KEY)[0].error
    assert send(store, settings).sent_now == 0
    received = sg.recipients()
    assert len(received) == len(set(received)) == 1500  # the stalled request did arrive, once


def test_a_connection_closed_before_the_answer_is_unknown_and_never_resent(tmp_path, sg, store):
    prepare(store, 1500)
    settings = make_settings(tmp_path, sg.url, {"connections": 1})  # the first request is the first batch
    sg.drop_next()  # the first request is accepted, then the connection closes with no answer
    report = send(store, settings)
    assert report.counts == {"unknown": 1000, "submitted": 500}
    assert "closed the connection before answering" in store.ledger.problems(KEY)[0].error
    assert send(store, settings).sent_now == 0
    received = sg.recipients()
    assert len(received) == len(set(received)) == 1500


@pytest.mark.parametrize("connections", [1, 2])
def test_the_batches_of_a_send_share_its_kept_alive_connections(tmp_path, sg, store, connections):
    # Against the real service each new connection is a TLS handshake away, for every request.
    prepare(store, 4500)
    settings = make_settings(tmp_path, sg.url, {"connections": connections}, batch_size=1000)
    assert send(store, settings).counts == {"submitted": 4500}
    assert sg.requests == 5
    assert 1 <= sg.connections <= connections
    received = sg.recipients()
    assert len(received) == len(set(received)) == 4500


def test_a_stop_with_two_requests_in_flight_lets_both_finish_and_sends_the_rest_next_time(tmp_path, sg, store):
    prepare(store, 6500)
    settings = make_settings(tmp_path, sg.url, {"connections": 2})
    stop = threading.Event()
    sg.stall_next(0.5, times=2)  # the first two requests are in flight together when the stop comes

    class StopAtTheFirst:
        def start(self, total: int) -> None: ...
        def advance(self, count: int) -> None:
            stop.set()  # as SIGTERM does

        def close(self) -> None: ...

    transport = SendGridTransport(settings, "SG.test")
    try:
        report = deliver.send_pending(store, settings, transport, SIGNER, KEY, stop=stop, progress=StopAtTheFirst())
    finally:
        transport.close()
    assert report.counts == {"submitted": 2000, "pending": 4500}  # both finished, nobody unknown
    assert built_ahead(store) == 0
    assert send(store, settings).counts == {"submitted": 6500}
    received = sg.recipients()
    assert len(received) == len(set(received)) == 6500


def test_an_answered_request_is_freed_without_the_cycle_collector(tmp_path, sg, store):
    # httpx ties a response to its stream in a cycle (encode/httpx#3733) that kept each request's
    # body (a third of a megabyte a batch) until the collector ran: a million grew by 100 MB.
    import gc

    import httpx

    prepare(store, 2500)
    gc.collect()
    gc.disable()
    try:
        assert send(store, make_settings(tmp_path, sg.url, batch_size=1000)).counts == {"submitted": 2500}
        alive = [o for o in gc.get_objects() if isinstance(o, httpx.Response | httpx.Request)]
    finally:
        gc.enable()
    assert alive == []


def test_a_redirect_is_not_taken_for_an_accepted_batch(tmp_path, store):
    # A wrong api_host that redirects (http:// to https://, say) has accepted nothing.
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(301)
            self.send_header("Location", "https://api.sendgrid.example/v3/mail/send")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prepare(store, 5)
        report = send(store, make_settings(tmp_path, f"http://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
        server.server_close()
    assert report.counts == {"failed": 5}
    assert "SendGrid answered 301" in store.ledger.problems(KEY)[0].error


def test_refused_connection_is_retried_then_fails(tmp_path, store):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prepare(store, 5)
    sleeps = Sleeps()
    report = send(store, make_settings(tmp_path, f"http://127.0.0.1:{port}"), sleeps)
    assert report.counts == {"failed": 5}
    assert len(sleeps) == 2
    assert "cannot reach SendGrid" in store.ledger.problems(KEY)[0].error


def test_test_copies_are_marked_and_recorded_nowhere(tmp_path, sg, store):
    prepare(store, 3)
    settings = make_settings(tmp_path, sg.url)
    deliver.send_test(settings, SendGridTransport(settings, "SG.test"), VARIANT, KEY, ["editor@example.org"])
    (request,) = sg.accepted
    assert request.body["subject"] == "[TEST] " + VARIANT.subject
    assert request.body["custom_args"] == {"issue": KEY, "test": "1"}
    assert sg.recipients() == ["editor@example.org"]
    assert store.ledger.counts(KEY) == {}


def test_an_unsubscribe_group_is_added_to_every_request_when_configured(tmp_path, sg, store):
    prepare(store, 3)
    settings = make_settings(tmp_path, sg.url, {"asm_group_id": 4242})
    assert send(store, settings).counts == {"submitted": 3}
    (request,) = sg.accepted
    assert request.body["asm"] == {"group_id": 4242}


# --- hostile values, per-recipient errors ----------------------------------------------------------


@pytest.mark.parametrize("lead", hostile.SUBJECTS)
def test_a_hostile_title_and_name_reach_the_request_only_as_clean_text(tmp_path, sg, store, lead):
    # A name as a ledger filled before names were checked may hold it.
    store.subscribers.merge([NewSubscriber("eve@example.org", hostile.NAME), NewSubscriber("ann@example.org", "Ann")])
    record_issue(store, hostile.variant(tmp_path, lead))

    assert send(store, make_settings(tmp_path, sg.url)).counts == {"submitted": 2}

    (request,) = sg.accepted
    body = request.body
    assert body["subject"] == hostile.SUBJECTS[lead]
    assert body["headers"] == {"List-Id": "Statecraft Weekly <statecraft-weekly.example.org>"}
    by_email = {p["to"][0]["email"]: p for p in body["personalizations"]}
    assert by_email["eve@example.org"]["to"][0]["name"] == hostile.NAME_SHOWN
    for p in body["personalizations"]:
        assert sorted(p["headers"]) == ["List-Unsubscribe", "List-Unsubscribe-Post"]
        assert not any(ord(c) < 32 for value in p["headers"].values() for c in value)


@pytest.fixture
def unbuildable(monkeypatch):
    """reader1's part of the request cannot be built (as a bad value anywhere in it would do)."""
    real = SendGridTransport._personalization

    def personalization(recipient: Recipient, *fields: Any, **how: Any) -> dict[str, object]:
        if recipient.email == "reader1@example.org":
            raise ValueError("invalid arguments; address parts cannot contain CR or LF")
        return real(recipient, *fields, **how)

    monkeypatch.setattr(SendGridTransport, "_personalization", staticmethod(personalization))


def test_a_recipient_whose_part_cannot_be_built_fails_alone_with_its_reason(tmp_path, sg, store, unbuildable):
    prepare(store, 4)

    report = send(store, make_settings(tmp_path, sg.url))

    assert report.counts == {"submitted": 3, "failed": 1}
    assert store.ledger.problems(KEY) == [
        Problem(
            "reader1@example.org",
            "failed",
            "message not built: invalid arguments; address parts cannot contain CR or LF",
        )
    ]
    (request,) = sg.accepted
    assert sorted(request.recipients) == ["reader0@example.org", "reader2@example.org", "reader3@example.org"]


def test_a_recipient_that_cannot_be_built_stays_failed_when_the_request_times_out(tmp_path, sg, store, unbuildable):
    prepare(store, 4)
    sg.stall_next(3)

    report = send(store, make_settings(tmp_path, sg.url, {"timeout": 0.5}))

    assert report.counts == {"unknown": 3, "failed": 1}  # never handed over, so not "maybe sent"
    failed = [p for p in store.ledger.problems(KEY) if p.status == "failed"]
    assert [(p.email, p.error[:19]) for p in failed] == [("reader1@example.org", "message not built: ")]


# --- the batch built ahead while one is in flight ------------------------------------------------


def built_ahead(store: Store) -> int:
    """Batches claimed and built but not handed over: none may be left once a send returns."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(batches.c.handed_over.is_(False))).scalar_one()


def test_a_stop_gives_back_the_batch_built_ahead_and_it_goes_out_next_time(tmp_path, sg, store):
    prepare(store, 2500)
    settings = make_settings(tmp_path, sg.url, {"connections": 1})
    stop = threading.Event()

    class StopAfterOne:
        def start(self, total: int) -> None: ...
        def advance(self, count: int) -> None:
            deadline = time.monotonic() + 10
            while not built_ahead(store) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert built_ahead(store) == 1, "the next batch was not claimed ahead"
            stop.set()  # as SIGTERM does, with the next batch claimed and built

        def close(self) -> None: ...

    transport = SendGridTransport(settings, "SG.test")
    report = deliver.send_pending(store, settings, transport, SIGNER, KEY, stop=stop, progress=StopAfterOne())
    assert report.counts == {"submitted": 1000, "pending": 1500}  # nobody withheld as unknown
    assert built_ahead(store) == 0
    assert len(sg.recipients()) == 1000
    assert send(store, settings).counts == {"submitted": 2500}
    received = sg.recipients()
    assert len(received) == len(set(received)) == 2500


def test_an_error_building_the_next_batch_stops_the_send_and_gives_that_batch_back(tmp_path, sg, store, monkeypatch):
    prepare(store, 2500)
    settings = make_settings(tmp_path, sg.url)
    transport = SendGridTransport(settings, "SG.test")
    real = transport.prepare
    calls = 0

    def second_fails(batch: Batch) -> Batch:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise MemoryError("while building the second batch")
        return real(batch)

    monkeypatch.setattr(transport, "prepare", second_fails)
    with pytest.raises(MemoryError, match="second batch"):
        deliver.send_pending(store, settings, transport, SIGNER, KEY, sleep=Sleeps())
    assert store.ledger.counts(KEY) == {"submitted": 1000, "pending": 1500}
    assert built_ahead(store) == 0
    assert send(store, settings).counts == {"submitted": 2500}
    received = sg.recipients()
    assert len(received) == len(set(received)) == 2500
