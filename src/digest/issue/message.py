"""Turning a rendered variant and one recipient's values into an RFC 5322 message.

Used for the .eml that ``build`` writes and by the transports that send MIME (outbox, SMTP).
Every header value passes through ``text.header_text`` (encoded words decoded, then cleaned) so
nothing from a feed or a subscriber's name can add a header, and both parts are quoted-printable:
base64 HTML is a spam signal and makes Gmail clip sooner.

Two ways to the same message. ``build_message`` builds it with Python's ``email`` package: the
reference, and what the .eml, the outbox and the previews use. ``MessageTemplate`` is for sending
one variant to many people: the variant is encoded once into ready bytes with holes where each
recipient's values go, so a recipient costs a join of bytes, not a MIME build, a 47 KB
quoted-printable encoding and a flatten (about 3.5 ms). Both take their headers from the same
functions (``_variant_headers``, ``_recipient_headers``) and their MIME structure from the same
``_add_parts``; the tests parse both back and compare headers and decoded parts.

How the holes stay safe in quoted-printable: each part is split at its placeholders, and every
piece (static text, or a value) is encoded on its own lines, ending with a soft line break
(``=`` CRLF) when it stops mid-line. A decoder joins the pieces back without a break, so the
decoded part is exactly ``fill``'s; no encoded line crosses a hole, so a value never changes how
the static text is encoded. No encoded line starts with ``.`` (it is written ``=2E``), so the
message needs no SMTP dot-stuffing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from digest.config import Settings
from digest.issue.render import RECIPIENT_FIELDS, Part, Rendered, fill, part_value, placeholder
from digest.text import header_text

UNDISCLOSED = "undisclosed-recipients:;"
# Serialising policy: CRLF line ends as on the wire, and headers folded only past 998 characters.
# Python's folder breaks a long Subject straight after "Subject:", legal but shown with a leading
# space by some clients. Bodies are encoded before this policy is set, so QP lines stay at 76.
HEADER_LINE = 998  # RFC 5322's limit on a line
WIRE = policy.SMTP.clone(max_line_length=HEADER_LINE)
# Encoding policy: RFC 2045 caps quoted-printable lines at 76 characters, soft break included
# (the default 78 gives 77).
ENCODE = policy.SMTP.clone(max_line_length=76)
# The headers of a message, in the order they are written; each is either the variant's (the
# same for every recipient) or the recipient's. A header whose value is "" is left out.
HEADER_ORDER = (
    "Subject",
    "From",
    "To",
    "Reply-To",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058


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
    headers = {
        **_variant_headers(settings, rendered, subject_prefix),
        **_recipient_headers(values, now=now, to=to, domain=sender_domain(settings)),
    }
    for name in HEADER_ORDER:
        if headers[name]:
            msg[name] = headers[name]
    _add_parts(msg, fill(rendered.text, values, "text"), fill(rendered.html, values, "html"))
    msg.policy = WIRE  # the parts are encoded (76-column QP); from here on only headers are folded
    return msg


def _variant_headers(settings: Settings, rendered: Rendered, subject_prefix: str) -> dict[str, str]:
    """The headers every recipient of a variant gets alike."""
    return {
        "Subject": header_text(f"{subject_prefix}{rendered.subject}"),
        "From": header_text(settings.newsletter.from_address),
        "Reply-To": header_text(settings.newsletter.reply_to),
        "List-Id": list_id(settings),
    }


def _recipient_headers(values: Mapping[str, str], *, now: datetime, to: str, domain: str) -> dict[str, str]:
    """The headers of one recipient's message (and Date, the same within a batch)."""
    unsubscribe = header_text(values.get("unsubscribe_url", ""))
    return {
        "To": _to_header(to, values.get("name", "")) if to else UNDISCLOSED,
        "Date": format_datetime(now),
        "Message-ID": make_msgid(domain=domain),
        "List-Unsubscribe": f"<{unsubscribe}>" if unsubscribe else "",
        "List-Unsubscribe-Post": ONE_CLICK if unsubscribe else "",
    }


def _add_parts(msg: EmailMessage, text: str, html: str) -> None:
    """The text part, then the HTML alternative: UTF-8, quoted-printable."""
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")


def _to_header(address: str, name: str) -> str:
    addr = header_text(address)
    display = header_text(name)
    if not display:
        return addr
    user, _, domain = addr.rpartition("@")
    return str(Address(display_name=display, username=user, domain=domain))


# --- the template: a variant encoded once, each recipient's values put in as bytes ------------------


@dataclass(frozen=True, slots=True)
class _Value:
    """A hole in a part's body: one recipient value, HTML-escaped in the HTML part."""

    field: str
    html: bool


