"""The SendGrid transport: one v3 Mail Send request per batch of up to 1000 recipients.

The variant's HTML and text go once per request; each recipient is a personalization whose
``substitutions`` fill the placeholders (the HTML and text parts have different placeholders,
so a name is escaped in one and not the other) and whose ``headers`` carry their own
``List-Unsubscribe``. Links that differ only by the recipient's token are written into the
request's HTML and text once, and the token alone is substituted (see ``_content``).
``custom_args`` tie SendGrid's events back to the issue and subscriber.

Requests go out through httpx on one connection kept alive for the whole send. The official
``sendgrid`` package's client opened a new connection (a new TLS handshake, against the real
service) for every request and formatted the whole body into a debug message whatever the log
level: about 1.2 ms of a batch's work, on the thread every batch waits for. (The package still
checks the Event Webhook's signatures, ``web/webhooks.py``.) The timeout is always set here,
and retries are ``deliver``'s job, driven by the typed errors. See ../shared/sendgrid/README.md
for the service's rules this follows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.utils import parseaddr
from typing import Any

import httpx
import orjson

from digest import __version__
from digest.config import SendGrid as SendGridSettings
from digest.config import Settings, secret
from digest.delivery.tokens import TOKEN_TAG
from digest.delivery.transports.base import (
    Batch,
    Outcome,
    Recipient,
    Result,
    TemporaryError,
    TooLargeError,
    TransportError,
    UncertainError,
    error_for_status,
    not_built,
)
from digest.errors import ConfigError
from digest.issue.message import list_id
from digest.issue.render import RECIPIENT_FIELDS, part_value, placeholder
from digest.text import header_text, one_line

API_KEY_ENV = "SENDGRID_API_KEY"
MAIL_SEND = "/v3/mail/send"
MAX_RECIPIENTS = 1000  # per request, personalizations and addresses alike
DEFAULT_RATE_WAIT = 60.0  # when a 429 carries no usable X-RateLimit-Reset
# Each recipient field with its placeholders in the HTML and the text part, worked out once
# rather than twice per field per recipient.
_FIELDS = tuple((field, placeholder(field, "html"), placeholder(field, "text")) for field in RECIPIENT_FIELDS)


@dataclass(frozen=True, slots=True)
class _Content:
    """The text and HTML a batch's request carries, and how its recipients fill them in."""

    text: str
    html: str
    fields: tuple[tuple[str, str, str], ...]  # the recipient fields still to substitute
    by_token: bool  # each recipient's token fills ``TOKEN_TAG`` in links written in already
    # With ``by_token``: the List-Unsubscribe header's text before and after the token, cleaned
    # once (a token is URL-safe base64 and a dot: nothing in it or beside it changes).
    unsubscribe: tuple[str, str] = ("", "")


def _content(batch: Batch) -> _Content:
    """What the batch's request carries.

    When the batch's links are the same for everyone but for their token (``Batch.links``), they
    are written into the text and HTML here, once, with ``TOKEN_TAG`` where the token goes, and a
    recipient's substitutions carry the token alone: a personalization of about 360 bytes instead
    of 830, so requests half the size to build, send and check. A token needs no escaping in HTML.

    The other recipient fields get substitutions only where the message holds their placeholders
    (in its subject, text or HTML): an issue has no confirmation link, and its substitutions
    were a fifth longer than needed, at every request's size and in SendGrid's 10,000-byte limit
    per personalization.
    """
    variant = batch.variant
    text, html = variant.text, variant.html
    links = batch.links if all(r.token for r in batch.recipients) else None
    unsubscribe = ("", "")
    if links is not None:
        for field, link in links.items():
            text = text.replace(placeholder(field, "text"), link)
            html = html.replace(placeholder(field, "html"), part_value(link, "html"))
        before, tag, after = header_text(links.get("unsubscribe_url", "")).partition(TOKEN_TAG)
        unsubscribe = (f"<{before}", f"{after}>") if tag else ("", "")
    parts = (variant.subject, text, html)
    fields = tuple(f for f in _FIELDS if any(f[1] in part or f[2] in part for part in parts))
    return _Content(text, html, fields, links is not None, unsubscribe)


