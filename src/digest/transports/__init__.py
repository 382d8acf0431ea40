"""Ways out: one module per transport, all behind ``base.Transport``; ``open_transport`` picks one."""

from __future__ import annotations

from ..config import Settings
from .base import Transport


def open_transport(settings: Settings) -> Transport:
    """The transport named by ``[delivery] transport``, configured and ready to send."""
    name = settings.delivery.transport
    if name == "sendgrid":
        from .sendgrid import SendGridTransport

        return SendGridTransport.from_settings(settings)
    if name == "smtp":
        from .smtp import SmtpTransport

        return SmtpTransport.from_settings(settings)
    from .outbox import OutboxTransport

    return OutboxTransport.from_settings(settings)