@dataclass(frozen=True, slots=True)
class _Header:
    """A hole among the headers: one of ``_recipient_headers``."""

    name: str


_Piece = bytes | _Value | _Header
# Where a part's text is cut: its placeholders (``fill`` replaces each; so does the template).
_CUTS: dict[Part, re.Pattern[str]] = {
    part: re.compile("(" + "|".join(re.escape(placeholder(f, part)) for f in RECIPIENT_FIELDS) + ")")
    for part in ("text", "html")
}
_FIELD_OF: dict[str, str] = {placeholder(f, part): f for f in RECIPIENT_FIELDS for part in ("text", "html")}
_TEXT_MARK, _HTML_MARK = "digest-text-part-goes-here", "digest-html-part-goes-here"
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_QP_LINE = 75  # encoded characters per line, before the "=" of a soft break: 76 in all (RFC 2045)
# Each byte as quoted-printable writes it: printable ASCII (space and tab too) but "=" as
# itself, the rest =XX.
_QP_BYTE = tuple(chr(b) if (32 <= b <= 126 and b != 61) or b == 9 else f"={b:02X}" for b in range(256))
_QP_SPACE = {" ": "=20", "\t": "=09"}  # whitespace is encoded where it would end a line
# A To header the email package writes as it is given: words of atext (RFC 5322 3.2.3) as the
# display name, and a dot-atom address; anything else (quotes, dots, non-ASCII) it may rewrite.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_TO = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}|{_ATOM}(?: {_ATOM})* <{_DOT_ATOM}@{_DOT_ATOM}>")


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """One variant's message (for one subject prefix) as ready bytes with holes for each recipient.

    ``render`` gives what ``build_message(...).as_bytes()`` gives, save the random Message-ID and
    MIME boundary: the same headers and the same decoded parts, lines of at most 76 characters
    in the body and 998 in the headers. Values it cannot put in a hole byte for byte (a line
    break, a ``%`` that ``fill`` might read as part of a placeholder) and non-ASCII addresses
    (written in UTF-8, RFC 6532) go through ``build_message`` instead: slower, never different.
    """

    settings: Settings
    rendered: Rendered
    subject_prefix: str
    domain: str
    pieces: tuple[_Piece, ...] | None  # None: every recipient goes through build_message (see ``of``)

    @classmethod
    def of(cls, settings: Settings, rendered: Rendered, subject_prefix: str = "") -> MessageTemplate:
        """Encode the variant once (about 10 ms for the sample issue).

        A part that ends with a placeholder is not templated: the email package ends a part
        with a line break unless the filled text has one, which an empty value may leave to
        the text before it. Rendered issues end with markup, so this is for odd templates only.
        """
        text, html = (_LINE_BREAKS.sub("\n", p) for p in (rendered.text, rendered.html))
        ends_open = text.endswith(tuple(_FIELD_OF)) or html.endswith(tuple(_FIELD_OF))
        pieces = None if ends_open else _pieces(settings, rendered, subject_prefix, text, html)
        return cls(settings, rendered, subject_prefix, sender_domain(settings), pieces)

    def render(self, values: Mapping[str, str], *, now: datetime, to: str) -> bytes:
        """The recipient's whole message, CRLF line ends; raises as ``build_message`` would."""
        if self.pieces is None or not to.isascii() or not all(_fits(v) for v in values.values()):
            msg = build_message(
                self.settings, self.rendered, values, now=now, to=to, subject_prefix=self.subject_prefix
            )
            return msg.as_bytes(policy=WIRE.clone(utf8=True) if not to.isascii() else WIRE)
        headers = _recipient_headers(values, now=now, to=to, domain=self.domain)
        out: list[bytes] = []
        for piece in self.pieces:
            if isinstance(piece, bytes):
                out.append(piece)
            elif isinstance(piece, _Value):
                value = values.get(piece.field, "")
                out.append(_quoted(part_value(value, "html" if piece.html else "text")))
            elif headers[piece.name]:
                out.append(_header_line(piece.name, headers[piece.name]))
        return b"".join(out)


def _fits(value: str) -> bool:
    """Whether a value goes in a hole exactly as ``fill`` would put it: no line break (the email
    package normalises those across the whole part) and no ``%`` (``fill`` replaces placeholders
    one field after another, so a value could complete a placeholder it then fills)."""
    return "%" not in value and "\n" not in value and "\r" not in value


