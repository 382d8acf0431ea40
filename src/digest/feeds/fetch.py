"""Fetching one feed over HTTP: timeouts, a size cap, conditional requests and bounded retries.

Kept apart from parsing so that every network failure becomes one ``FeedError`` here, with the
feed's name and what happened in words a reader can act on ("read timeout after 20 s (4 tries)",
"HTTP 404 Not Found", "larger than [fetch] max_bytes"), and nothing from httpx escapes raw.

Retries (tenacity) cover what is likely to go away on its own: 5xx, 429, 408, refused or timed-out
connections and connections dropped mid-answer. Everything else (404, 403, a TLS certificate
failure, too many redirects, an over-size body) fails at once, because asking again would only
make the run slower.

``[fetch] total_timeout`` bounds one feed's whole fetch: connecting, every read, every retry and
the backoff waits between them share one deadline, so retries never multiply it. httpx's own
timeouts are per read, and a server that drips a byte a second never trips them; so each socket
operation's timeout is cut to the time left (``_DeadlineBackend``), which bounds the headers and
the body alike, and no retry starts when it could not begin before the deadline.
"""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import httpcore
import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay

from digest.config import Fetch
from digest.errors import FeedError

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
MAX_REDIRECTS = 5
# A server asking for a longer pause than this is not waited for: the run would stall.
MAX_RETRY_AFTER = 60.0
# Exponential backoff never sleeps longer than this between two tries.
MAX_BACKOFF = 60.0
# Statuses worth asking again for; 501 (Not Implemented) and 505 will not change on a retry.
_NOT_TRANSIENT_5XX = frozenset({501, 505})


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch brought back.

    ``body`` is None when the server answered 304 Not Modified: the caller reuses its stored copy.
    ``url`` is where the feed really lives after redirects, the base for its relative links.
    """

    url: str
    body: bytes | None
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.body is None


class _StatusError(Exception):
    """A non-success HTTP status, carrying what the retry policy needs to decide."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


class _TooLarge(Exception):
    """The body went past ``max_bytes``; raised while streaming, before it is all read."""


class _DeadlinePassed(Exception):
    """The fetch's total deadline passed between two chunks of the body."""


# The monotonic time the fetch running in this thread (or context) must end by; None outside one.
_DEADLINE: ContextVar[float | None] = ContextVar("digest_fetch_deadline", default=None)


def make_client(cfg: Fetch) -> httpx.Client:
    """The one client shared by every feed of a run, so connections to the same host are reused."""
    client = httpx.Client(
        timeout=_timeout(cfg),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": cfg.user_agent, "Accept": ACCEPT},
    )
    _bound_by_deadline(client)
    return client


