"""Telling editors: a plain notice through the newsletter's own transport, and the log.

Used when an issue is not sent (thin week, feeds down, not approved, missed past the grace), when
one is built without some of its feeds, and to send the review copy of a draft. A failure to
notify is logged, never raised: the notice must not turn a skipped issue into a crashed scheduler.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Sequence

from digest.config import Settings
from digest.delivery.transports import open_transport
from digest.delivery.transports.base import Batch, Recipient
from digest.issue.render import Rendered

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


def tell_feeds_down(settings: Settings, key: str, missing: Sequence[str], *, draft: bool) -> bool:
    """Tell editors that issue ``key`` was built without some feeds, naming each and why.

    ``missing`` is one line per feed (``Build.feeds_down``); ``draft`` says the issue waits for
    review rather than going out now.
    """
    total = len(settings.feeds)
    outcome = (
        "The draft holds the other feeds' articles; pinning or excluding an article rebuilds it with every feed "
        "read again."
        if draft
        else "It goes out with the other feeds' articles."
    )
    body = (
        f"{key} was built without {len(missing)} of its {total} feeds: {' | '.join(missing)}. {outcome} "
        "Fix the feed or remove it from config.toml; [fetch] require_all = true builds no issue without every feed."
    )
    return tell_editors(settings, key, f"{key} is built without {len(missing)} feed(s)", body)
