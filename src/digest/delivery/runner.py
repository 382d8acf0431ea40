"""Sending an issue: record it, queue every active subscriber once, and walk the queue in batches.

The ledger (``store``) makes it safe; this module decides what each transport outcome means:

- 401/403 (AuthError): stop the whole send, give the batch back untouched, nothing submitted;
- 400 (RejectedError): that batch fails with the service's words, the send goes on;
- 413 (TooLargeError): split the batch in halves and send each;
- 429 (RateLimitedError): wait as told (bounded by ``max_rate_wait``), send the same batch again;
- 5xx / refused connection (TemporaryError): back off exponentially with jitter, a bounded
  number of times, then fail the batch;
- a timeout after the request went out (UncertainError): the batch is ``unknown`` and is never
  sent again on its own, because the service may have accepted it.

What a transport can prove later settles an ``unknown`` delivery (``settle_unknown``, at the
start of every send); the rest stay unknown until the operator says ``--resend-unknown``.

Per-recipient work is only what must differ per recipient: a signed token and the values that
fill the placeholders. The variant is rendered and inlined once, before any batch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from digest.config import Delivery, Settings
from digest.delivery.tokens import Signer
from digest.delivery.transports.base import (
    AuthError,
    Batch,
    Orphan,
    Outcome,
    RateLimitedError,
    Recipient,
    RejectedError,
    Result,
    Settles,
    TemporaryError,
    TooLargeError,
    Transport,
    TransportError,
    UncertainError,
)
from digest.issue.build import Build, preview_values, summary
from digest.issue.rank import restrict
from digest.issue.render import Rendered, Renderer
from digest.models import ALL_SECTIONS, Issue, SectionChoice, issue_from_data, issue_to_data
from digest.store import Claimed, Store

log = logging.getLogger("digest.deliver")


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class SendReport:
    issue_key: str
    recorded: bool = False
    enqueued: int = 0
    orphaned: int = 0
    settled: int = 0  # unknown deliveries the transport proved submitted
    requeued: int = 0  # unknown deliveries the transport proved never sent: sent now
    resent: int = 0  # unknown deliveries queued again by --resend-unknown
    batches: int = 0
    sent_now: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def recipient_values(settings: Settings, signer: Signer, subscriber_id: int, email: str, name: str) -> dict[str, str]:
    """What fills one subscriber's placeholders: their name and their signed links."""
    token = signer.token(subscriber_id)
    base = settings.newsletter.base_url
    return {
        "name": name,
        "email": email,
        "unsubscribe_url": f"{base}/unsubscribe?t={token}",
        "preferences_url": f"{base}/preferences?t={token}",
    }


