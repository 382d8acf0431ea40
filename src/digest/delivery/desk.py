"""The editors' desk, apart from the web: who may sign in, their sessions, and the throttle.

The CLI (`digest editors ...`) and the web desk call these functions; nothing else hashes a
password, opens a session or decides a sign-in.

- Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
  option); a hash made with weaker parameters than today's is replaced at the next sign-in.
- A session is a random token in the editor's cookie; the database keeps only its SHA-256, with
  the session's CSRF token and its end (``[desk] session_hours``). Signing out deletes it.
- A failed sign-in counts against the IP address and against the address typed, whether or not
  an editor has it. After ``FAILURES`` in ``FAILURE_WINDOW`` either way, sign-ins are refused
  (429 on the web, with when to try again) until the oldest failure leaves the window. The counts
  live in this process's memory (``limits``): one `digest serve` process is what the desk
  supports; a restart forgets them.
- Every refusal says the same words whether or not the address is an editor's, and an unknown
  address costs the same argon2 verification as a wrong password, so neither the answer nor its
  time tells who has an account.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import time as clock_time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from digest.errors import DigestError
from digest.models import IssueKey
from digest.store import DeskSession, Editor, Store, email_key
from digest.subscribers import check_email

MIN_PASSWORD = 12  # characters; long passphrases rather than composition rules (NIST SP 800-63B)
MAX_PASSWORD = 1024  # an absurd password is refused before argon2 spends memory on it
FAILURES = 10
FAILURE_WINDOW = RateLimitItemPerMinute(FAILURES, 15)  # 10 failures per 15 minutes
WRONG = "Wrong email address or password."

_hasher = PasswordHasher()
# Verified against when no editor has the address typed, so that costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class DeskError(DigestError):
    """An editor or a desk action was refused; the message says why and what to do."""


class BadPassword(DeskError):
    """A new password that cannot be used: exit code 2, like a usage error."""

    exit_code = 2


class SignInRefused(DeskError):
    """Wrong address or password; the same words either way."""

    def __init__(self) -> None:
        super().__init__(WRONG)


class Throttled(DeskError):
    """Too many failed sign-ins from this address or for this account."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed sign-ins. Try again in {math.ceil(retry_after / 60)} minute(s).")
        self.retry_after = retry_after


# --- editors ------------------------------------------------------------------------------------


def check_password(password: str) -> str:
    """The new password, or BadPassword saying what is wrong with it."""
    if len(password) < MIN_PASSWORD:
        raise BadPassword(f"the password is too short: use at least {MIN_PASSWORD} characters (a passphrase)")
    if len(password) > MAX_PASSWORD:
        raise BadPassword(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def add_editor(store: Store, email: str, password: str) -> tuple[str, bool]:
    """Let ``email`` sign in to the desk with ``password``; an existing editor gets the new
    password and is signed out everywhere. Returns the address as stored (its domain in lower
    case) and whether the editor is new."""
    address = check_email(email)
    return address, store.editors.save(address, _hasher.hash(check_password(password)))


def remove_editor(store: Store, email: str) -> None:
    """Take an editor off the desk, ending their sessions; DeskError if there is none."""
    if not store.editors.remove(email):
        raise DeskError(f"{email} is not an editor", hint="`digest editors list` shows who is")


def editors(store: Store) -> list[Editor]:
    return store.editors.every()


# --- signing in and out -------------------------------------------------------------------------


class Throttle:
    """Failed sign-ins counted per IP address and per address typed, in moving windows."""

    def __init__(self) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, ip: str, email: str) -> None:
        """Raise Throttled when either count is spent."""
        waits = [self._wait("ip", ip), self._wait("account", email_key(email))]
        wait = max(waits)
        if wait > 0:
            raise Throttled(wait)

    def failed(self, ip: str, email: str) -> None:
        self.limiter.hit(FAILURE_WINDOW, "ip", ip)
        self.limiter.hit(FAILURE_WINDOW, "account", email_key(email))

    def succeeded(self, email: str) -> None:
        """A right password clears its account's count (not its IP's: one editor signing in
        must not reset the count of someone trying other accounts from the same place)."""
        self.limiter.clear(FAILURE_WINDOW, "account", email_key(email))

    def _wait(self, kind: str, who: str) -> int:
        """Seconds until ``who`` may try again; 0 when they may now."""
        if self.limiter.test(FAILURE_WINDOW, kind, who):
            return 0
        reset = self.limiter.get_window_stats(FAILURE_WINDOW, kind, who).reset_time
        return max(1, math.ceil(reset - time.time()))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A session just opened: the token for the cookie (never stored) and the session."""

    token: str
    session: DeskSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign_in(
    store: Store, throttle: Throttle, email: str, password: str, *, ip: str, now: datetime, hours: int
) -> SignedIn:
    """Open a session for ``hours`` if ``password`` is the editor's; SignInRefused or Throttled if not."""
    throttle.check(ip, email)
    editor = store.editors.by_email(email) if email.strip() and len(password) <= MAX_PASSWORD else None
    if editor is None or not _verified(store, editor, password):
        if editor is None:
            _verified(None, None, password)  # the same argon2 work, so timing does not tell
        throttle.failed(ip, email)
        raise SignInRefused()
    throttle.succeeded(email)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + timedelta(hours=hours)
    store.editors.open_session(editor.id, token_hash(token), csrf, expires)
    return SignedIn(token, DeskSession(editor.id, editor.email, csrf, expires))


def _verified(store: Store | None, editor: Editor | None, password: str) -> bool:
    """Whether ``password`` is ``editor``'s (for None, a verification that always fails)."""
    stored = editor.password_hash if editor else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return False
    if store is not None and editor is not None and _hasher.check_needs_rehash(stored):
        store.editors.rehash(editor.id, _hasher.hash(password))
    return editor is not None


def session_of(store: Store, token: str, now: datetime) -> DeskSession | None:
    """The session a cookie's token opens, or None (no such session, or it has ended)."""
    return store.editors.session(token_hash(token), now) if token else None


def sign_out(store: Store, token: str) -> None:
    store.editors.end_session(token_hash(token))


def csrf_ok(session: DeskSession, posted: str) -> bool:
    """Whether a form's CSRF token is its session's (compared in constant time)."""
    return bool(posted) and hmac.compare_digest(session.csrf.encode(), posted.encode())


# --- history ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Week:
    """Active subscribers at the end of one ISO week (or now, for the week under way)."""

    key: str
    active: int


def subscriber_weeks(store: Store, now: datetime, zone: tzinfo, weeks: int = 26) -> list[Week]:
    """The active subscriber count at the end of each of the last ``weeks`` ISO weeks in
    ``zone``, the current one counted at ``now``: from each subscriber's join date and, for one
    no longer active, when that took effect (``Subscribers.lifetimes``). Deleted addresses
    (`subscribers remove --forget`) are in no week."""
    lifetimes = store.subscribers.lifetimes()
    joined = sorted(start for start, _ in lifetimes)
    left = sorted(stop for _, stop in lifetimes if stop is not None)
    local = now.astimezone(zone)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), clock_time(), zone)
    found = []
    for back in range(weeks - 1, -1, -1):
        end = monday - timedelta(weeks=back - 1) if back else now  # a week ends where the next begins
        active = bisect_right(joined, end) - bisect_right(left, end)
        found.append(Week(str(IssueKey.at(end - timedelta(microseconds=1), zone)), active))
    return found