def _pieces(settings: Settings, rendered: Rendered, subject_prefix: str, text: str, html: str) -> tuple[_Piece, ...]:
    """The message cut into static bytes and holes, neighbouring static bytes joined."""
    variant = _variant_headers(settings, rendered, subject_prefix)
    pieces: list[_Piece] = []
    for name in HEADER_ORDER:
        if name not in variant:
            pieces.append(_Header(name))
        elif variant[name]:
            pieces.append(WIRE.fold_binary(*ENCODE.header_store_parse(name, variant[name])))
    skeleton = EmailMessage(policy=ENCODE)
    _add_parts(skeleton, _TEXT_MARK, _HTML_MARK)  # the MIME structure, exactly as build_message makes it
    wire = skeleton.as_bytes(policy=WIRE)
    before, _, rest = wire.partition(f"{_TEXT_MARK}\r\n".encode())
    between, _, after = rest.partition(f"{_HTML_MARK}\r\n".encode())
    pieces.append(before)
    pieces.extend(_body(text, "text"))
    pieces.append(between)
    pieces.extend(_body(html, "html"))
    pieces.append(after)
    joined: list[_Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += piece
        elif piece != b"":
            joined.append(piece)
    return tuple(joined)


def _body(text: str, part: Part) -> list[_Piece]:
    """A part's body: its static text encoded once, a hole where each placeholder was.

    ``text`` has LF line breaks and ends with static text; the email package ends every part
    with a line break, and so does this."""
    if not text.endswith("\n"):
        text += "\n"
    pieces: list[_Piece] = []
    for i, cut in enumerate(_CUTS[part].split(text)):
        if i % 2:
            pieces.append(_Value(_FIELD_OF[cut], html=part == "html"))
        elif cut:
            pieces.append(_quoted(cut))
    return pieces


def _quoted(text: str) -> bytes:
    """``text`` (LF line breaks) quoted-printable from the start of a line, ending at the start of one.

    Each LF is a hard line break (CRLF); a last line without one ends in a soft break (``=``
    CRLF), so what follows starts a new encoded line and a decoder joins the two. Lines are at
    most 76 characters; whitespace that would end one is encoded, and so is a leading ``.``.
    """
    verbatim = _verbatim(text)  # most values: nothing to encode
    if verbatim is not None:
        return verbatim
    lines = text.split("\n")
    out: list[str] = []
    for n, line in enumerate(lines):
        last = n == len(lines) - 1
        if last and not line:
            break  # text ended with a line break: nothing left open
        _encode_line(line.encode("utf-8"), out)
        out.append("=\r\n" if last else "\r\n")
    return "".join(out).encode("ascii")


def _verbatim(text: str) -> bytes | None:
    """``text`` as quoted-printable lines ending in a soft break, when it is printable ASCII (a
    link, a plain name): only ``=`` to encode, then cut into lines. None when it needs more (a
    character to encode, a space that would end a line, a line that would start with a dot)."""
    if not (text.isascii() and text.isprintable()):
        return None
    encoded = text.replace("=", "=3D")
    lines: list[str] = []
    start = 0
    while start < len(encoded):
        end = start + _QP_LINE
        if end < len(encoded):  # never cut an =3D
            end -= 1 if encoded[end - 1] == "=" else 2 if encoded[end - 2] == "=" else 0
        lines.append(encoded[start:end])
        start = end
    if not lines or any(line[0] == "." or line[-1] == " " for line in lines):
        return None
    return "".join(f"{line}=\r\n" for line in lines).encode("ascii")


def _encode_line(data: bytes, out: list[str]) -> None:
    """One line of text, quoted-printable, wrapped with soft breaks; its end is left to the caller."""
    tokens = [_QP_BYTE[b] for b in data]
    if tokens and tokens[-1] in _QP_SPACE:
        tokens[-1] = _QP_SPACE[tokens[-1]]
    width = 0
    for token in tokens:
        if width + len(token) > _QP_LINE:
            out.append("=\r\n")
            width = 0
        if width == 0 and token == ".":
            token = "=2E"  # no line may start with a dot: SMTP would have to stuff it
        out.append(token)
        width += len(token)


def _header_line(name: str, value: str) -> bytes:
    """One recipient header exactly as the email package folds it, without the package (about
    0.2 ms a header) when the value is one it writes unchanged: plain and short, and for ``To``
    an address with at most a display name of plain words."""
    plain = value.isascii() and value.isprintable() and "=?" not in value and "  " not in value
    short = len(name) + len(value) + 2 <= HEADER_LINE
    if plain and short and value[:1] != " " and (name != "To" or _PLAIN_TO.fullmatch(value)):
        return f"{name}: {value}\r\n".encode("ascii")
    return WIRE.fold_binary(*ENCODE.header_store_parse(name, value))
