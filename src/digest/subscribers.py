"""Reading subscriber lists: CSV in, checked rows out, every bad row reported by its line.

Exports are opened in spreadsheets, which run a cell that starts like a formula (``=cmd|...``,
``+1+1``, ``@SUM(...)``): every exported cell is neutralised the OWASP "CSV Injection" way, with a
leading single quote, and import takes that quote off again, so export -> import gives back every
name and address exactly.

Addresses are checked for syntax only (email-validator, no DNS: an import must not depend on the
network, and deliverability is the mailbox provider's call). Names are checked because each goes
into the To header of every message that subscriber gets. Section names are checked against
the config so a typo does not silently give someone an empty newsletter.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import String

from digest.errors import SubscriberError, SubscriberNameError
from digest.models import SectionChoice
from digest.store import NewSubscriber, Pending, Subscriber, schema
from digest.text import header_text, one_line

# What the subscribers.name column holds: a longer name would fail the whole import on PostgreSQL.
NAME_MAX = cast(int, cast(String, schema.subscribers.c.name.type).length)
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "sections",
    "created_at",
    "updated_at",
    "signed_up_at",
    "source",
    "confirmed_at",
    "ip_hash",
    "user_agent",
)

# OWASP "CSV Injection": a spreadsheet evaluates a cell whose first character is one of these.
FORMULA_TRIGGERS = "=+-@\t\r"
# Cells that get one more quote on export: a trigger after any run of quotes (none included), so
# that a name which itself starts with quotes before a trigger ("'=x") comes back unchanged too.
_NEEDS_QUOTE = re.compile(f"'*[{re.escape(FORMULA_TRIGGERS)}]")
_QUOTED = re.compile(f"'+[{re.escape(FORMULA_TRIGGERS)}]")


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    problem: str


@dataclass(frozen=True, slots=True)
class Parsed:
    rows: tuple[NewSubscriber, ...]
    bad: tuple[BadRow, ...]
    duplicates: int


def check_email(address: str) -> str:
    """The address normalised (domain lower-cased, IDNA handled), or SubscriberError saying why not."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}") from exc


def neutralise_formula(cell: str) -> str:
    """``=SUM(1)`` -> ``'=SUM(1)``: the quote makes a spreadsheet show the cell as text, not run it."""
    return "'" + cell if _NEEDS_QUOTE.match(cell) else cell


def restore_formula(cell: str) -> str:
    """Undo ``neutralise_formula`` exactly; a cell it cannot have made (``O'Brien``, ``'Tis``,
    ``-Ann`` as written by hand) is returned unchanged."""
    return cell[1:] if _QUOTED.match(cell) else cell