def fetch_feed(
    client: httpx.Client,
    url: str,
    cfg: Fetch,
    *,
    label: str,
    etag: str | None = None,
    last_modified: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """GET ``url``, retrying transient failures; a FeedError naming ``label`` on anything else.

    ``etag``/``last_modified`` are the validators remembered from the last run; when given, the
    server may answer 304 and the result's ``body`` is None.
    """
    headers = {"User-Agent": cfg.user_agent, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    retrying = Retrying(
        # No try starts that could not begin before the deadline (the backoff wait included).
        stop=stop_after_attempt(cfg.retries + 1) | stop_before_delay(cfg.total_timeout),
        wait=_Backoff(cfg.backoff),
        retry=retry_if_exception(_is_transient),
        reraise=True,
        sleep=sleep,
    )
    attempts = 0
    deadline = time.monotonic() + cfg.total_timeout
    token = _DEADLINE.set(deadline)
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return _attempt(client, url, headers, cfg, attempts, deadline)
    except Exception as exc:  # every failure, httpx's or ours, leaves as one FeedError
        late = time.monotonic() >= deadline
        raise _feed_error(exc, label, cfg, attempts, late=late) from exc
    finally:
        _DEADLINE.reset(token)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def _timeout(cfg: Fetch, deadline: float | None = None) -> httpx.Timeout:
    """httpx's timeouts, none longer than the time left before ``deadline`` (when given)."""
    left = max(deadline - time.monotonic(), 0.001) if deadline is not None else math.inf
    connect = min(cfg.connect_timeout, left)
    return httpx.Timeout(min(cfg.read_timeout, left), connect=connect, pool=connect)


def _attempt(
    client: httpx.Client, url: str, headers: dict[str, str], cfg: Fetch, attempts: int, deadline: float
) -> Fetched:
    """One request, reading the body in chunks so an over-size answer is dropped at the cap."""
    timeout = _timeout(cfg, deadline)
    with client.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        status = response.status_code
        if status == HTTPStatus.NOT_MODIFIED:
            body = None
        elif 200 <= status < 300:
            body = _read_capped(response, cfg.max_bytes, deadline)
        else:
            raise _StatusError(status, _retry_after(response.headers.get("retry-after")))
        return Fetched(
            url=str(response.url),
            body=body,
            content_type=response.headers.get("content-type", ""),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            attempts=attempts,
        )


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    """The decoded body, or ``_TooLarge`` as soon as it passes ``max_bytes``.

    Counting decoded bytes (not the compressed ones on the wire) also stops a small gzip bomb.
    A Content-Length over the cap fails before reading anything. The deadline is checked after
    every chunk too, for a client made elsewhere (a test's, a caller's) without our backend.
    """
    declared = response.headers.get("content-length", "")
    encoded = response.headers.get("content-encoding", "identity").lower() not in {"", "identity"}
    if declared.isdigit() and not encoded and int(declared) > max_bytes:
        raise _TooLarge
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise _TooLarge
        if time.monotonic() >= deadline:
            raise _DeadlinePassed
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_transient(exc: BaseException) -> bool:
    """Whether asking again might work: the retry policy in one place."""
    if isinstance(exc, _StatusError):
        if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER:
            return False
        return exc.status in {408, 429} or (exc.status >= 500 and exc.status not in _NOT_TRANSIENT_5XX)
    if isinstance(exc, httpx.ConnectError):
        return _tls_problem(exc) is None
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


class _Backoff:
    """Exponential backoff with jitter, or the server's own Retry-After when it sent one."""

    def __init__(self, first: float) -> None:
        self.first = first

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _StatusError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER)
        delay = self.first * 2 ** (state.attempt_number - 1)
        # Jitter spreads the retries of several digests started by the same cron minute.
        return min(delay + random.uniform(0, self.first), MAX_BACKOFF)


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind an httpx error, if that is what it was (not worth a retry)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# --- the deadline, enforced on every socket operation -------------------------------------------


def _within_deadline(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before the current fetch's deadline; ``expired`` once past it."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the fetch's total_timeout has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes never wait past the fetch's deadline.

    httpcore raises its own timeout errors, which httpx turns into ``httpx.ReadTimeout`` and
    friends, so the rest of this module sees an ordinary timeout.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _within_deadline(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every connection wrapped in a ``_DeadlineStream``."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _bound_by_deadline(client: httpx.Client) -> None:
    """Put ``_DeadlineBackend`` under every connection pool of ``client``.

    httpx has no public way to give its transport a network backend (httpx issue #1450 asks for
    a total timeout), so this reaches into the client's transports; the client is otherwise the
    one httpx builds, proxies from the environment included. If a future httpx moves these
    attributes, nothing breaks here: the per-chunk check and the capped timeouts still apply,
    and tests/feeds/test_fetch.py's dripped-headers test fails to say so.
    """
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


def _tries(attempts: int) -> str:
    return "1 try" if attempts == 1 else f"{attempts} tries"


def _feed_error(exc: BaseException, label: str, cfg: Fetch, attempts: int, *, late: bool = False) -> FeedError:
    """Say what went wrong fetching ``label`` in one line, with a hint when there is a fix.

    ``late`` says the total deadline had passed: a timeout then is the deadline's, not a read's.
    """
    where = f'feed "{label}"'
    tries = _tries(attempts)
    if isinstance(exc, _DeadlinePassed) or (late and isinstance(exc, httpx.TimeoutException)):
        return FeedError(
            f"{where}: no complete answer within [fetch] total_timeout = {cfg.total_timeout:g} s ({tries})",
            hint="the server is stuck or far too slow; raise [fetch] total_timeout if it is just slow",
        )
    if isinstance(exc, _StatusError):
        return _status_error(exc, where, tries)
    if isinstance(exc, _TooLarge):
        return FeedError(
            f"{where}: response is larger than [fetch] max_bytes = {cfg.max_bytes} bytes",
            hint="raise [fetch] max_bytes in config.toml if the feed really is that large",
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return FeedError(
            f"{where}: connect timeout: no connection within {cfg.connect_timeout:g} s ({tries})",
            hint="the server may be down; raise [fetch] connect_timeout if it is just slow",
        )
    if isinstance(exc, httpx.TimeoutException):
        return FeedError(
            f"{where}: read timeout: no data for {cfg.read_timeout:g} s ({tries})",
            hint="the server is slow or stuck; raise [fetch] read_timeout if it is just slow",
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return FeedError(
            f"{where}: more than {MAX_REDIRECTS} redirects",
            hint="open the URL in a browser and use the address it ends up at",
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return FeedError(f"{where}: not a fetchable http(s) URL ({exc})", hint="check the feed URL")
    if isinstance(exc, httpx.ConnectError):
        tls = _tls_problem(exc)
        if tls is not None:
            reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(tls)
            return FeedError(f"{where}: TLS failed ({reason})", hint="the server's certificate is not valid")
        return FeedError(f"{where}: could not connect ({_reason(exc)}) after {tries}")
    if isinstance(exc, httpx.DecodingError):
        return FeedError(f"{where}: could not decode the response body ({_reason(exc)})")
    if isinstance(exc, httpx.HTTPError):
        return FeedError(f"{where}: connection failed ({_reason(exc)}) after {tries}")
    return FeedError(f"{where}: fetch failed ({type(exc).__name__}: {exc})")


def _status_error(exc: _StatusError, where: str, tries: str) -> FeedError:
    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = ""
    status = f"HTTP {exc.status} {phrase}".rstrip()
    if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER:
        return FeedError(
            f"{where}: {status}; the server asked to wait {exc.retry_after:.0f} s before asking again",
            hint="try again later",
        )
    if _is_transient(exc):
        return FeedError(f"{where}: {status} after {tries}", hint="the server is having trouble; try later")
    if exc.status in {401, 403}:
        return FeedError(f"{where}: {status}", hint="the feed is not public, or blocks this User-Agent")
    if exc.status in {404, 410}:
        return FeedError(f"{where}: {status}", hint="check the feed URL in config.toml")
    return FeedError(f"{where}: {status}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
