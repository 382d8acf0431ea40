"""What each transport outcome means for a batch: the rules the send runner sends under.

- 401/403 (AuthError): stop the whole send; the runner gives the batch back untouched, nothing
  submitted;
- 400 (RejectedError): that batch fails with the service's words, the send goes on;
- 413 (TooLargeError): split the batch in halves and send each;
- 429 (RateLimitedError): wait as told (at least ``MIN_RATE_WAIT``, in all at most ``max_rate_wait``),
  send the same batch again;
- 5xx / refused connection (TemporaryError): back off exponentially with jitter, a bounded
  number of times, then fail the batch;
- a timeout after the request went out (UncertainError): the batch is ``unknown`` and is never
  sent again on its own, because the service may have accepted it.

A transport never retries and never touches the ledger (see ``transports/base.py``): it raises
the error that says what happened, and these rules decide what follows.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping

from digest.config import Delivery
from digest.delivery.transports.base import (
    AuthError,
    Batch,
    Outcome,
    RateLimitedError,
    Recipient,
    RejectedError,
    Result,
    TemporaryError,
    TooLargeError,
    Transport,
    TransportError,
    UncertainError,
)

log = logging.getLogger("digest.deliver")  # the name operators read; these rules were deliver.py's
# The shortest wait after a 429. A reset already passed (the service's clock ahead of ours) asks
# for none; without a floor such answers would be met by requests as fast as they come back, and
# their waits would never add up to [delivery] max_rate_wait, which bounds them.
MIN_RATE_WAIT = 1.0


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
            wait = max(exc.retry_after, MIN_RATE_WAIT)
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