def check_name(name: str) -> str:
    """The name, stripped, or SubscriberNameError: it must fit its column and read the same in a
    mail header as here.

    A name goes into the To header, where a mail program decodes RFC 2047 encoded words: one
    hiding a line break (``=?utf-8?q?Eve=0D=0ABcc:...?=``) would be a header of its own, and
    would stop every message of its batch from being built. Control characters (line breaks,
    tabs, NUL) are refused outright: no name needs one, and PostgreSQL cannot store a NUL.
    """
    name = name.strip()
    if len(name) > NAME_MAX:
        raise SubscriberNameError(
            f"name {name[:20]!r}... has {len(name)} characters; the most a name may have is {NAME_MAX}"
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise SubscriberNameError(
            f"name {name!r} contains a line break or control character", hint="give the name as one line of text"
        )
    if header_text(name) != one_line(name):
        raise SubscriberNameError(
            f"name {name!r} contains an RFC 2047 encoded word (=?...?=), which mail programs decode",
            hint="give the name as plain text",
        )
    return name


def parse_sections(value: str, known: Sequence[str]) -> tuple[str, ...]:
    """``"Asia-Pacific; Europe"`` -> the configured names (``SectionChoice.parse``); an unknown
    name is a SubscriberError, so a CSV row with one is reported and skipped like any bad row."""
    try:
        return SectionChoice.parse(value, known).names
    except ValueError as exc:
        raise SubscriberError(str(exc)) from exc


def read_csv(path: Path, known_sections: Sequence[str]) -> Parsed:
    """Parse a CSV with columns ``email``, ``name`` and optional ``sections``.

    Bad rows are collected with their line numbers, not raised: one typo must not stop the
    import of ten thousand good rows. A repeated address is merged (the later row's non-empty
    name and sections win) and counted.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise SubscriberError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"{path}: not UTF-8 text", hint="save the CSV as UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = {c.strip().lower() for c in reader.fieldnames or ()}
    if "email" not in columns:
        raise SubscriberError(
            f"{path}: no 'email' column in the header line", hint="the first line must name the columns: email,name"
        )
    rows: dict[str, NewSubscriber] = {}
    bad: list[BadRow] = []
    duplicates = 0
    for record in reader:
        line = reader.line_num
        fields = {(k or "").strip().lower(): restore_formula((v or "").strip()) for k, v in record.items() if k}
        try:
            email = check_email(fields.get("email", ""))
            name = check_name(fields.get("name", ""))
            sections = parse_sections(fields.get("sections", ""), known_sections)
        except SubscriberError as exc:
            bad.append(BadRow(line, exc.message))
            continue
        key = email.casefold()
        row = NewSubscriber(email, name, sections)
        if key in rows:
            duplicates += 1
            old = rows[key]
            row = NewSubscriber(email, row.name or old.name, row.sections or old.sections)
        rows[key] = row
    return Parsed(tuple(rows.values()), tuple(bad), duplicates)


def write_csv(subscribers: Iterable[Subscriber], out: io.TextIOBase | io.StringIO) -> int:
    """Export in the import format (plus status and dates), so an export can be imported again;
    every cell neutralised against formulas (``read_csv`` restores them)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for s in subscribers:
        consent = s.consent
        cells = [s.email, s.name, s.status, "; ".join(s.sections), s.created_at.isoformat(), s.updated_at.isoformat()]
        if consent is None:
            cells += ["", "", "", "", ""]
        else:
            cells += [
                consent.signed_up_at.isoformat(),
                consent.source,
                consent.confirmed_at.isoformat(),
                consent.ip_hash,
                consent.user_agent,
            ]
        writer.writerow([neutralise_formula(cell) for cell in cells])
        count += 1
    return count


def describe_subscriber(subscriber: Subscriber | None, pending: Pending | None) -> list[str]:
    """``subscribers show``: one ``field: value`` line each, the consent record included; empty
    when digest knows nothing of the address."""
    lines: list[str] = []
    if subscriber is not None:
        lines += [
            f"email: {subscriber.email}",
            f"name: {subscriber.name}",
            f"status: {subscriber.status}",
            f"sections: {'; '.join(subscriber.sections) or 'all sections'}",
            f"created: {subscriber.created_at.isoformat()}",
            f"updated: {subscriber.updated_at.isoformat()}",
        ]
        consent = subscriber.consent
        if consent is None:
            lines.append("consent: no sign-up record (added by an import or `subscribers add`)")
        else:
            lines += [
                f"signed up: {consent.signed_up_at.isoformat()}",
                f"source: {consent.source or '(none given)'}",
                f"confirmed: {consent.confirmed_at.isoformat()}",
                f"ip hash: {consent.ip_hash or '(none)'}",
                f"user agent: {consent.user_agent or '(none)'}",
            ]
    if pending is not None and pending.confirmed_at is None:
        if subscriber is None:
            lines.append(f"email: {pending.email}")
        lines += [
            f"pending sign-up: asked {pending.requested_at.isoformat()} from {pending.source or '(no source)'}, "
            f"not confirmed yet (last mailed {pending.mailed_at.isoformat() if pending.mailed_at else 'never'})",
        ]
    return lines


def describe_bad_rows(path: Path, bad: Sequence[BadRow], most: int = 20) -> Iterator[str]:
    for row in bad[:most]:
        yield f"{path}:{row.line}: {row.problem}; row skipped"
    if len(bad) > most:
        yield f"{path}: {len(bad) - most} more bad row(s) not shown"
