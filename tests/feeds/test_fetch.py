"""Fetching feeds over HTTP from a real server on 127.0.0.1 (an ephemeral port, never the internet).

The server is scripted per path: each request takes the next reply in the list (the last one
repeats), and every request is recorded so tests can check what digest sent and how often.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from digest import files as files_module
from digest.errors import FeedError
from digest.feeds import fetch as fetch_module
from digest.feeds.load import load_articles
from factories import FEED_FIXTURES

NOW = datetime(2025, 11, 11, 12, 0, tzinfo=UTC)
RSS = (FEED_FIXTURES / "rss2_media.xml").read_bytes()
DATES = (FEED_FIXTURES / "dates.xml").read_bytes()


@dataclass
class Reply:
    """One scripted answer. ``etag``/``last_modified`` make the server answer 304 when matched."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/rss+xml"})
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0
    endless: bool = False  # stream without Content-Length until the client hangs up
    drip: float = 0.0  # send the body one byte at a time, this many seconds apart
    drip_head: bool = False  # with ``drip``, drip the status line and headers too


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self.release = threading.Event()  # wakes delayed handlers at teardown
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def _next(self, path: str) -> Reply | None:
        replies = self.routes.get(path)
        if not replies:
            return None
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(seen)
                reply = server._next(self.path) or Reply(status=404, body=b"no route")
                if reply.delay:
                    server.release.wait(reply.delay)
                status = reply.status
                if (reply.etag and self.headers.get("If-None-Match") == reply.etag) or (
                    reply.last_modified and self.headers.get("If-Modified-Since") == reply.last_modified
                ):
                    status = 304
                seen.status = status
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self._send(reply, status)

            def _send(self, reply: Reply, status: int) -> None:
                self.send_response(status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.etag:
                    self.send_header("ETag", reply.etag)
                if reply.last_modified:
                    self.send_header("Last-Modified", reply.last_modified)
                if reply.drip:
                    self._drip(reply, status)
                    return
                if reply.endless:
                    self.end_headers()
                    chunk = b"<!-- padding -->" * 4096
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and not server.release.is_set():
                        self.wfile.write(chunk)
                    return
                body = b"" if status == 304 else reply.body
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, reply: Reply, status: int) -> None:
                """A server that is never silent long enough for a read timeout, and never done."""
                fields = {**reply.headers, "Content-Length": str(len(reply.body))}
                head = f"HTTP/1.1 {status} OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
                data = head.encode("latin-1") + reply.body
                if not reply.drip_head:
                    self.wfile.write(data[: len(head)])
                    data = data[len(head) :]
                for i in range(len(data)):
                    if server.release.wait(reply.drip):
                        return
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()

        return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()


def titles(result) -> list[str]:
    return [a.title for a in result.articles]


# --- conditional requests --------------------------------------------------------------------


def test_etag_is_sent_back_and_a_304_reuses_the_stored_feed(server, feed_settings, tmp_path):
    url = server.route("/feed.xml", Reply(body=DATES, etag='"v1"'))
    settings = feed_settings(url)
    first = load_articles(settings, NOW)
    assert "If-None-Match" not in server.requests[0].headers

    later = NOW + timedelta(days=1)
    second = load_articles(settings, later)
    again = server.requests[1]
    assert again.headers["if-none-match"] == '"v1"'
    assert again.status == 304
    assert titles(second) == titles(first) and len(first.articles) == 7
    assert [a.id for a in second.articles] == [a.id for a in first.articles]
    undated = next(a for a in second.articles if a.title == "No date at all")
    assert undated.seen == NOW  # first seen on the first run, remembered through the 304
    assert second.warnings == ()

    files = sorted(p.name for p in (tmp_path / "state" / "feeds").iterdir())
    assert len(files) == 2 and files[0].endswith(".body") and files[1].endswith(".json")
    state = json.loads((tmp_path / "state" / "feeds" / files[1]).read_text())
    assert state["url"] == url and state["etag"] == '"v1"'
    assert state["first_seen"]["undated-1"] == NOW.isoformat()


