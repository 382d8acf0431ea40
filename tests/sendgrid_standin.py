"""A local HTTP stand-in for SendGrid's v3 Mail Send endpoint (``POST /v3/mail/send``).

Tests never reach the internet: point the official ``sendgrid`` package at this server with
``SendGridAPIClient(api_key="SG.x", host=sg.url)`` and every request is checked against the contract
(the patched OpenAPI file in ``shared/sendgrid`` plus the documented rules of the real service that
the schema cannot express). Failures answer like SendGrid does: a status code and
``{"errors": [{"message": ..., "field": ..., "help": null}]}``.

In process::

    with SendGridStandIn() as sg:
        client = SendGridAPIClient(api_key="SG.test", host=sg.url)
        client.client.timeout = 10
        client.send(mail)
        assert sg.recipients() == ["a@example.org"]

As a separate process (benchmarks, manual runs)::

    python tests/sendgrid_standin.py --port 0      # prints its URL; stats JSON on exit (SIGTERM/SIGINT)

``GET /_standin/stats`` answers the counters as JSON and ``POST /_standin/reset`` clears them.

How the schema is checked, and why it is fast enough (a 1000-personalization request costs a few ms):

* The whole OpenAPI file is one ``referencing`` resource (draft 2020-12, OpenAPI 3.1's dialect), so
  the ``#/components/schemas/...`` references inside it resolve against the file. The request body
  schema is reached through ``{"$ref": "<uri>#/components/requestBodies/PostMailSend/content/
  application~1json/schema"}``; validating the sub-schema on its own would leave its ``#/...``
  references dangling. Validators are compiled once per spec file (cached) and use the
  ``email`` format check (jsonschema's: the string contains ``@``).
* jsonschema validates everything except the items of ``personalizations`` (the top-level
  validator uses a copy of the file whose ``personalizations.items`` is removed; ``minItems`` and
  ``maxItems`` stay). Validating 1000 items with jsonschema costs ~90 ms, so each item is checked by
  ``_personalization_matches_schema``, a hand translation of exactly that item schema. When it finds
  an item invalid, jsonschema validates that item to produce the error (so error text and field
  come from jsonschema, and only invalid items pay). The hand check is only used while the item
  schema's fingerprint is the one it was written for (``_ITEM_SCHEMA_SHA256``); otherwise every
  item goes through jsonschema. ``full_schema=True`` forces jsonschema for all items too.

Order of checks (first failure answers): body over ``max_body_bytes`` (413); a scripted
``fail_next`` outcome; ``Authorization: Bearer <key>`` (401); Content-Encoding (gzip is decoded);
the rate limit (429); Content-Type ``application/json`` (400); JSON (400); ``max_personalizations``
(413); the schema (400, every error); the rules below (400, every error).

Rules beyond the schema: every personalization has a non-empty ``to``; at most 1000 recipients in
to + cc + bcc; an address at most once per request (case-insensitive, across personalizations);
reserved headers refused at top level and per personalization, header values must be strings;
``substitutions`` at most 10,000 bytes per personalization; ``custom_args`` values strings, and the
top-level plus one personalization's under 10,000 bytes (sizes are compact UTF-8 JSON, the
stricter reading); ``substitutions`` not with a ``d-`` template, ``dynamic_template_data`` only
with one; without ``template_id``: ``content`` required, and ``subject`` at top level unless every
personalization has one; ``text/plain`` first when present, text/plain and text/html once each.
``mail_settings.sandbox_mode.enable`` answers 200 and is recorded apart (``sandboxed``).

Not checked: that the sender is verified, the template or ASM group exists, ``send_at`` is within
72 hours, ``batch_id`` is valid, attachment content is base64, and stricter address syntax than
"contains @" (the real service is stricter).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "AUTH_ERROR_MESSAGE",
    "MAIL_SEND_PATH",
    "RESERVED_HEADERS",
    "Accepted",
    "SendGridStandIn",
    "default_spec_path",
]

MAIL_SEND_PATH = "/v3/mail/send"
STATS_PATH = "/_standin/stats"
RESET_PATH = "/_standin/reset"

MAX_BODY_BYTES = 30_000_000  # "under 30 MB": the stricter decimal reading
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTIONS_BYTES = 10_000  # at most, per personalization
MAX_CUSTOM_ARGS_BYTES = 10_000  # under, top level + one personalization together
MAX_ERRORS = 50  # errors listed in one 400 answer
DEFAULT_RATE_LIMIT = 600

AUTH_ERROR_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"

RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)

SPEC_FILE_NAME = "tsg_mail_v3.patched.json"
SPEC_URI = "urn:sendgrid:tsg_mail_v3.patched.json"
_TOP_URI = "urn:sendgrid:tsg_mail_v3.patched.json:top-level"
_BODY_POINTER = "/components/requestBodies/PostMailSend/content/application~1json/schema"
_ITEMS_POINTER = _BODY_POINTER + "/properties/personalizations/items"

# sha256 of the personalization item schema (references inlined, annotations dropped, sorted keys)
# that _personalization_matches_schema was written for. See _schema_fingerprint.
_ITEM_SCHEMA_SHA256 = "948cff180b6586d507f4118d78d0fabca5640b2c48579e5c6cd9eea03c1889c0"

_STATUS_MESSAGES = {
    400: "Bad Request",
    401: AUTH_ERROR_MESSAGE,
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def default_spec_path() -> Path:
    """Where the patched OpenAPI file is: ``$SENDGRID_OPENAPI``, a vendored copy under
    ``tests/fixtures/sendgrid/``, or ``shared/sendgrid/`` beside the repository (as in CI)."""
    env = os.environ.get("SENDGRID_OPENAPI")
    here = Path(__file__).resolve().parent
    candidates = [Path(env)] if env else []
    candidates += [
        here / "fixtures" / "sendgrid" / SPEC_FILE_NAME,
        here.parent.parent / "shared" / "sendgrid" / SPEC_FILE_NAME,
        here.parent / "shared" / "sendgrid" / SPEC_FILE_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SPEC_FILE_NAME} not found; tried: " + ", ".join(map(str, candidates)))


# --- schema --------------------------------------------------------------------------------------

_ANNOTATIONS = frozenset({"description", "title", "example", "examples", "default", "deprecated"})


def _resolve_local(doc: dict[str, Any], node: Any) -> Any:
    """``node`` with its local ``$ref``s inlined and annotation keywords dropped."""
    if isinstance(node, list):
        return [_resolve_local(doc, item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
            target: Any = doc
            for part in value[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            out.update(_resolve_local(doc, target))
        else:
            out[key] = _resolve_local(doc, value)
    return out


def _schema_fingerprint(doc: dict[str, Any], pointer: str) -> str:
    node: Any = doc
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    text = json.dumps(_resolve_local(doc, node), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class _Schemas:
    full: Draft202012Validator  # the whole request body schema
    top: Draft202012Validator  # the same without personalizations.items
    item: Draft202012Validator  # one personalization
    item_fingerprint: str
    hand_check_matches: bool


@functools.lru_cache(maxsize=4)
def _compile(spec_path: str) -> _Schemas:
    doc = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    top_doc = copy.deepcopy(doc)
    node = top_doc
    for part in _BODY_POINTER.lstrip("/").split("/"):
        node = node[part.replace("~1", "/")]
    del node["properties"]["personalizations"]["items"]
    registry: Registry = Registry().with_resources(
        [
            (SPEC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)),
            (_TOP_URI, Resource.from_contents(top_doc, default_specification=DRAFT202012)),
        ]
    )

    def validator(uri: str, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{uri}#{pointer}"},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    fingerprint = _schema_fingerprint(doc, _ITEMS_POINTER)
    return _Schemas(
        full=validator(SPEC_URI, _BODY_POINTER),
        top=validator(_TOP_URI, _BODY_POINTER),
        item=validator(SPEC_URI, _ITEMS_POINTER),
        item_fingerprint=fingerprint,
        hand_check_matches=fingerprint == _ITEM_SCHEMA_SHA256,
    )


# Hand translation of components.requestBodies.PostMailSend ... personalizations.items:
#   type object, required [to]; from: MailFrom; to: array of MailTo; cc, bcc: array (maxItems 1000)
#   of MailTo; subject: string minLength 1; headers: object; substitutions: object, maxProperties
#   10000, values string; dynamic_template_data: object; custom_args: object, maxProperties 10000;
#   send_at: integer. MailFrom = MailTo = object, required [email], email: string format email,
#   name: string. Other keys are allowed (no additionalProperties). Semantics follow jsonschema's
#   draft 2020-12: "integer" accepts 3.0, not True; "email" format means the string contains "@".


def _is_address(value: Any) -> bool:
    if type(value) is not dict:
        return False
    email = value.get("email")
    if type(email) is not str or "@" not in email:
        return False
    return "name" not in value or type(value["name"]) is str


def _is_address_list(value: Any) -> bool:
    return type(value) is list and all(_is_address(item) for item in value)


def _is_short_address_list(value: Any) -> bool:
    return type(value) is list and len(value) <= 1000 and all(_is_address(item) for item in value)


def _is_nonempty_string(value: Any) -> bool:
    return type(value) is str and len(value) >= 1


def _is_object(value: Any) -> bool:
    return type(value) is dict


def _is_substitutions(value: Any) -> bool:
    return type(value) is dict and len(value) <= 10000 and all(type(v) is str for v in value.values())


def _is_custom_args(value: Any) -> bool:
    return type(value) is dict and len(value) <= 10000


def _is_integer(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value.is_integer())


_ITEM_CHECKS = {
    "from": _is_address,
    "to": _is_address_list,
    "cc": _is_short_address_list,
    "bcc": _is_short_address_list,
    "subject": _is_nonempty_string,
    "headers": _is_object,
    "substitutions": _is_substitutions,
    "dynamic_template_data": _is_object,
    "custom_args": _is_custom_args,
    "send_at": _is_integer,
}


def _personalization_matches_schema(item: Any) -> bool:
    """True when ``item`` is valid against the personalization item schema (see above)."""
    if type(item) is not dict or "to" not in item:
        return False
    for key, value in item.items():
        check = _ITEM_CHECKS.get(key)
        if check is not None and not check(value):
            return False
    return True


# --- errors --------------------------------------------------------------------------------------


class _Reject(Exception):
    """A request answered with an error; ``errors`` are SendGrid-shaped."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": None}


