"""Telling editors: a plain notice through the newsletter's own transport, and the log.

Used when an issue is not sent (thin week, feeds down, not approved, missed past the grace) and
to send the review copy of a draft. A failure to notify is logged, never raised: the notice must
not turn a skipped issue into a crashed scheduler.
"""

from __future__ import annotations

import html
import logging
import time

from .config import Settings
from .render import Rendered
from .transports import open_transport
from .transports.base import Batch, Recipient

log = logging.getLogger("digest.notify")


def tell_editors(settings: Settings, key: str, subject: str, body: str) -> bool:
    """Email ``body`` to ``[newsletter] editors`` and log it; True if the notice went out."""
    log.warning("%s", body, extra={"issue": key})
    editors = settings.newsletter.editors
    if not editors:
        return False
    notice = Rendered(
        subject=f"[digest] {subject}",
        html=f'<pre style="font-family:monospace;white-space:pre-wrap">{html.escape(body)}</pre>\n',
        text=body + "\n",
        warnings=(),
    )
    recipients = tuple(Recipient(i, 0, address, {"email": address}) for i, address in enumerate(editors, start=1))
    try:
        transport = open_transport(settings)
        try:
            # A batch id from the clock names each notice apart in the outbox folder.
            result = transport.send(Batch(f"notices-{key}", notice, recipients, batch_id=time.time_ns() // 1000))
        finally:
            transport.close()
    except Exception as exc:  # a notice must never take the scheduler down
        log.error("could not email the editors about %s: %s", key, exc, extra={"issue": key})
        return False
    return all(status == "submitted" for status, _ in result.outcomes.values())