def test_last_modified_is_sent_back_as_if_modified_since(server, feed_settings):
    stamp = "Mon, 10 Nov 2025 10:00:00 GMT"
    url = server.route("/feed.xml", Reply(body=RSS, last_modified=stamp))
    settings = feed_settings(url)
    first = load_articles(settings, NOW)
    second = load_articles(settings, NOW)
    assert server.requests[1].headers["if-modified-since"] == stamp
    assert server.requests[1].status == 304
    assert titles(second) == titles(first)


def test_a_changed_feed_replaces_the_stored_one(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=DATES, etag='"v1"'), Reply(body=RSS, etag='"v2"'))
    settings = feed_settings(url)
    load_articles(settings, NOW)
    changed = load_articles(settings, NOW)
    assert titles(changed)[0] == "Media content with credit"
    third = load_articles(settings, NOW)
    assert server.requests[2].headers["if-none-match"] == '"v2"'
    assert titles(third) == titles(changed)


def test_a_tampered_stored_copy_is_not_trusted(server, feed_settings, tmp_path):
    url = server.route("/feed.xml", Reply(body=DATES, etag='"v1"'))
    settings = feed_settings(url)
    load_articles(settings, NOW)
    (body,) = (tmp_path / "state" / "feeds").glob("*.body")
    body.write_bytes(b"<rss>something else</rss>")
    result = load_articles(settings, NOW)
    assert "if-none-match" not in server.requests[1].headers  # a full fetch, not a 304
    assert len(result.articles) == 7
    assert body.read_bytes() == DATES  # repaired, so the next run can be a 304 again
    load_articles(settings, NOW)
    assert server.requests[2].status == 304


def test_corrupt_state_file_means_a_full_fetch_and_a_warning(server, feed_settings, tmp_path):
    url = server.route("/feed.xml", Reply(body=DATES, etag='"v1"'))
    settings = feed_settings(url)
    load_articles(settings, NOW)
    (state,) = (tmp_path / "state" / "feeds").glob("*.json")
    state.write_text('{"version": 1, "url": ')
    result = load_articles(settings, NOW)
    assert "if-none-match" not in server.requests[1].headers
    assert len(result.articles) == 7
    (warning,) = result.warnings
    assert warning.startswith(f'feed "{url}": ignored unreadable state file ')


def test_a_broken_answer_is_not_stored(server, feed_settings):
    html = (FEED_FIXTURES / "hopeless.html").read_bytes()
    url = server.route("/feed.xml", Reply(body=html, etag='"bad"'), Reply(body=DATES, etag='"good"'))
    settings = feed_settings(url)
    with pytest.raises(FeedError, match="not a valid RSS or Atom feed"):
        load_articles(settings, NOW)
    assert len(load_articles(settings, NOW).articles) == 7
    assert "if-none-match" not in server.requests[1].headers  # the bad answer's ETag was never kept


# --- retries ---------------------------------------------------------------------------------


def test_500_then_200_succeeds_on_retry(server, feed_settings):
    url = server.route("/feed.xml", Reply(status=500, body=b"oops"), Reply(body=RSS))
    result = load_articles(feed_settings(url), NOW)
    assert len(result.articles) == 7
    assert [r.status for r in server.hits("/feed.xml")] == [500, 200]


def test_persistent_500_is_a_feed_error_after_all_tries(server, feed_settings):
    url = server.route("/feed.xml", Reply(status=500, body=b"oops"))
    with pytest.raises(FeedError) as caught:
        load_articles(feed_settings(url, fetch={"retries": 2}), NOW)
    assert str(caught.value).startswith(f'feed "{url}": HTTP 500 Internal Server Error after 3 tries')
    assert len(server.hits("/feed.xml")) == 3
    assert caught.value.__cause__ is not None