def record(
    store: Store,
    settings: Settings,
    result: Build,
    *,
    status: str = "sending",
    send_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> bool:
    """Store the issue, one rendered variant per choice of sections subscribers have made, and
    its articles; False if it was recorded before (its snapshot is kept).

    Each variant is rendered and inlined once, however many subscribers share it. ``status`` is
    "sending" for an issue about to go out, "draft" for one built for review.
    """
    issue = result.issue
    renderer = renderer or Renderer(settings)
    rendered = {ALL_SECTIONS: _parts(result.rendered)}
    for name in chosen_variants(store, settings):
        part = render_variant(settings, issue, name, renderer)
        if part is not None:
            rendered[name] = _parts(part)
    return store.record_issue(
        issue.key,
        subject=result.rendered.subject,
        window=(issue.window.start, issue.window.end),
        article_count=len(issue.articles),
        summary={**summary(result), "issue_data": issue_to_data(issue)},
        rendered=rendered,
        articles=[a.canonical_url for a in issue.articles],
        status=status,
        send_at=send_at,
    )


def chosen_variants(store: Store, settings: Settings) -> list[str]:
    """The variants besides ``all`` that active subscribers' choices of sections call for, in
    config order of their first section."""
    configured = settings.section_names
    choices = (SectionChoice.of(names, configured) for names in store.section_choices())
    places = {choice.variant: choice.positions for choice in choices if not choice.everything}
    return sorted(places, key=places.__getitem__)


def render_variant(settings: Settings, issue: Issue, name: str, renderer: Renderer) -> Rendered | None:
    """The issue as the readers of variant ``name`` get it; None when its sections have no
    article this week (those readers are sent nothing)."""
    part = restrict(issue, SectionChoice.of_variant(name, settings.section_names).sections)
    return None if part is None else renderer.render(part)


def stored_variant(store: Store, key: str, name: str = ALL_SECTIONS) -> Rendered:
    subject, html, text = store.variant(key, name)
    return Rendered(subject=subject, html=html, text=text, warnings=())


def _parts(r: Rendered) -> tuple[str, str, str]:
    return r.subject, r.html, r.text


class Variants:
    """The variant each choice of sections gets for one recorded issue, rendered on first need.

    A choice first met after the issue was recorded (a new subscriber, a changed preference) is
    rendered from the issue's stored articles, so it carries the same content as the rest.
    """

    def __init__(self, store: Store, settings: Settings, key: str) -> None:
        self.store, self.settings, self.key = store, settings, key
        self.known = store.variant_names(key)
        self.empty: set[str] = set()
        self._issue: Issue | None = None
        self._renderer: Renderer | None = None

    def __call__(self, choice: tuple[str, ...]) -> str | None:
        """The variant a subscriber with ``choice`` is sent (stored on first need), or None."""
        name = SectionChoice.of(choice, self.settings.section_names).variant
        if name in self.known:
            return name
        if name in self.empty:
            return None
        if self.stored_issue() is None:  # recorded before issues kept their articles: everyone gets it whole
            return ALL_SECTIONS
        rendered = self.render(name)
        if rendered is None:
            self.empty.add(name)
            return None
        self.store.add_variant(self.key, name, _parts(rendered))
        self.known.add(name)
        return name

    def render(self, name: str) -> Rendered | None:
        """Variant ``name`` as it is (or would be) sent, storing nothing: the stored rendering if
        there is one, else one from the issue's stored articles; None if it has no article."""
        if name in self.known:
            return stored_variant(self.store, self.key, name)
        stored = self.stored_issue()
        if stored is None:
            return stored_variant(self.store, self.key, ALL_SECTIONS)
        self._renderer = self._renderer or Renderer(self.settings)
        return render_variant(self.settings, stored, name, self._renderer)

    def stored_issue(self) -> Issue | None:
        """The recorded issue's sections, articles and lead (None if it was recorded without)."""
        if self._issue is None:
            data = self.store.issue_summary(self.key).get("issue_data")
            if not data:
                return None
            self._issue = issue_from_data(data)
        return self._issue


def send_pending(
    store: Store,
    settings: Settings,
    transport: Transport,
    signer: Signer,
    key: str,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    resend_unknown: bool = False,
) -> SendReport:
    """Queue newcomers, mark orphaned batches unknown and settle what the transport can, then
    send every pending delivery.

    ``resend_unknown`` (the operator's decision) queues the unknown deliveries left after that
    again. ``stop`` is checked between batches: set it (on SIGTERM) to finish the batch in
    flight and take no new one.
    """
    cfg = settings.delivery
    report = SendReport(key)
    report.enqueued = store.enqueue(key, Variants(store, settings, key))
    report.orphaned = store.reap_orphans(key, lease=timedelta(minutes=cfg.lease_minutes))
    if report.orphaned:
        log.warning(
            "%d batch(es) left in flight by a stopped process are now 'unknown'", report.orphaned, extra={"issue": key}
        )
    report.settled, report.requeued = settle_unknown(store, transport, key)
    if resend_unknown:
        report.resent = store.resend_unknown(key)
        if report.resent:
            log.warning(
                "%d unknown recipient(s) queued again (--resend-unknown): some of them may already have "
                "this issue and will get a second copy",
                report.resent,
                extra={"issue": key},
            )
    progress = progress or NoProgress()
    progress.start(store.delivery_counts(key).get("pending", 0))
    size = min(cfg.batch_size, transport.max_batch)
    variants: dict[str, Rendered] = {}
    try:
        while not (stop and stop.is_set()):
            claimed = store.claim(key, size, transport.name)
            if claimed is None:
                break
            if claimed.variant not in variants:
                variants[claimed.variant] = stored_variant(store, key, claimed.variant)
            batch = _batch(settings, signer, claimed, variants[claimed.variant])
            _send_claimed(store, transport, cfg, claimed, batch, sleep)
            report.batches += 1
            report.sent_now += len(claimed.recipients)
            progress.advance(len(claimed.recipients))
    finally:
        progress.close()
    report.counts = store.delivery_counts(key)
    if not report.counts.get("pending") and not report.counts.get("submitting"):
        store.set_issue_status(key, "sent", expect=("sending",))
    return report


def settle_unknown(store: Store, transport: Transport, key: str) -> tuple[int, int]:
    """Let the transport settle the issue's unknown deliveries of its own batches: returns how
    many it proved (submitted, never sent). What it cannot prove stays unknown; so does
    everything when it cannot look (logged, and the send goes on)."""
    if not isinstance(transport, Settles):
        return 0, 0
    orphans = [Orphan(did, sid, email, key, bid) for did, sid, email, bid in store.orphans(key, transport.name)]
    if not orphans:
        return 0, 0
    try:
        resolved = transport.settle(orphans)
    except TransportError as exc:
        log.warning("%d unknown recipient(s) stay unknown: %s", len(orphans), exc, extra={"issue": key})
        return 0, 0
    submitted, unsent = store.settle(resolved)
    log.warning(
        "%d unknown recipient(s) settled by the %s transport: %d were submitted, %d never sent (sent now); "
        "%d stay unknown",
        submitted + unsent,
        transport.name,
        submitted,
        unsent,
        len(orphans) - submitted - unsent,
        extra={"issue": key},
    )
    return submitted, unsent


def _batch(settings: Settings, signer: Signer, claimed: Claimed, variant: Rendered) -> Batch:
    recipients = tuple(
        Recipient(did, sid, email, recipient_values(settings, signer, sid, email, name))
        for did, sid, email, name in claimed.recipients
    )
    return Batch(claimed.issue_key, variant, recipients, batch_id=claimed.id)


def _send_claimed(
    store: Store, transport: Transport, cfg: Delivery, claimed: Claimed, batch: Batch, sleep: Callable[[float], None]
) -> None:
    try:
        result = deliver_batch(transport, batch, cfg, sleep)
    except AuthError:
        store.release(claimed)  # nothing went out: the recipients wait for a working key
        raise
    except BaseException as exc:  # interrupted mid-request: it may have gone out
        store.finish(claimed, {r.delivery_id: ("unknown", f"interrupted: {exc!r}") for r in batch.recipients})
        raise
    status = store.finish(claimed, result.outcomes, result.provider_id)
    log.info(
        "batch %d (%d recipient(s)): %s",
        claimed.id,
        len(claimed.recipients),
        status,
        extra={"issue": claimed.issue_key},
    )
    if result.fatal:
        raise AuthError(result.fatal)


def deliver_batch(
    transport: Transport, batch: Batch, cfg: Delivery, sleep: Callable[[float], None] = time.sleep
) -> Result:
    """Send one batch under the outcome rules above; only an AuthError on the first try escapes."""
    try:
        return _with_retries(transport, batch, cfg, sleep)
    except TooLargeError as exc:
        if len(batch.recipients) == 1:
            return _all(batch, "failed", f"too large for the service even alone: {exc}")
        half = len(batch.recipients) // 2
        first = deliver_batch(transport, _part(batch, batch.recipients[:half]), cfg, sleep)
        try:
            second = deliver_batch(transport, _part(batch, batch.recipients[half:]), cfg, sleep)
        except AuthError as auth:  # the first half went out: record it, then stop
            second = _all(_part(batch, batch.recipients[half:]), "failed", str(auth))
            second.fatal = str(auth)
        return Result(
            {**first.outcomes, **second.outcomes},
            first.provider_id or second.provider_id,
            fatal=first.fatal or second.fatal,
        )
    except UncertainError as exc:
        return _all(batch, "unknown", str(exc), exc.settled)
    except AuthError:
        raise
    except (RejectedError, TemporaryError, RateLimitedError, TransportError) as exc:
        return _all(batch, "failed", str(exc), exc.settled)


def _with_retries(transport: Transport, batch: Batch, cfg: Delivery, sleep: Callable[[float], None]) -> Result:
    failures = 0
    waited = 0.0
    while True:
        try:
            return transport.send(batch)
        except RateLimitedError as exc:
            wait = max(exc.retry_after, 0.0)
            if waited + wait > cfg.max_rate_wait:
                raise RateLimitedError(
                    f"{exc} (gave up: waiting {waited + wait:.0f} s would pass [delivery] max_rate_wait = "
                    f"{cfg.max_rate_wait:g} s)",
                    retry_after=wait,
                ) from exc
            log.warning(
                "rate limited; waiting %.1f s before sending batch %d again",
                wait,
                batch.batch_id,
                extra={"issue": batch.issue_key},
            )
            waited += wait
            sleep(wait)
        except TemporaryError as exc:
            failures += 1
            if failures > cfg.retries:
                raise TemporaryError(f"{exc} (after {failures} tries)") from exc
            delay = min(cfg.max_backoff, cfg.backoff * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
            log.warning("%s; retrying batch %d in %.1f s", exc, batch.batch_id, delay, extra={"issue": batch.issue_key})
            sleep(delay)


def _part(batch: Batch, recipients: Iterable[Recipient]) -> Batch:
    return Batch(batch.issue_key, batch.variant, tuple(recipients), batch.batch_id, batch.test)


def _all(batch: Batch, status: Outcome, error: str, settled: Mapping[int, tuple[Outcome, str]] | None = None) -> Result:
    """Every recipient of the batch with one outcome, but those the transport had already settled."""
    settled = settled or {}
    return Result({r.delivery_id: settled.get(r.delivery_id, (status, error)) for r in batch.recipients})


def send_test(
    settings: Settings, transport: Transport, variant: Rendered, key: str, addresses: Iterable[str]
) -> Result:
    """Test copies: the subject marked [TEST], links without a token, nothing recorded."""
    values = preview_values(settings)
    recipients = tuple(
        Recipient(i, 0, address, {**values, "email": address}) for i, address in enumerate(addresses, start=1)
    )
    batch = Batch(key, variant, recipients, test=True)
    result = deliver_batch(transport, batch, settings.delivery)
    problems = [
        f"{r.email}: {result.outcomes[r.delivery_id][1]}"
        for r in recipients
        if result.outcomes.get(r.delivery_id, ("failed",))[0] != "submitted"
    ]
    if problems:
        raise RejectedError("test copy not sent to " + "; ".join(problems))
    return result
