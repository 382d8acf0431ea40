"""Ways out: one module per transport, all behind ``base.Transport``; ``open_transport`` picks one."""

from __future__ import annotations

from digest.config import Settings
from digest.delivery.transports.base import Transport


def open_transport(settings: Settings) -> Transport:
    """The transport named by ``[delivery] transport``, configured and ready to send."""
    name = settings.delivery.transport
    if name == "sendgrid":
        from digest.delivery.transports.sendgrid import SendGridTransport

        return SendGridTransport.from_settings(settings)
    if name == "smtp":
        from digest.delivery.transports.smtp import SmtpTransport

        return SmtpTransport.from_settings(settings)
    from digest.delivery.transports.outbox import OutboxTransport

    return OutboxTransport.from_settings(settings)