def test_429_honours_retry_after(server, feed_settings):
    url = server.route(
        "/feed.xml",
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(body=RSS),
    )
    assert len(load_articles(feed_settings(url), NOW).articles) == 7
    assert len(server.hits("/feed.xml")) == 2


def test_429_asking_for_an_hour_is_not_waited_for(server, feed_settings):
    url = server.route("/feed.xml", Reply(status=429, headers={"Retry-After": "3600"}))
    start = time.monotonic()
    with pytest.raises(FeedError, match="HTTP 429 Too Many Requests; the server asked to wait 3600 s"):
        load_articles(feed_settings(url), NOW)
    assert len(server.hits("/feed.xml")) == 1
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(("status", "phrase"), [(404, "Not Found"), (403, "Forbidden"), (400, "Bad Request")])
def test_client_errors_are_not_retried(server, feed_settings, status, phrase):
    url = server.route("/feed.xml", Reply(status=status))
    with pytest.raises(FeedError) as caught:
        load_articles(feed_settings(url), NOW)
    assert caught.value.message == f'feed "{url}": HTTP {status} {phrase}'
    assert len(server.hits("/feed.xml")) == 1


def test_a_slow_server_is_read_when_it_answers_within_the_read_timeout(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=RSS, delay=1))
    assert len(load_articles(feed_settings(url), NOW).articles) == 7
    assert len(server.hits("/feed.xml")) == 1  # no timeout, so no retry


def test_read_timeout_is_a_feed_error_and_quick(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=RSS, delay=5))
    settings = feed_settings(url, fetch={"read_timeout": 0.2, "retries": 1})
    start = time.monotonic()
    with pytest.raises(FeedError) as caught:
        load_articles(settings, NOW)
    elapsed = time.monotonic() - start
    assert str(caught.value).startswith(f'feed "{url}": read timeout: no data for 0.2 s (2 tries)')
    assert "raise [fetch] read_timeout" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(server.hits("/feed.xml")) == 2
    assert elapsed < 2


@pytest.mark.parametrize("drip_head", [False, True], ids=["dripped-body", "dripped-headers"])
def test_a_dripping_server_is_cut_at_total_timeout(server, feed_settings, drip_head):
    # A byte every 0.1 s never trips the read timeout: only the total deadline ends it.
    url = server.route("/feed.xml", Reply(body=RSS, drip=0.1, drip_head=drip_head))
    settings = feed_settings(url, fetch={"total_timeout": 1})
    start = time.monotonic()
    with pytest.raises(FeedError) as caught:
        load_articles(settings, NOW)
    elapsed = time.monotonic() - start
    assert str(caught.value) == (
        f'feed "{url}": no complete answer within [fetch] total_timeout = 1 s (1 try); '
        "the server is stuck or far too slow; raise [fetch] total_timeout if it is just slow"
    )
    assert len(server.hits("/feed.xml")) == 1  # no retry can start past the deadline
    assert elapsed < 2


def test_a_feed_past_its_deadline_is_down_and_the_others_still_read(server, feed_settings):
    slow = server.route("/slow.xml", Reply(body=RSS, drip=0.1))
    good = server.route("/good.xml", Reply(body=DATES))
    start = time.monotonic()
    result = load_articles(feed_settings(slow, good, fetch={"total_timeout": 1}), NOW)
    assert time.monotonic() - start < 2
    assert len(result.articles) == 7 and {a.feed for a in result.articles} == {good}
    (down,) = result.down
    assert down.message == f'feed "{slow}": no complete answer within [fetch] total_timeout = 1 s (1 try)'
    assert result.warnings == (f"feed down, left out of this issue: {down}",)


def test_retries_and_their_waits_share_the_total_timeout(server, feed_settings):
    url = server.route("/feed.xml", Reply(status=503, body=b"busy"))
    settings = feed_settings(url, fetch={"retries": 10, "backoff": 0.3, "total_timeout": 1})
    start = time.monotonic()
    with pytest.raises(FeedError, match=r"HTTP 503 Service Unavailable after [1-4] tries"):
        load_articles(settings, NOW)
    assert time.monotonic() - start < 1.5  # ten retries would wait 0.3 + 0.6 + 1.2 + ... seconds
    assert len(server.hits("/feed.xml")) < 5