def _field(path: Iterable[Any]) -> str | None:
    text = ".".join(str(part) for part in path)
    return text or None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "integer" if isinstance(value, int) or value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _schema_error(err: ValidationError, prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
    """A SendGrid-style error for a jsonschema error: short message (never the whole instance)."""
    path = [*prefix, *err.absolute_path]
    kind, expected, instance = err.validator, err.validator_value, err.instance
    where = _field(path) or "request body"
    if kind == "required":
        missing = [name for name in expected if isinstance(instance, dict) and name not in instance]
        name = missing[0] if missing else "?"
        path.append(name)
        if name == "from":
            message = (
                "The from object must be provided for every email send. It is an object that requires the "
                "email parameter, but may also contain a name parameter."
            )
        elif name == "to":
            message = (
                "The to array is required for all personalization objects, and must have at least one "
                "email object with a valid email address."
            )
        elif name == "personalizations":
            message = "The personalizations field is required and must have at least one personalization."
        else:
            message = f"The {name} parameter is required."
    elif kind == "type":
        message = f"Invalid type. Expected: {expected}, given: {_json_type(instance)}."
    elif kind == "format" and expected == "email":
        message = "Does not contain a valid address."
    elif kind == "maxItems" and path == ["personalizations"]:
        message = (
            f"The personalization block is limited to {expected} personalizations per API request. You have "
            f"provided {len(instance)} personalizations. Please consider splitting this into multiple requests "
            "and resending your request."
        )
    elif kind == "minItems" and path == ["personalizations"]:
        message = "You must have at least one personalization."
    elif kind in ("maxItems", "minItems"):
        bound = "most" if kind == "maxItems" else "least"
        message = f"The {where} array must have at {bound} {expected} items; {len(instance)} given."
    elif kind in ("maxLength", "minLength"):
        bound = "most" if kind == "maxLength" else "least"
        message = f"The {where} value must be at {bound} {expected} characters long; {len(instance)} given."
    elif kind in ("maxProperties", "minProperties"):
        bound = "most" if kind == "maxProperties" else "least"
        message = f"The {where} object must have at {bound} {expected} keys; {len(instance)} given."
    elif kind == "uniqueItems":
        message = f"The {where} items must be unique."
    elif kind == "enum":
        message = f"Must be one of: {', '.join(map(str, expected))}."
    else:
        message = err.message if len(err.message) <= 300 else err.message[:297] + "..."
    return _error(message, _field(path))


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _fits(value: dict[str, str], budget: int) -> bool:
    """True when the dict of strings ``value`` is at most ``budget`` bytes as compact UTF-8 JSON.

    Exact, but it serialises only when a cheap upper bound does not settle it: a character costs at
    most 6 bytes in JSON ("\\u001f"), a key/value pair 6 more (quotes, ':' and ',').
    """
    bound = 2 + sum(6 * (len(k) + len(v) + 1) for k, v in value.items())
    return bound <= budget or _json_size(value) <= budget


def _check_headers(headers: dict[str, Any], where: str, errors: list[dict[str, Any]]) -> None:
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            errors.append(_error(f"The header {name!r} is reserved and cannot be set in headers.", where))
        elif type(value) is not str:
            errors.append(_error(f"Invalid type. Expected: string, given: {_json_type(value)}.", f"{where}.{name}"))


# --- recording -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """One accepted request."""

    message_id: str
    body: dict[str, Any] | None  # the parsed JSON body (None when the stand-in keeps no bodies)
    headers: dict[str, str]  # request headers, names lower-cased
    personalizations: int
    recipients: tuple[str, ...]  # every ``to`` email, in order
    received_at: float  # time.time()


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "fail" | "stall" | "drop"
    status: int = 0
    message: str | None = None
    field: str | None = None
    reset_in: float | None = None
    limit: int = DEFAULT_RATE_LIMIT
    seconds: float = 0.0


# --- the server ----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for idle keep-alive connections
    request_queue_size = 128

    standin: SendGridStandIn

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.standin._note_connection()  # every connection accepted, kept alive or not
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away (a timed-out client, a dropped connection): not our fault
        self.standin._note_server_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sendgrid-standin"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: no per-request lines on stderr

    def do_POST(self) -> None:
        self.server.standin._dispatch(self, "POST")

    def do_GET(self) -> None:
        self.server.standin._dispatch(self, "GET")

    def do_PUT(self) -> None:
        self.server.standin._dispatch(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.standin._dispatch(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.standin._dispatch(self, "DELETE")

    def send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def send_errors(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        self.send(status, headers, json.dumps({"errors": errors}).encode())


class _TooLarge(Exception):
    pass


class SendGridStandIn:
    """A threaded local HTTP server that behaves like SendGrid's ``POST /v3/mail/send``.

    Args (all keyword-only):
        port: 0 (default) for an ephemeral port. The server binds 127.0.0.1 only.
        api_keys: the accepted API keys; None (default) accepts any key starting with ``SG.``
            and longer than that prefix.
        max_personalizations: when set, a request with more personalizations answers 413 (to test
            a client's split-on-413). Also settable as an attribute.
        max_body_bytes: bodies larger than this (after gzip decoding) answer 413; 30,000,000.
        keep_bodies: record parsed bodies in ``accepted`` (True); False keeps only counts and
            recipients (for long benchmarks in a separate process).
        full_schema: validate every personalization with jsonschema too (slow, ~90 ms per 1000).
        spec_path: the patched OpenAPI file; default ``default_spec_path()``.
        latency: seconds every accepted request waits before its answer, as the round trip to
            the real service does (requests are handled concurrently). Also settable as an attribute.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        api_keys: Iterable[str] | None = None,
        max_personalizations: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        keep_bodies: bool = True,
        full_schema: bool = False,
        spec_path: str | Path | None = None,
        latency: float = 0.0,
    ) -> None:
        self.port = port
        self.latency = latency
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.max_personalizations = max_personalizations
        self.max_body_bytes = max_body_bytes
        self.keep_bodies = keep_bodies
        self.spec_path = Path(spec_path) if spec_path is not None else default_spec_path()
        self._schemas = _compile(str(self.spec_path.resolve()))
        self.full_schema = full_schema or not self._schemas.hand_check_matches

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._outcomes: deque[_Outcome] = deque()
        self._rate_limit: tuple[int, float] | None = None
        self._window_start = 0.0
        self._window_count = 0
        self._clear()

    def _clear(self) -> None:
        self._accepted: list[Accepted] = []
        self._rejected: list[tuple[int, str]] = []
        self._sandboxed: list[Accepted] = []
        self._recipients: list[str] = []
        self._requests = 0
        self._connections = 0
        self._all_recipients = 0
        self._personalizations = 0
        self._server_seconds = 0.0
        self._server_errors: list[str] = []

    # lifecycle

    def start(self) -> SendGridStandIn:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.standin = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="sendgrid-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes stalled requests
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SendGridStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for ``SendGridAPIClient(host=...)`` (it appends ``/v3/mail/send``)."""
        if self._server is None:
            raise RuntimeError("SendGridStandIn is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self.port}"

    @property
    def mail_send_url(self) -> str:
        return self.url + MAIL_SEND_PATH

    # scripting

    def fail_next(
        self,
        status: int = 500,
        *,
        message: str | None = None,
        field: str | None = None,
        reset_in: float | None = None,
        limit: int = DEFAULT_RATE_LIMIT,
        times: int = 1,
    ) -> None:
        """The next ``times`` mail-send requests answer ``status`` (4xx/5xx) without being checked
        or recorded as accepted. 429 answers carry ``X-RateLimit-Limit`` (``limit``),
        ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` = ceil(now + ``reset_in``, default 1 s)."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next wants a 4xx or 5xx status, not {status}")
        outcome = _Outcome("fail", status=status, message=message, field=field, reset_in=reset_in, limit=limit)
        with self._lock:
            self._outcomes.extend([outcome] * times)

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` requests are checked as usual and, when valid, RECORDED as accepted
        (the real service may have accepted a request whose answer never came); the answer (202, or
        the 4xx of an invalid request) is then held for ``seconds`` (cut short by stop(), which sends
        nothing), so a client with a shorter timeout gives up."""
        with self._lock:
            self._outcomes.extend([_Outcome("stall", seconds=seconds)] * times)

    def pass_next(self, *, times: int = 1) -> None:
        """The next ``times`` requests are handled as usual: a way to script "two good, then a stall"."""
        with self._lock:
            self._outcomes.extend([_Outcome("pass")] * times)

    def drop_next(self, *, times: int = 1) -> None:
        """The next ``times`` requests are checked and, when valid, recorded as accepted; then the
        connection is closed without an answer, valid or not (the client sees RemoteDisconnected)."""
        with self._lock:
            self._outcomes.extend([_Outcome("drop")] * times)

    def set_rate_limit(self, limit: int | None, window: float = 1.0) -> None:
        """At most ``limit`` authorised mail-send requests per fixed ``window`` seconds; more answer
        429 with the rate-limit headers. ``None`` turns the limit off."""
        with self._lock:
            self._rate_limit = None if limit is None else (int(limit), float(window))
            self._window_start = 0.0
            self._window_count = 0

    def clear_scripted(self) -> None:
        with self._lock:
            self._outcomes.clear()

    def reset(self) -> None:
        """Forget everything recorded and scripted, the rate limit too (the server keeps running)."""
        with self._lock:
            self._clear()
            self._outcomes.clear()
            self._rate_limit = None

    # queries

    @property
    def accepted(self) -> list[Accepted]:
        with self._lock:
            return list(self._accepted)

    @property
    def rejected(self) -> list[tuple[int, str]]:
        """(status, first error message) of every answered non-2xx request, in order."""
        with self._lock:
            return list(self._rejected)

    @property
    def sandboxed(self) -> list[Accepted]:
        """Valid requests with ``mail_settings.sandbox_mode.enable``: answered 200, delivering nothing."""
        with self._lock:
            return list(self._sandboxed)

    @property
    def requests(self) -> int:
        """Every request to the mail-send path, whatever its answer."""
        with self._lock:
            return self._requests

    @property
    def connections(self) -> int:
        """Every connection accepted: a client that keeps its connection alive opens one."""
        with self._lock:
            return self._connections

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of bugs in the stand-in itself (should stay empty)."""
        with self._lock:
            return list(self._server_errors)

    def recipients(self) -> list[str]:
        """Every ``to`` email of every accepted request, in order (duplicates kept)."""
        with self._lock:
            return list(self._recipients)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "connections": self._connections,
                "accepted": len(self._accepted),
                "rejected": len(self._rejected),
                "sandboxed": len(self._sandboxed),
                "personalizations": self._personalizations,
                "recipients": len(self._recipients),
                "distinct_recipients": len(set(self._recipients)),
                "all_recipients": self._all_recipients,
                "server_seconds": round(self._server_seconds, 6),
                "server_errors": len(self._server_errors),
            }

    # request handling

    def _note_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _note_server_error(self, text: str) -> None:
        with self._lock:
            self._server_errors.append(text)

    def _dispatch(self, handler: _Handler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        try:
            if path == MAIL_SEND_PATH:
                if method == "POST":
                    self._mail_send(handler)
                else:
                    self._discard_body(handler)
                    self._answer_error(handler, 405, [_error("method not allowed")], count=True)
            elif path == STATS_PATH and method == "GET":
                handler.send(200, body=json.dumps(self.stats()).encode())
            elif path == RESET_PATH and method == "POST":
                self._discard_body(handler)
                self.reset()
                handler.send(204)
            else:
                self._discard_body(handler)
                handler.send_errors(404, [_error("not found")])
        except (ConnectionError, TimeoutError):
            handler.close_connection = True
        except Exception:
            self._note_server_error(traceback.format_exc())
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.send_errors(500, [_error("stand-in internal error")])

    def _answer_error(
        self,
        handler: _Handler,
        status: int,
        errors: list[dict[str, Any]],
        headers: dict[str, str] | None = None,
        *,
        count: bool = False,
    ) -> None:
        with self._lock:
            if count:
                self._requests += 1
            self._rejected.append((status, errors[0]["message"] if errors else ""))
        handler.send_errors(status, errors, headers)

    def _read_body(self, handler: _Handler) -> bytes:
        """The request body; raises _TooLarge (after draining it) beyond max_body_bytes."""
        limit = self.max_body_bytes
        rfile = handler.rfile
        if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = rfile.readline(65537)
                chunk = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if chunk == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                data = rfile.read(chunk)
                rfile.readline(65537)
                size += len(data)
                if size <= limit:
                    parts.append(data)
            if size > limit:
                raise _TooLarge
            return b"".join(parts)
        length = int(handler.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            remaining = length
            while remaining > 0:
                got = rfile.read(min(remaining, 1 << 20))
                if not got:
                    break
                remaining -= len(got)
            raise _TooLarge
        return rfile.read(length) if length else b""

    def _discard_body(self, handler: _Handler) -> None:
        try:
            self._read_body(handler)
        except (_TooLarge, ValueError):
            handler.close_connection = True

    def _rate_limited(self) -> dict[str, str] | None:
        """Headers of a 429 when the configured rate limit is exceeded, else None. Holds the lock."""
        if self._rate_limit is None:
            return None
        limit, window = self._rate_limit
        now = time.time()
        if now >= self._window_start + window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count <= limit:
            return None
        return _rate_limit_headers(limit, self._window_start + window)

    def _mail_send(self, handler: _Handler) -> None:
        started = time.perf_counter()
        try:
            raw = self._read_body(handler)
        except _TooLarge:
            handler.close_connection = True
            self._answer_error(handler, 413, [_error("content too large")], count=True)
            return
        except ValueError:
            handler.close_connection = True
            self._answer_error(handler, 400, [_error("Bad Request")], count=True)
            return

        with self._lock:
            self._requests += 1
            outcome = self._outcomes.popleft() if self._outcomes else None
        if outcome is not None and outcome.kind == "fail":
            status = outcome.status
            headers: dict[str, str] = {}
            if status == 429:
                reset_at = time.time() + (1.0 if outcome.reset_in is None else outcome.reset_in)
                headers = _rate_limit_headers(outcome.limit, reset_at)
            message = outcome.message or _STATUS_MESSAGES.get(status, "error")
            self._answer_error(handler, status, [_error(message, outcome.field)], headers)
            return

        try:
            body = self._check(handler, raw)
        except _Reject as reject:
            # a stalled or dropped invalid request is not accepted, but its answer is late or lost all the same
            if outcome is not None and outcome.kind == "stall" and self._stopping.wait(outcome.seconds):
                handler.close_connection = True
                return
            if outcome is not None and outcome.kind == "drop":
                with self._lock:
                    self._rejected.append((reject.status, reject.errors[0]["message"]))
                handler.close_connection = True
                return
            self._answer_error(handler, reject.status, reject.errors, reject.headers)
            return

        message_id = secrets.token_urlsafe(16)
        tos = [addr["email"] for p in body["personalizations"] for addr in p["to"]]
        n_all = sum(len(p["to"]) + len(p.get("cc", ())) + len(p.get("bcc", ())) for p in body["personalizations"])
        sandbox = _sandbox_enabled(body)
        record = Accepted(
            message_id=message_id,
            body=body if self.keep_bodies else None,
            headers={name.lower(): value for name, value in handler.headers.items()},
            personalizations=len(body["personalizations"]),
            recipients=tuple(tos),
            received_at=time.time(),
        )
        with self._lock:
            if sandbox:
                self._sandboxed.append(record)
            else:
                self._accepted.append(record)
                self._recipients.extend(tos)
                self._all_recipients += n_all
                self._personalizations += record.personalizations
            self._server_seconds += time.perf_counter() - started

        if outcome is not None and outcome.kind == "stall" and self._stopping.wait(outcome.seconds):
            handler.close_connection = True  # stopped while stalling: no answer
            return
        if outcome is not None and outcome.kind == "drop":
            handler.close_connection = True
            return
        if self.latency and self._stopping.wait(self.latency):
            handler.close_connection = True  # stopped while waiting: no answer
            return
        if sandbox:
            handler.send(200)
        else:
            handler.send(202, {"X-Message-Id": message_id})

    def _check(self, handler: _Handler, raw: bytes) -> dict[str, Any]:
        """The parsed body when the request keeps the contract; raises _Reject otherwise."""
        if not self._authorized(handler.headers.get("Authorization")):
            raise _Reject(401, [_error(AUTH_ERROR_MESSAGE)])

        encoding = handler.headers.get("Content-Encoding", "").strip().lower()
        if encoding == "gzip":
            raw = self._gunzip(raw)
        elif encoding not in ("", "identity"):
            raise _Reject(400, [_error(f"Content-Encoding {encoding!r} is not supported; use gzip.", None)])

        if self._rate_limit is not None:
            with self._lock:
                limited = self._rate_limited()
            if limited is not None:
                raise _Reject(429, [_error("too many requests")], limited)

        content_type = handler.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise _Reject(400, [_error("Content-Type should be application/json.")])

        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            raise _Reject(400, [_error("Bad Request")]) from None

        if self.max_personalizations is not None and isinstance(body, dict):
            items = body.get("personalizations")
            if isinstance(items, list) and len(items) > self.max_personalizations:
                raise _Reject(413, [_error("content too large")])

        errors = self._schema_errors(body)
        if errors:
            raise _Reject(400, errors[:MAX_ERRORS])
        errors = _contract_errors(body)
        if errors:
            raise _Reject(400, errors[:MAX_ERRORS])
        return body

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        if self.api_keys is None:
            return key.startswith("SG.") and len(key) > 3
        return key in self.api_keys

    def _gunzip(self, raw: bytes) -> bytes:
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(raw, self.max_body_bytes + 1)
        except zlib.error:
            raise _Reject(400, [_error("Bad Request: the body is not valid gzip.")]) from None
        if len(out) > self.max_body_bytes or inflater.unconsumed_tail:
            raise _Reject(413, [_error("content too large")])
        return out

    def _schema_errors(self, body: Any) -> list[dict[str, Any]]:
        schemas = self._schemas
        if self.full_schema:
            return [_schema_error(err) for err in schemas.full.iter_errors(body)]
        errors = [_schema_error(err) for err in schemas.top.iter_errors(body)]
        items = body.get("personalizations") if isinstance(body, dict) else None
        if isinstance(items, list):
            for index, item in enumerate(items):
                if not _personalization_matches_schema(item):
                    prefix = ("personalizations", index)
                    errors.extend(_schema_error(err, prefix) for err in schemas.item.iter_errors(item))
                    if len(errors) >= MAX_ERRORS:
                        break
        return errors


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _rate_limit_headers(limit: int, reset_at: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(math.ceil(reset_at)),
    }


def _sandbox_enabled(body: dict[str, Any]) -> bool:
    settings = body.get("mail_settings") or {}
    return bool((settings.get("sandbox_mode") or {}).get("enable"))


def _contract_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules of the real service that the schema does not express. ``body`` is schema-valid."""
    errors: list[dict[str, Any]] = []
    template_id = body.get("template_id") or ""
    dynamic_template = template_id.startswith("d-")
    top_custom_args = body.get("custom_args") or {}
    # custom_args: the top-level object and a personalization's together, as the sum of their JSON sizes
    top_args_size = _json_size(top_custom_args) if top_custom_args else 0
    if top_args_size >= MAX_CUSTOM_ARGS_BYTES:
        errors.append(_error(f"The custom_args must be under {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args"))

    if "headers" in body:
        _check_headers(body["headers"], "headers", errors)

    if not template_id:
        content = body.get("content")
        if not content:
            errors.append(
                _error(
                    "Unless a valid template_id is provided, the content parameter is required. There must be at "
                    "least one defined content block. We typically suggest both text/plain and text/html blocks "
                    "are included, but only one block is required.",
                    "content",
                )
            )
    types = [part["type"].lower() for part in body.get("content") or ()]
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(_error("If present, text/plain must be first, followed by any other content.", "content"))
    for kind in ("text/plain", "text/html"):
        if types.count(kind) > 1:
            errors.append(_error("If present, text/plain and text/html may only be provided once.", "content"))
            break

    seen: set[str] = set()
    duplicate_reported = False
    total = 0
    all_have_subject = True
    for index, p in enumerate(body["personalizations"]):
        where = f"personalizations.{index}"
        to = p["to"]
        if not to:
            errors.append(
                _error(
                    "The to array is required for all personalization objects, and must have at least one email "
                    "object with a valid email address.",
                    f"{where}.to",
                )
            )
        for key in ("to", "cc", "bcc"):
            addresses = p.get(key)
            if not addresses:
                continue
            total += len(addresses)
            for address in addresses:
                email = address["email"].lower()
                if email in seen:
                    if not duplicate_reported:
                        duplicate_reported = True
                        errors.append(
                            _error(
                                "Each email address in the personalization block should be unique between to, cc, "
                                f"and bcc. We found the first duplicate instance of [{address['email']}] in the "
                                f"{where}.{key} field.",
                                where,
                            )
                        )
                else:
                    seen.add(email)
        if "subject" not in p:
            all_have_subject = False
        if "headers" in p:
            _check_headers(p["headers"], f"{where}.headers", errors)
        substitutions = p.get("substitutions")
        if substitutions is not None:
            if dynamic_template:
                errors.append(
                    _error(
                        "Substitutions may not be used with dynamic templating; use dynamic_template_data.",
                        f"{where}.substitutions",
                    )
                )
            if substitutions and not _fits(substitutions, MAX_SUBSTITUTIONS_BYTES):
                errors.append(
                    _error(
                        f"The substitutions of a personalization may be at most {MAX_SUBSTITUTIONS_BYTES} bytes.",
                        f"{where}.substitutions",
                    )
                )
        if "dynamic_template_data" in p and not dynamic_template:
            errors.append(
                _error(
                    "dynamic_template_data may only be used with a dynamic template (a template_id starting "
                    "with 'd-'); use substitutions otherwise.",
                    f"{where}.dynamic_template_data",
                )
            )
        custom_args = p.get("custom_args")
        if custom_args is not None:
            bad = [name for name, value in custom_args.items() if type(value) is not str]
            if bad:
                errors.append(
                    _error(
                        f"Invalid type. Expected: string, given: {_json_type(custom_args[bad[0]])}.",
                        f"{where}.custom_args.{bad[0]}",
                    )
                )
            elif (
                custom_args
                and top_args_size < MAX_CUSTOM_ARGS_BYTES
                and not _fits(custom_args, MAX_CUSTOM_ARGS_BYTES - 1 - top_args_size)
            ):
                errors.append(
                    _error(
                        f"The custom_args of a message (top level and personalization together) must be under "
                        f"{MAX_CUSTOM_ARGS_BYTES} bytes.",
                        f"{where}.custom_args",
                    )
                )
        if len(errors) >= MAX_ERRORS:
            return errors

    if total > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request; {total} given.",
                "personalizations",
            )
        )
    if not template_id and not body.get("subject") and not all_have_subject:
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a template with a "
                "subject defined or if every personalization has a subject defined.",
                "subject",
            )
        )
    return errors


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local stand-in for SendGrid's POST /v3/mail/send.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accepted key (repeatable)")
    parser.add_argument("--max-personalizations", type=int, default=None, help="answer 413 above this")
    parser.add_argument("--keep-bodies", action="store_true", help="keep parsed bodies in memory")
    parser.add_argument("--stats-file", type=Path, default=None, help="also write the final stats JSON here")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each accepted request waits to answer")
    args = parser.parse_args(argv)

    standin = SendGridStandIn(
        port=args.port,
        api_keys=args.api_keys,
        max_personalizations=args.max_personalizations,
        keep_bodies=args.keep_bodies,
        latency=args.latency,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin.start()
    print(standin.url, flush=True)
    try:
        while not done.wait(0.2):
            pass
    finally:
        standin.stop()
        stats = json.dumps(standin.stats(), sort_keys=True)
        if args.stats_file is not None:
            args.stats_file.write_text(stats + "\n", encoding="utf-8")
        print(stats, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
