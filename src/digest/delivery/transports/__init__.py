"""Ways out: one module per transport, all behind ``base.Transport``, registered here by name.

``[delivery] transport`` names one of ``TRANSPORTS``. Each class carries the model of its
``[delivery.<name>]`` table (``settings_model``, declared in config.py so the whole file is
checked when it is read) and opens itself with ``from_settings``. An unknown name is refused by
the config when it is loaded; ``open_transport`` refuses one too, rather than fall back to another
transport, which could send where the operator never meant to.

``memory.MemoryTransport`` is not registered: it keeps what it is given in the process, so a
send "through" it would mark every subscriber submitted while nobody got anything. The tests
construct it themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from digest.config import Delivery, Settings
from digest.delivery.transports.base import Transport, TransportClass
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.delivery.transports.smtp import SmtpTransport
from digest.errors import ConfigError


def _registry(*classes: TransportClass) -> Mapping[str, TransportClass]:
    """The transports by name; each must match a ``[delivery.<name>]`` table of its own model."""
    tables = Delivery.transport_tables()
    for cls in classes:
        if tables.get(cls.name) is not cls.settings_model:
            raise TypeError(f"transport {cls.name!r}: its settings model is not config's [delivery.{cls.name}] table")
    return MappingProxyType({cls.name: cls for cls in classes})


TRANSPORTS = _registry(OutboxTransport, SmtpTransport, SendGridTransport)


def open_transport(settings: Settings) -> Transport:
    """The transport named by ``[delivery] transport``, configured and ready to send."""
    name = settings.delivery.transport
    cls = TRANSPORTS.get(name)
    if cls is None:
        raise ConfigError(
            f"[delivery] transport: {name!r} is not a known transport (known: {', '.join(TRANSPORTS)})",
            hint="fix that key and run again",
        )
    return cls.from_settings(settings)
