"""Readers signing themselves up, with double opt-in: what ``/subscribe`` and ``/confirm`` do.

A sign-up is checked, limited, recorded as pending and answered with a confirmation mail whose
link is signed and expires (``[signup] confirm_ttl``). Only that link makes an address active,
whatever it was before (new, unsubscribed, bounced, complained), because using it is new,
explicit consent; until then the address is mailed nothing but that one confirmation. The answer
to a sign-up never depends on the address's state, so nobody can learn who subscribes.

The web module only reads requests and writes pages; every rule lives here or, where requests
race, in one transaction of ``store.signups``:

- per-IP and per-address rate limits (in this process's memory, moving windows, ``limits``);
- at most one confirmation mail per address in ``MAIL_EVERY``, whatever is posted;
- pending sign-ups whose link has expired are deleted (``prune``, at most once a minute);
- ``[signup] welcome = "latest-issue"`` mails a new reader the latest sent issue once, through
  the ledger like any delivery, so no one gets an issue twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerMonth,
    RateLimitItemPerSecond,
    RateLimitItemPerYear,
)
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from digest.config import Rate, Settings
from digest.delivery import runner
from digest.delivery.tokens import BadToken, Signer
from digest.delivery.transports import open_transport
from digest.delivery.transports.base import Batch, Recipient, TransportError
from digest.delivery.variants import Variants
from digest.errors import DigestError, SubscriberError
from digest.issue.render import Rendered, Renderer
from digest.models import SectionChoice
from digest.store import Confirmed, Pending, SignupRequest, Store, email_key, utcnow
from digest.subscribers import check_email, check_name
from digest.text import one_line

log = logging.getLogger("digest.signup")

MAIL_EVERY = timedelta(minutes=10)  # at most one confirmation mail per address in this time
PRUNE_EVERY = 60.0  # seconds between sweeps of expired sign-ups, per process
SOURCE_MAX = 100
USER_AGENT_MAX = 200
CONFIRM_TEMPLATE = "confirm"  # templates/email/confirm.html.j2 and confirm.txt.j2
OUTBOX_LABEL = "signups"  # what a transport files confirmation mails under (the outbox's folder)


class BadSignup(ValueError):
    """A sign-up that cannot be taken as posted; ``field`` names the form field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class MailNotSent(DigestError):
    """The confirmation mail could not be handed to the transport; the reader may try again."""


@dataclass(frozen=True, slots=True)
class Form:
    """A sign-up as posted, checked: normalised address, name, sections (config spelling, none
    for every section) and where on the publication's site it came from."""

    email: str
    name: str
    sections: tuple[str, ...]
    source: str


def check_form(email: str, name: str, sections: Sequence[str], source: str, configured: Sequence[str]) -> Form:
    """The posted fields checked the way ``subscribers add`` checks them; BadSignup naming the field."""
    try:
        address = check_email(email)
    except SubscriberError as exc:
        raise BadSignup("email", "Please enter a valid email address.") from exc
    try:
        checked_name = check_name(name)
    except SubscriberError as exc:
        raise BadSignup("name", f"Please give your name as one line of plain text: {exc.message}") from exc
    try:
        choice = SectionChoice.of(sections, configured, strict=True).normalised().names
    except ValueError as exc:
        raise BadSignup("sections", f"Please choose among the sections offered: {exc}") from exc
    return Form(address, checked_name, choice, one_line(source)[:SOURCE_MAX])


_LIMIT_ITEMS: dict[str, type[RateLimitItem]] = {
    "second": RateLimitItemPerSecond,
    "minute": RateLimitItemPerMinute,
    "hour": RateLimitItemPerHour,
    "day": RateLimitItemPerDay,
    "month": RateLimitItemPerMonth,
    "year": RateLimitItemPerYear,
}


def limit_item(rate: Rate) -> RateLimitItem:
    """The ``limits`` item counting a rate the config gave (parsed there, where it is checked)."""
    return _LIMIT_ITEMS[rate.unit](rate.amount, rate.multiples)


class RateLimits:
    """Sign-ups allowed per IP address and per email address, counted in moving windows in this
    process's memory (``limits``). A post past either limit is refused, not queued."""

    def __init__(self, settings: Settings) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_ip = limit_item(settings.signup.per_ip_rate)
        self.per_address = limit_item(settings.signup.per_address_rate)

    def ip_allowed(self, ip: str) -> bool:
        return self.limiter.hit(self.per_ip, "ip", ip)

    def address_allowed(self, email: str) -> bool:
        return self.limiter.hit(self.per_address, "address", email_key(email))

    def retry_after(self) -> int:
        """Seconds a refused poster should wait: the shorter window, which frees a place soonest."""
        return min(self.per_ip.get_expiry(), self.per_address.get_expiry())