def test_connection_refused_is_a_feed_error(feed_settings):
    with socket.socket() as sock:  # a port that was free a moment ago and has nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"
    start = time.monotonic()
    with pytest.raises(FeedError, match=rf'^feed "{url}": could not connect \(.*\) after 3 tries'):
        load_articles(feed_settings(url), NOW)
    assert time.monotonic() - start < 2


# --- size cap --------------------------------------------------------------------------------


def test_endless_body_is_cut_at_max_bytes(server, feed_settings):
    url = server.route("/feed.xml", Reply(endless=True))
    start = time.monotonic()
    with pytest.raises(FeedError) as caught:
        load_articles(feed_settings(url, fetch={"max_bytes": 65_536}), NOW)
    assert str(caught.value) == (
        f'feed "{url}": response is larger than [fetch] max_bytes = 65536 bytes; '
        "raise [fetch] max_bytes in config.toml if the feed really is that large"
    )
    assert len(server.hits("/feed.xml")) == 1  # not retried: it would only be as big again
    assert time.monotonic() - start < 2


def test_declared_length_over_the_cap_fails_before_reading(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=RSS))
    with pytest.raises(FeedError, match=r"max_bytes = 1000 bytes"):
        load_articles(feed_settings(url, fetch={"max_bytes": 1000}), NOW)


def test_cap_counts_decompressed_bytes(server, feed_settings):
    bomb = gzip.compress(b" " * 2_000_000)  # about 2 KB on the wire, 2 MB once inflated
    url = server.route("/feed.xml", Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(FeedError, match="max_bytes"):
        load_articles(feed_settings(url, fetch={"max_bytes": 100_000}), NOW)


def test_gzip_feed_is_read(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=gzip.compress(RSS), headers={"Content-Encoding": "gzip"}))
    assert len(load_articles(feed_settings(url), NOW).articles) == 7


# --- redirects, headers, encodings -----------------------------------------------------------


def test_redirect_is_followed_and_links_resolve_against_the_final_url(server, feed_settings):
    feed = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Moved</title>'
        b"<item><title>Relative</title><link>posts/1</link>"
        b'<description>&lt;a href="../about"&gt;about&lt;/a&gt;</description></item></channel></rss>'
    )
    server.route("/new/feed.xml", Reply(body=feed))
    url = server.route("/old", Reply(status=301, headers={"Location": "/new/feed.xml"}))
    (article,) = load_articles(feed_settings(url), NOW).articles
    assert article.url == server.url("/new/posts/1")
    assert f'href="{server.url("/about")}"' in article.summary_html


def test_redirect_loop_is_a_feed_error(server, feed_settings):
    url = server.route("/loop", Reply(status=302, headers={"Location": "/loop"}))
    with pytest.raises(FeedError, match="more than 5 redirects"):
        load_articles(feed_settings(url), NOW)
    assert len(server.hits("/loop")) == 6


def test_user_agent_and_accept_are_sent(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=RSS))
    load_articles(feed_settings(url, fetch={"user_agent": "digest-test/1.0 (+https://example.org)"}), NOW)
    headers = server.requests[0].headers
    assert headers["user-agent"] == "digest-test/1.0 (+https://example.org)"
    assert "application/rss+xml" in headers["accept"]


def test_text_xml_without_charset_still_honours_the_declared_encoding(server, feed_settings):
    # RFC 3023 would read text/xml without a charset as US-ASCII; the declaration must win.
    body = (FEED_FIXTURES / "latin1.xml").read_bytes()
    url = server.route("/feed.xml", Reply(body=body, headers={"Content-Type": "text/xml"}))
    result = load_articles(feed_settings(url), NOW)
    assert result.warnings == ()
    assert result.articles[0].title == "Café, crème brûlée et Müsli"