@dataclass(frozen=True, slots=True)
class _Request:
    """A batch's Mail Send request, built ahead of handing it over (``prepare``): its JSON body
    as sent (empty when nobody is left to send to) and the recipients whose part could not be
    built."""

    body: bytes
    not_built: Mapping[int, tuple[Outcome, str]]


class SendGridTransport:
    name = "sendgrid"
    settings_model = SendGridSettings
    max_batch = MAX_RECIPIENTS

    def __init__(self, settings: Settings, api_key: str, *, clock: Any = None) -> None:
        import time

        self.settings = settings
        cfg = settings.delivery.sendgrid
        self._http = httpx.Client(
            base_url=cfg.api_host.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"digest/{__version__}",
            },
            timeout=cfg.timeout,
        )
        self._clock = clock or time.time
        self._static = self._static_fields()
        self.in_flight = cfg.connections  # httpx's client is shared by the threads that send

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridTransport:
        key = secret(API_KEY_ENV)
        if not key:
            raise ConfigError(f"${API_KEY_ENV} is not set", hint="export it with a key that has Mail Send permission")
        return cls(settings, key)

    def close(self) -> None:
        self._http.close()

    def _static_fields(self) -> dict[str, Any]:
        """The parts of every request that do not depend on the batch."""
        s = self.settings
        name, address = parseaddr(s.newsletter.from_address)
        body: dict[str, Any] = {"from": {"email": address, **({"name": header_text(name)} if name else {})}}
        if s.newsletter.reply_to:
            reply_name, reply_address = parseaddr(s.newsletter.reply_to)
            body["reply_to"] = {"email": reply_address, **({"name": header_text(reply_name)} if reply_name else {})}
        body["headers"] = {"List-Id": list_id(s)}
        if s.delivery.sendgrid.category:
            body["categories"] = [s.delivery.sendgrid.category]
        if s.delivery.sendgrid.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        if s.delivery.sendgrid.asm_group_id:
            body["asm"] = {"group_id": s.delivery.sendgrid.asm_group_id}
        return body

    def payload(self, batch: Batch, personalizations: list[dict[str, Any]], content: _Content) -> dict[str, Any]:
        """The Mail Send request body for one batch, given its recipients' personalizations."""
        return {
            **self._static,
            "personalizations": personalizations,
            "subject": header_text(batch.subject_prefix + batch.variant.subject),
            "content": [
                {"type": "text/plain", "value": content.text},
                {"type": "text/html", "value": content.html},
            ],
            "custom_args": {"issue": batch.issue_key, **({"test": "1"} if batch.test else {})},
        }

    def personalizations(
        self, batch: Batch, content: _Content
    ) -> tuple[list[dict[str, Any]], dict[int, tuple[Outcome, str]]]:
        """Each recipient's personalization, and the outcomes of those whose could not be built.

        SendGrid refuses a whole request for one bad personalization, so a recipient whose part
        cannot be built is left out of the request and fails alone.
        """
        if len(batch.recipients) > MAX_RECIPIENTS:
            raise TooLargeError(f"{len(batch.recipients)} recipients in one request; SendGrid takes {MAX_RECIPIENTS}")
        built: list[dict[str, Any]] = []
        failed: dict[int, tuple[Outcome, str]] = {}
        for r in batch.recipients:
            try:
                built.append(self._personalization(r, content))
            except Exception as exc:  # any build error is this recipient's alone; see not_built
                failed[r.delivery_id] = not_built(r, exc)
        return built, failed

    @staticmethod
    def _personalization(recipient: Recipient, content: _Content) -> dict[str, Any]:
        values = recipient.values
        name = header_text(values.get("name", ""))
        substitutions = {TOKEN_TAG: recipient.token} if content.by_token else {}
        for field, in_html, in_text in content.fields:
            value = values.get(field, "")
            substitutions[in_html] = part_value(value, "html")
            substitutions[in_text] = value
        personalization: dict[str, Any] = {
            "to": [{"email": recipient.email, "name": name} if name else {"email": recipient.email}],
            "substitutions": substitutions,
            "custom_args": {"subscriber_id": str(recipient.subscriber_id)},
        }
        before, after = content.unsubscribe
        if before:
            unsubscribe = f"{before}{recipient.token}{after}"
        else:
            url = header_text(values.get("unsubscribe_url", ""))
            unsubscribe = f"<{url}>" if url else ""
        if unsubscribe:
            personalization["headers"] = {
                "List-Unsubscribe": unsubscribe,
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        return personalization

    def prepare(self, batch: Batch) -> Batch:
        """The batch with its request built and encoded (``base.Prepares``): done while the batch
        before it is in flight."""
        return replace(batch, prepared=self._request(batch))

    def _request(self, batch: Batch) -> _Request:
        content = _content(batch)
        personalizations, failed = self.personalizations(batch, content)
        if not personalizations:  # nobody left to send to: no request at all
            return _Request(b"", failed)
        return _Request(orjson.dumps(self.payload(batch, personalizations, content)), failed)

    def send(self, batch: Batch) -> Result:
        request = batch.prepared if isinstance(batch.prepared, _Request) else self._request(batch)
        outcomes = dict(request.not_built)
        if not request.body:
            return Result(outcomes)
        try:
            response = self._post(request.body)
        except TransportError as exc:
            exc.settled = outcomes
            raise
        provider_id = response.headers.get("X-Message-Id", "")
        for r in batch.recipients:
            outcomes.setdefault(r.delivery_id, ("submitted", ""))
        return Result(outcomes, provider_id=provider_id)

    def _post(self, body: bytes) -> httpx.Response:
        """Make the request; every way it can fail is a ``TransportError`` saying what may follow."""
        try:
            response = self._http.post(MAIL_SEND, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
            raise TemporaryError(
                f"cannot reach SendGrid at {self.settings.delivery.sendgrid.api_host}: {one_line(str(exc)) or exc!r}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise UncertainError(
                f"SendGrid did not answer within {self.settings.delivery.sendgrid.timeout:g} s; "
                "the batch may have been accepted"
            ) from exc
        except httpx.TransportError as exc:  # the connection broke once the request was on its way
            raise UncertainError(f"SendGrid closed the connection before answering: {exc!r}") from exc
        _release(response)
        if not response.is_success:  # a redirect too: nothing was accepted
            raise self._http_error(response)
        return response

    def _http_error(self, response: httpx.Response) -> TransportError:
        """SendGrid's error answer as the error ``deliver`` acts on (``base.error_for_status``)."""
        status = response.status_code
        detail = _errors_text(response.text)
        auth = status in (401, 403)
        if status in (413, 429):
            text = "request too large" if status == 413 else "rate limited"
        else:
            text = detail or (
                "the API key was refused" if auth else "server error" if status >= 500 else "request refused"
            )
        return error_for_status(
            status,
            f"SendGrid answered {status}: {text}",
            retry_after=self._retry_after(response.headers) if status == 429 else 0.0,
            hint=f"check ${API_KEY_ENV} and that the key has Mail Send permission" if auth else None,
        )

    def _retry_after(self, headers: httpx.Headers) -> float:
        reset = headers.get("X-RateLimit-Reset", "")
        try:
            return max(float(reset) - self._clock(), 0.0) if reset else DEFAULT_RATE_WAIT
        except ValueError:
            return DEFAULT_RATE_WAIT


def _release(response: httpx.Response) -> None:
    """Break the reference cycle httpx makes between a response and its stream (encode/httpx#3733)
    once the answer is read: the request's body, a third of a megabyte a batch, is then freed at
    once instead of by the cycle collector, which let a million-recipient send grow by 100 MB."""
    response.stream = httpx.ByteStream(b"")


def _errors_text(body: str) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line."""
    try:
        errors = json.loads(body).get("errors", []) if body else []
    except (ValueError, AttributeError):
        return one_line(str(body))[:300]
    parts = [f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message")) for e in errors]
    return one_line("; ".join(parts))[:500]