class SignupDesk:
    """Takes sign-ups and confirmations for one newsletter: ``Site`` holds one per app."""

    def __init__(
        self, settings: Settings, store: Store, signer: Signer, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings, self.store, self.signer, self.clock = settings, store, signer, clock
        self.limits = RateLimits(settings)
        self.ttl = timedelta(seconds=settings.signup.confirm_ttl_seconds)
        self._pruned_at = float("-inf")
        self._prune_lock = threading.Lock()

    # --- signing up ------------------------------------------------------------------------------

    def request(self, form: Form, *, ip: str, user_agent: str) -> bool:
        """Record a checked sign-up and mail its confirmation link if one is due; True if a mail
        went out now. The caller answers the same either way (the answer must not tell anyone
        whether the address is new, pending, active or suppressed). MailNotSent when the
        transport refused it; the address's mail slot is then given back."""
        self.prune_now_and_then()
        request = SignupRequest(
            email=form.email,
            name=form.name,
            sections=form.sections,
            source=form.source,
            ip_hash=self.signer.keyed_hash(ip) if ip else "",
            user_agent=one_line(user_agent)[:USER_AGENT_MAX],
        )
        now = self.clock()
        done = self.store.signups.request(request, now=now, mail_every=MAIL_EVERY)
        if not done.mail_now:
            log.info("sign-up %d: a confirmation mail went out less than 10 minutes ago; none sent", done.pending.id)
            return False
        try:
            self.mail(done.pending)
        except Exception:
            self.store.signups.unmail(done.pending.id, now, done.previous_mail)
            raise
        log.info("sign-up %d: confirmation mail sent", done.pending.id)
        return True

    def confirm_url(self, pending: Pending) -> str:
        return f"{self.settings.newsletter.base_url}/confirm?t={self.signer.confirm_token(pending.nonce)}"

    @cached_property
    def confirm_mail(self) -> Rendered:
        """The confirmation mail, rendered and inlined once; each reader's link fills it."""
        newsletter = self.settings.newsletter
        base = newsletter.base_url
        return Renderer(self.settings).render_mail(
            CONFIRM_TEMPLATE,
            f"Please confirm your subscription to {newsletter.name}",
            {
                "links": {"archive": f"{base}/issues/", "subscribe": f"{base}/subscribe"},
                "valid_for": describe(self.ttl),
            },
        )

    def mail(self, pending: Pending) -> None:
        """Send ``pending`` its confirmation link through the newsletter's transport, once (no
        retries: the reader is waiting for the page, and may post again)."""
        values = {"name": pending.name, "email": pending.email, "confirm_url": self.confirm_url(pending)}
        # A batch id from the clock names each mail apart (the outbox's file names).
        batch = Batch(
            OUTBOX_LABEL, self.confirm_mail, (Recipient(1, 0, pending.email, values),), time.time_ns() // 1000
        )
        transport = open_transport(self.settings)
        try:
            result = transport.send(batch)
        except TransportError as exc:
            raise MailNotSent(f"the confirmation mail was not sent: {exc}") from exc
        finally:
            transport.close()
        status, error = result.outcomes.get(1, ("failed", "no outcome"))
        if status != "submitted":
            raise MailNotSent(f"the confirmation mail was not sent: {error}")

    # --- confirming ------------------------------------------------------------------------------

    def pending_for(self, token: str) -> Pending:
        """The sign-up a confirmation link names (it changes nothing: mail scanners open links);
        BadToken when the link is forged, altered or expired, or its sign-up is gone."""
        nonce = self.signer.confirm_nonce(token, self.ttl.total_seconds())
        pending = self.store.signups.by_nonce(nonce)
        if pending is None:
            raise BadToken("this link was replaced by a newer one, or has expired")
        return pending

    def confirm(self, token: str) -> Confirmed:
        """Make the sign-up a link names an active subscriber (a second use changes nothing) and
        send the welcome issue if the config asks; BadToken as ``pending_for``."""
        nonce = self.signer.confirm_nonce(token, self.ttl.total_seconds())
        now = self.clock()
        confirmed = self.store.signups.confirm(nonce, now=now, newer_than=now - self.ttl)
        if confirmed is None:
            raise BadToken("this link was replaced by a newer one, or has expired")
        if not confirmed.already:
            log.info("subscriber %d confirmed their sign-up", confirmed.subscriber_id)
            self.welcome(confirmed.subscriber_id)
        return confirmed

    def latest_issue(self) -> str | None:
        """The key of the latest issue that went out (the "you're in" page links to it)."""
        sent = self.store.issues.went_out()
        return sent[0].key if sent else None

    def welcome(self, subscriber_id: int) -> None:
        """``[signup] welcome = "latest-issue"``: the latest sent issue, in the reader's sections,
        through the ledger (one delivery per issue and subscriber: never twice). A failure is
        recorded on the delivery and logged; the confirmation stands."""
        if self.settings.signup.welcome != "latest-issue":
            return
        key = self.latest_issue()
        subscriber = self.store.subscribers.by_id(subscriber_id)
        if key is None or subscriber is None:
            return
        try:
            variant = Variants(self.store, self.settings, key)(subscriber.sections)
            transport = open_transport(self.settings)
            try:
                claimed = self.store.ledger.claim_one(key, subscriber_id, variant, transport.name)
                if claimed is not None:
                    runner.send_claimed(self.store, self.settings, transport, self.signer, claimed)
                    log.info("subscriber %d: welcome copy sent", subscriber_id, extra={"issue": key})
            finally:
                transport.close()
        except Exception as exc:  # the reader is confirmed whatever became of the welcome copy
            log.error("subscriber %d: welcome copy not sent: %s", subscriber_id, exc, extra={"issue": key})

    # --- housekeeping ----------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete the sign-ups whose links have all expired; returns how many."""
        removed = self.store.signups.prune(self.clock() - self.ttl)
        if removed:
            log.info("%d expired sign-up(s) deleted", removed)
        return removed

    def prune_now_and_then(self) -> None:
        """``prune``, at most once every ``PRUNE_EVERY`` seconds in this process."""
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = time.monotonic()
        self.prune()


def describe(span: timedelta) -> str:
    """``7 days``, ``36 hours``, ``90 minutes``: how long a link works, as the mail says it."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds // 60} minutes"
