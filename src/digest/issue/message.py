"""Turning a rendered variant and one recipient's values into an RFC 5322 message.

Used for the .eml that ``build`` writes and by the transports that send MIME (outbox, SMTP).
Every header value passes through ``text.header_text`` (encoded words decoded, then cleaned) so
nothing from a feed or a subscriber's name can add a header, and both parts are quoted-printable:
base64 HTML is a spam signal and makes Gmail clip sooner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from digest.config import Settings
from digest.issue.render import Rendered, fill
from digest.text import header_text

UNDISCLOSED = "undisclosed-recipients:;"
# Serialising policy: CRLF line ends as on the wire, and headers folded only past 998 characters.
# Python's folder breaks a long Subject straight after "Subject:", legal but shown with a leading
# space by some clients. Bodies are encoded before this policy is set, so QP lines stay at 76.
WIRE = policy.SMTP.clone(max_line_length=998)
# Encoding policy: RFC 2045 caps quoted-printable lines at 76 characters, soft break included
# (the default 78 gives 77).
ENCODE = policy.SMTP.clone(max_line_length=76)


def sender_domain(settings: Settings) -> str:
    """The domain of the From address, used for Message-ID and the default List-Id."""
    _, address = parseaddr(settings.newsletter.from_address)
    return address.rpartition("@")[2].lower() or "localhost"


def list_id(settings: Settings) -> str:
    """``List-Id`` (RFC 2919): the configured id, or the newsletter's name slugged under the domain."""
    ident = settings.newsletter.list_id
    if not ident:
        slug = re.sub(r"[^a-z0-9]+", "-", settings.newsletter.name.lower()).strip("-") or "newsletter"
        ident = f"{slug}.{sender_domain(settings)}"
    return f"{header_text(settings.newsletter.name)} <{ident}>"


def build_message(
    settings: Settings,
    rendered: Rendered,
    values: Mapping[str, str],
    *,
    now: datetime,
    to: str = "",
    subject_prefix: str = "",
) -> EmailMessage:
    """One complete message: text then HTML alternative, UTF-8, quoted-printable.

    ``values`` are the recipient's placeholder values (see ``render.fill``); ``unsubscribe_url``
    also becomes ``List-Unsubscribe`` with RFC 8058 one-click.
    """
    msg = EmailMessage(policy=ENCODE)
    msg["Subject"] = header_text(f"{subject_prefix}{rendered.subject}")
    msg["From"] = header_text(settings.newsletter.from_address)
    msg["To"] = _to_header(to, values.get("name", "")) if to else UNDISCLOSED
    if settings.newsletter.reply_to:
        msg["Reply-To"] = header_text(settings.newsletter.reply_to)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender_domain(settings))
    msg["List-Id"] = list_id(settings)
    unsubscribe = header_text(values.get("unsubscribe_url", ""))
    if unsubscribe:
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(fill(rendered.text, values, "text"), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(fill(rendered.html, values, "html"), subtype="html", charset="utf-8", cte="quoted-printable")
    msg.policy = WIRE  # the parts are encoded (76-column QP); from here on only headers are folded
    return msg


def _to_header(address: str, name: str) -> str:
    addr = header_text(address)
    display = header_text(name)
    if not display:
        return addr
    user, _, domain = addr.rpartition("@")
    return str(Address(display_name=display, username=user, domain=domain))
