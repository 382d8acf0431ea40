"""One way an issue goes out, whoever asks: `digest send`, the scheduler's send job, the editors.

The order matters and is the same for every caller, so it lives here once:

1. the signing secret is read first: without it nothing is recorded and nothing is sent;
2. the issue is made ready (``weekly.ready_to_send``: recorded, approved, or refused with
   ``NotSent``); failed deliveries are queued again if the operator asked;
3. the caller is told what is about to go out (the CLI prints it before the progress bar);
4. the transport is opened, every pending delivery is sent (``runner.send_pending``), and the
   transport is closed whatever happened.

Callers keep only their own policy: the CLI its messages and exit code, the scheduler its feed
retries within the grace and what a skipped issue means.

Test copies (``[TEST]`` in the subject, nothing recorded) likewise go out one way, for
`digest send --to` and for the editors' review copy of a draft.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from digest.config import Settings
from digest.delivery import runner, variants, weekly
from digest.delivery.tokens import Signer
from digest.delivery.transports import open_transport
from digest.issue.render import Rendered
from digest.models import DeliveryStatus, IssueKey, IssueStatus
from digest.store import Store


@dataclass(frozen=True, slots=True)
class Prepared:
    """An issue recorded and queued, just before its transport opens."""

    ready: weekly.Ready
    retried: int  # failed deliveries queued again (``retry_failed``)


@dataclass(frozen=True, slots=True)
class Sent:
    """What one send did: the issue made ready, and the ledger's report after the last batch."""

    prepared: Prepared
    report: runner.SendReport

    @property
    def key(self) -> str:
        return self.prepared.ready.key

    @property
    def interrupted(self) -> bool:
        """Stopped between batches (``stop`` was set): pending deliveries are left for the next run."""
        return bool(self.report.counts.get(DeliveryStatus.PENDING))

    @property
    def troubled(self) -> int:
        """Recipients whose delivery failed or whose outcome is unknown."""
        return self.report.counts.get(DeliveryStatus.FAILED, 0) + self.report.counts.get(DeliveryStatus.UNKNOWN, 0)


def send_issue(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    scheduled: bool = False,
    retry_failed: bool = False,
    resend_unknown: bool = False,
    progress: runner.Progress | None = None,
    stop: threading.Event | None = None,
    announce: Callable[[Prepared], None] | None = None,
) -> Sent:
    """Send the issue for run time ``now`` to every subscriber it has not reached yet.

    Raises ``weekly.NotSent`` (or the build's error) when the issue does not go out; nothing
    is sent then. ``scheduled`` applies the review rules of a scheduled send; ``stop`` is
    checked between batches; ``announce`` is called once the issue is ready, before any batch.
    """
    signer = Signer.from_env()
    ready = weekly.ready_to_send(settings, store, now, scheduled=scheduled)
    prepared = Prepared(ready, store.ledger.retry_failed(ready.key) if retry_failed else 0)
    if announce is not None:
        announce(prepared)
    transport = open_transport(settings)
    try:
        report = runner.send_pending(
            store, settings, transport, signer, ready.key, progress=progress, stop=stop, resend_unknown=resend_unknown
        )
    finally:
        transport.close()
    return Sent(prepared, report)


@dataclass(frozen=True, slots=True)
class Proof:
    """What a ``[TEST]`` copy shows: the issue's key, its rendering, and the build's warnings."""

    key: str
    rendered: Rendered
    warnings: tuple[str, ...]


def proof_of(settings: Settings, store: Store, now: datetime) -> Proof:
    """The issue for ``now`` as a test copy shows it: the recorded snapshot if there is one
    (what subscribers get), else a fresh build with the editors' edits; nothing recorded."""
    key = str(IssueKey.at(now, settings.newsletter.zone))
    record = store.issues.get(key)
    if record is not None and record.status != IssueStatus.SKIPPED:
        return recorded_proof(store, key)
    built = weekly.build_for(settings, store, now)
    return Proof(key, built.rendered, built.warnings)


def recorded_proof(store: Store, key: str) -> Proof:
    """The recorded issue ``key`` as a test copy shows it: its stored snapshot, whole."""
    return Proof(key, variants.stored_variant(store, key), tuple(store.issues.summary(key).get("warnings", ())))


def send_proofs(settings: Settings, rendered: Rendered, key: str, addresses: Iterable[str]) -> None:
    """``[TEST]`` copies of ``rendered`` to ``addresses`` through the newsletter's transport;
    nothing is recorded. Raises ``RejectedError`` naming each address it did not reach."""
    transport = open_transport(settings)
    try:
        runner.send_test(settings, transport, rendered, key, addresses)
    finally:
        transport.close()