@pytest.mark.parametrize("name", ["utf16le.xml", "utf16be.xml"])
@pytest.mark.parametrize("content_type", ["application/rss+xml", "text/xml; charset=utf-8"])
def test_a_utf16_feed_is_read_whatever_the_http_charset_says(server, feed_settings, name, content_type):
    # The byte order mark beats any header: the bytes cannot be read any other way.
    body = (FEED_FIXTURES / name).read_bytes()
    url = server.route("/feed.xml", Reply(body=body, headers={"Content-Type": content_type}))
    result = load_articles(feed_settings(url), NOW)
    assert result.warnings == ()
    (article,) = result.articles
    assert article.title == "Grüße aus Αθήνα — 東京の朝"
    assert article.categories == ("Ökonomie",)


def test_http_charset_is_used_when_the_document_declares_none(server, feed_settings):
    body = (
        "<rss version='2.0'><channel><title>t</title><item><title>Crème</title>"
        "<link>https://x.example/c</link></item></channel></rss>"
    )
    url = server.route(
        "/feed.xml", Reply(body=body.encode("iso-8859-1"), headers={"Content-Type": "text/xml; charset=ISO-8859-1"})
    )
    assert load_articles(feed_settings(url), NOW).articles[0].title == "Crème"


# --- clients ---------------------------------------------------------------------------------


def test_one_client_serves_every_feed_and_is_closed(server, feed_settings, monkeypatch):
    made: list[httpx.Client] = []
    real = fetch_module.make_client

    def counting(cfg):
        made.append(real(cfg))
        return made[-1]

    monkeypatch.setattr(fetch_module, "make_client", counting)
    a = server.route("/a.xml", Reply(body=RSS))
    b = server.route("/b.xml", Reply(body=DATES))
    result = load_articles(feed_settings(a, b), NOW)
    assert len(result.articles) == 14
    assert len(made) == 1 and made[0].is_closed


def test_a_client_passed_in_is_used_and_left_open(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=RSS))
    with httpx.Client() as client:
        load_articles(feed_settings(url), NOW, client=client)
        assert not client.is_closed
    assert server.requests[0].headers["user-agent"].startswith("digest/")


def test_mock_transport_works_for_callers_that_use_one(feed_settings):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=RSS, headers={"Content-Type": "application/rss+xml"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        result = load_articles(feed_settings("https://feeds.example/rss"), NOW, client=client)
    assert len(result.articles) == 7


def test_local_and_remote_feeds_mix_in_config_order(server, feed_settings):
    url = server.route("/feed.xml", Reply(body=DATES))
    result = load_articles(feed_settings(str(FEED_FIXTURES / "rss1.rdf"), url), NOW)
    assert titles(result)[:3] == ["First RDF item", "Second RDF item", "New York evening"]


def test_state_survives_a_crash_mid_write(server, feed_settings, tmp_path, monkeypatch):
    url = server.route("/feed.xml", Reply(body=DATES, etag='"v1"'))
    settings = feed_settings(url)
    load_articles(settings, NOW)
    folder = tmp_path / "state" / "feeds"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "replace", crash)
    server.route("/feed.xml", Reply(body=RSS, etag='"v2"'))
    with pytest.raises(FeedError, match=r"cannot write feed state in .*No space left on device"):
        load_articles(settings, NOW)
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == before  # old state intact, no temporary files left behind
    monkeypatch.undo()
    assert len(load_articles(settings, NOW).articles) == 7


def test_failing_to_write_feed_state_is_never_a_feed_down(server, feed_settings, monkeypatch):
    # Our own disk failing stops the run: it must not pass for one feed being down.
    a = server.route("/a.xml", Reply(body=RSS))
    b = server.route("/b.xml", Reply(body=DATES))

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "replace", crash)
    with pytest.raises(FeedError) as caught:
        load_articles(feed_settings(a, b), NOW)
    assert str(caught.value).startswith("cannot write feed state in ")
    assert len(server.requests) == 1  # stopped at the first feed
