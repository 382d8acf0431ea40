"""``config.toml`` read once into typed, validated settings.

Why pydantic: every key is declared once here with its type, default and description, a typo'd
or unknown key is an error instead of being silently ignored, and a bad value comes back with its
location, which becomes the one line the CLI prints ("config.toml: [issue] min_items: ...").
The README's key reference is checked against these models by a test.

Relative paths in the file are resolved against the file's own directory, so a config works the
same whichever directory the command is run from. Secrets never live here: they come from the
environment (see ``secret``).
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from digest.errors import ConfigError

SUBJECT_FIELDS = frozenset({"newsletter", "lead_title", "issue", "start", "end", "count"})
UTM_FIELDS = frozenset({"issue", "newsletter"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_line_breaks(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line (it goes into a mail header)")
    return value


def _check_format(template: str, allowed: frozenset[str]) -> str:
    """Reject a ``{field}`` the template can never be filled with, at load time not at send time."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from exc
    unknown = names - allowed
    if unknown:
        raise ValueError(f"uses unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return template


_CSS_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_CSS_UNSAFE = re.compile(r"[;{}<>\"\\]")


class Logo(_Model):
    """The masthead's logo: an image drawn for a light background, shown at its display size."""

    url: str = Field(description="The logo image's absolute http(s) URL.")
    width: int = Field(ge=1, le=600, description="Display width in px (the img width attribute).")
    height: int = Field(ge=1, le=300, description="Display height in px (the img height attribute).")
    alt: str = Field(default="", description="Alt text; empty uses the newsletter's name.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL (an email cannot load a local file)")
        return value


class Newsletter(_Model):
    """Who sends the newsletter and how it presents itself."""

    name: str = Field(description="The newsletter's name, shown in the header and the subject.")
    from_address: str = Field(alias="from", description='The From header, e.g. "Weekly <news@example.org>".')
    reply_to: str = Field(default="", description="Reply-To address; empty for none.")
    timezone: str = Field(default="UTC", description="IANA zone for the issue key, the dates shown and schedules.")
    base_url: str = Field(description="Public URL of the web app: the archive, view-in-browser and unsubscribe links.")
    list_id: str = Field(default="", description="List-Id header value; defaults to a name derived from From.")
    postal_address: str = Field(description="Postal address in the footer (required by law).")
    why: str = Field(
        default="You are receiving this because you subscribed to our weekly round-up.",
        description="Footer line telling the reader why they get this email.",
    )
    subject: str = Field(
        default="{newsletter}: {lead_title}",
        description="Subject template; fields: " + ", ".join(sorted(SUBJECT_FIELDS)) + ".",
    )
    logo: Logo | None = Field(default=None, description="Masthead logo; none shows the name as text.")
    editors: list[str] = Field(
        default_factory=list, description="Editors' addresses: review copies and notices (thin week, feeds down)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _single_line = field_validator("name", "from_address", "reply_to", "list_id")(_no_line_breaks)

    @model_validator(mode="before")
    @classmethod
    def _old_logo_url(cls, data: Any) -> Any:
        """``logo_url`` (before ``[newsletter.logo]``) meant a 200 x 40 logo: read it as one."""
        if isinstance(data, dict) and "logo_url" in data:
            data = dict(data)
            url = data.pop("logo_url")
            if url and "logo" not in data:
                data["logo"] = {"url": url, "width": 200, "height": 40}
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/London')") from exc
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return _check_format(_no_line_breaks(value), SUBJECT_FIELDS)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class FeedSource(_Model):
    """One feed to read: an http(s) URL or a local file path."""

    url: str = Field(description="http(s) URL or local path (relative to the config file).")
    name: str = Field(default="", description="Label used in messages; defaults to the URL.")

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))


class Fetch(_Model):
    """How feeds are fetched over HTTP."""

    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(default=20.0, gt=0, description="Seconds to wait for data.")
    max_bytes: int = Field(default=10_000_000, gt=0, description="Largest feed body accepted, in bytes.")
    retries: int = Field(default=3, ge=0, le=10, description="Retries on 5xx, 429 and connection errors.")
    backoff: float = Field(default=1.0, ge=0, description="First retry delay in seconds; doubles each time.")
    user_agent: str = Field(default="digest/0.1 (+newsletter digest)", description="User-Agent sent with requests.")
    total_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one feed's fetch may take in all: connecting, every read, every retry and "
        "the waits between them. A feed past it is down.",
    )
    require_all: bool = Field(
        default=False,
        description="Build no issue unless every feed answers; false builds from the feeds that did "
        "when they make a full issue.",
    )


class Section(_Model):
    """A section of the issue, fed by one or more feed categories."""

    name: str = Field(description="Heading shown in the email.")
    categories: list[str] = Field(default_factory=list, description="Feed categories (case-insensitive) that feed it.")
    limit: int = Field(default=5, ge=1, description="Most articles shown in this section.")


class IssueSettings(_Model):
    """What goes into an issue and in which order."""

    window_days: int = Field(default=7, ge=1, le=62, description="Days before the run time an issue covers.")
    min_items: int = Field(default=3, ge=1, description="Fewer articles than this is a thin week: not sent.")
    excerpt_chars: int = Field(default=280, ge=40, description="Excerpts are cut at a word boundary to this length.")
    featured_category: str = Field(
        default="Featured", description="Feed category that ranks an article above the newest."
    )
    catch_all: str = Field(
        default="", description="Section name for articles no section claims; empty leaves them out."
    )
    catch_all_limit: int = Field(default=5, ge=1, description="Most articles shown in the catch-all section.")
    pins: list[str] = Field(
        default_factory=list, description="Article URLs shown first in their section, in this order."
    )


class Utm(_Model):
    """UTM parameters added to every article link."""

    enabled: bool = Field(default=True, description="Add UTM parameters to article links.")
    source: str = Field(default="newsletter", description="utm_source value.")
    medium: str = Field(default="email", description="utm_medium value.")
    campaign: str = Field(default="{issue}", description="utm_campaign template; fields: issue, newsletter.")

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, value: str) -> str:
        return _check_format(value, UTM_FIELDS)


class Render(_Model):
    """How the email is rendered."""

    templates: str = Field(default="", description="Directory of your own templates; empty uses the bundled ones.")
    size_warning_kb: int = Field(default=90, ge=1, description="Warn when the HTML part passes this many KB.")
    image_width: int = Field(default=560, ge=100, le=600, description="Display width of article images, in px.")
    image_aspect: float = Field(
        default=16 / 9, gt=0, description="Width/height assumed when a feed gives no image size."
    )
    layout: Literal["compact", "full"] = Field(
        default="compact",
        description="compact: the lead large, every other article a thumbnail beside its text; "
        "full: every article with a full-width image.",
    )
    accent: str = Field(default="#9b1c1c", description="Accent colour (#rrggbb): labels, section names, links.")
    font: str = Field(
        default="Georgia, 'Times New Roman', Times, serif",
        description="CSS font stack of headlines and excerpts (labels and small print stay sans-serif).",
    )
    label_categories: list[str] = Field(
        default_factory=list,
        description='Feed categories shown before the section in an article\'s label ("Analysis | Asia-Pacific").',
    )

    @field_validator("accent")
    @classmethod
    def _accent(cls, value: str) -> str:
        if not _CSS_COLOUR.fullmatch(value):
            raise ValueError(f"{value!r} is not a colour: write it as #rrggbb, e.g. '#9b1c1c'")
        return value.lower()

    @field_validator("font")
    @classmethod
    def _font(cls, value: str) -> str:
        if not value.strip() or _CSS_UNSAFE.search(value):
            raise ValueError(
                "must be a CSS font stack such as \"Georgia, 'Times New Roman', serif\" "
                '(single quotes only; no ; { } < > " or \\)'
            )
        return value.strip()


class Store(_Model):
    """Where digest keeps its state."""

    data_dir: str = Field(
        default=".digest", description="Directory for state (feed cache); relative to the config file."
    )
    url: str = Field(
        default="",
        description="SQLAlchemy database URL; empty means a SQLite file in data_dir. "
        "$DIGEST_DATABASE_URL overrides it (put passwords there, not here).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value


class TransportSettings(_Model):
    """The ``[delivery.<name>]`` table of one transport.

    A subclass declared as a field of ``Delivery`` is what makes ``<name>`` a transport the config
    may name; the class that sends is registered under the same name, carrying this model, in
    ``digest.delivery.transports`` (a test keeps the two in step). Declared here, with the other
    keys, so the file is checked whole at load time and the README check sees every key.
    """


class Outbox(TransportSettings):
    """The outbox transport: one .eml file per recipient, for trying things out and for archives."""

    dir: str = Field(default="", description="Folder for the .eml files; empty means <data_dir>/outbox.")


class Smtp(TransportSettings):
    """The SMTP transport. The password comes from $DIGEST_SMTP_PASSWORD."""

    host: str = Field(default="127.0.0.1", description="SMTP server host name.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit TLS, port 465) or none (local relays)."
    )
    username: str = Field(default="", description="User name to log in with; empty for no login.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait on the server for each step.")
    connections: int = Field(
        default=1, ge=1, le=32, description="Connections to send over at once, each kept open for the whole send."
    )


class SendGrid(TransportSettings):
    """The SendGrid transport. The API key comes from $SENDGRID_API_KEY."""

    api_host: str = Field(default="https://api.sendgrid.com", description="API base URL.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds a request may take before its outcome is unknown.")
    category: str = Field(default="newsletter", max_length=255, description="Category attached to every message.")
    sandbox: bool = Field(default=False, description="SendGrid sandbox mode: accepted but delivered to nobody.")
    asm_group_id: int = Field(
        default=0, ge=0, description="SendGrid unsubscribe group added to every message (asm.group_id); 0 for none."
    )
    connections: int = Field(
        default=2, ge=1, le=8, description="Requests in flight at once, each on a connection kept for the whole send."
    )

    @field_validator("api_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class Delivery(_Model):
    """How issues are sent."""

    transport: str = Field(default="outbox", description="The way out: outbox (files), smtp or sendgrid.")
    batch_size: int = Field(
        default=1000, ge=1, le=1000, description="Recipients claimed and handed to the transport at once."
    )
    retries: int = Field(default=5, ge=0, le=20, description="Retries of a batch after a 5xx or refused connection.")
    backoff: float = Field(default=1.0, ge=0, description="First retry delay in seconds; doubles, with jitter.")
    max_backoff: float = Field(default=60.0, ge=0, description="Longest single retry delay in seconds.")
    max_rate_wait: float = Field(
        default=300.0, ge=0, description="Longest wait for a rate limit to reset before the batch fails."
    )
    lease_minutes: float = Field(
        default=30.0, gt=0, description="A batch claimed longer ago than this by a process on another host is orphaned."
    )
    outbox: Outbox = Field(default_factory=Outbox)
    smtp: Smtp = Field(default_factory=Smtp)
    sendgrid: SendGrid = Field(default_factory=SendGrid)

    @field_validator("transport")
    @classmethod
    def _known_transport(cls, value: str) -> str:
        """An unknown name is refused when the file is read, not met as a surprise at send time."""
        known = cls.transport_names()
        if value not in known:
            raise ValueError(f"must be one of the known transports: {', '.join(known)}")
        return value

    @classmethod
    def transport_names(cls) -> list[str]:
        """The transports a config may name: those with a ``[delivery.<name>]`` table."""
        return list(cls.transport_tables())

    @classmethod
    def transport_tables(cls) -> dict[str, type[TransportSettings]]:
        """Each transport's name and the model of its ``[delivery.<name>]`` table."""
        return {
            name: info.annotation
            for name, info in cls.model_fields.items()
            if isinstance(info.annotation, type) and issubclass(info.annotation, TransportSettings)
        }


class Schedule(_Model):
    """When the scheduler (`digest schedule`) sends, and how editors review first."""

    cron: str = Field(
        default="0 9 * * FRI", description="Send time as a 5-field crontab line, in the newsletter's time zone."
    )
    grace: str = Field(
        default="2h", description="How late a missed or delayed send may still go out (e.g. 90m, 2h); never later."
    )
    review_hours: int = Field(
        default=0, ge=0, le=24 * 6, description="Build a draft this many hours before the send for editors to approve."
    )
    auto_approve: bool = Field(default=False, description="Send the draft at send time without waiting for approval.")
    feed_retry: str = Field(
        default="10m", description="How often feeds that cannot be fetched are tried again within the grace."
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from digest.cron import cron_trigger

        try:
            cron_trigger(value, ZoneInfo("UTC"))
        except ValueError as exc:
            raise ValueError(f"is not a valid crontab line ({exc})") from exc
        return value

    @field_validator("grace", "feed_retry")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) < 1:
            raise ValueError("must be at least 1s")
        return value

    @property
    def grace_seconds(self) -> float:
        return parse_duration(self.grace)

    @property
    def feed_retry_seconds(self) -> float:
        return parse_duration(self.feed_retry)


class Web(_Model):
    """The subscriber-facing web app (`digest serve`)."""

    host: str = Field(default="127.0.0.1", description="Address `digest serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `digest serve` listens on.")
    sendgrid_webhook_key: str = Field(
        default="",
        description="SendGrid's Event Webhook verification key (public, base64); unsigned or badly signed "
        "webhook requests are refused, and every request while it is empty.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Sites (https://www.example.org) whose own pages may post sign-ups as JSON (CORS); "
        "empty allows none.",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """An origin is scheme, host and port only: what a browser sends in ``Origin``."""
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin!r} is not an origin; write it like https://www.example.org (no path)")
        return value


class Signup(_Model):
    """Readers signing themselves up on `digest serve`'s `/subscribe`, confirmed by email."""

    confirm_ttl: str = Field(
        default="7d", description="How long a confirmation link works; unconfirmed sign-ups are deleted after it."
    )
    welcome: Literal["none", "latest-issue"] = Field(
        default="none", description="latest-issue: mail a new reader the latest sent issue once when they confirm."
    )
    per_ip: str = Field(default="20/hour", description="Most sign-ups posted from one IP address, e.g. 20/hour.")
    per_address: str = Field(default="5/hour", description="Most sign-ups posted for one email address.")

    @field_validator("confirm_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        if parse_duration(value) < 60:
            raise ValueError("must be at least 1m")
        return value

    @field_validator("per_ip", "per_address")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def confirm_ttl_seconds(self) -> float:
        return parse_duration(self.confirm_ttl)

    @property
    def per_ip_rate(self) -> Rate:
        return parse_rate(self.per_ip)

    @property
    def per_address_rate(self) -> Rate:
        return parse_rate(self.per_address)


class Desk(_Model):
    """The editors' desk at `/desk/` in `digest serve`."""

    session_hours: int = Field(
        default=12, ge=1, le=24 * 30, description="Hours an editor stays signed in before signing in again."
    )


class Logging(_Model):
    """How digest logs."""

    format: Literal["text", "json"] = Field(default="text", description="text, or json: one JSON object per line.")
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level logged."
    )


def parse_duration(value: str) -> float:
    """``"7d"``, ``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` as seconds; a ValueError says what is accepted."""
    text = value.strip().lower()
    parts = re.fullmatch(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", text)
    if not text or not parts or not any(parts.groups()):
        raise ValueError(f"{value!r} is not a duration; write it like 90m, 2h, 1h30m, 7d or 45s")
    days, hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


RATE_UNITS = ("second", "minute", "hour", "day", "month", "year")


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit as the config writes it: at most ``amount`` in every ``multiples`` ``unit``s."""

    amount: int
    multiples: int
    unit: str  # one of RATE_UNITS


def parse_rate(value: str) -> Rate:
    """``"20/hour"``, ``"5 per minute"``, ``"100/2 days"`` as a Rate; a ValueError says what is accepted.

    The grammar is the one ``limits`` reads, checked here without importing ``limits`` (with its
    storage back-ends, about 30 ms) into every command: only `digest serve` counts sign-ups.
    """
    units = "|".join(RATE_UNITS)
    parts = re.fullmatch(rf"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*({units})s?\s*", value, flags=re.IGNORECASE)
    if not parts or int(parts[1]) < 1 or (parts[2] is not None and int(parts[2]) < 1):
        raise ValueError(f"{value!r} is not a rate; write it like 20/hour, 5/minute or 100/day")
    return Rate(int(parts[1]), int(parts[2] or 1), parts[3].lower())


class Settings(_Model):
    """The whole config file."""

    newsletter: Newsletter
    feeds: Annotated[list[FeedSource], Field(min_length=1)] = Field(description="The feeds to read ([[feeds]]).")
    sections: Annotated[list[Section], Field(min_length=1)] = Field(
        description="Sections in display order ([[sections]])."
    )
    issue: IssueSettings = Field(default_factory=IssueSettings)
    fetch: Fetch = Field(default_factory=Fetch)
    utm: Utm = Field(default_factory=Utm)
    render: Render = Field(default_factory=Render)
    store: Store = Field(default_factory=Store)
    delivery: Delivery = Field(default_factory=Delivery)
    schedule: Schedule = Field(default_factory=Schedule)
    web: Web = Field(default_factory=Web)
    signup: Signup = Field(default_factory=Signup)
    desk: Desk = Field(default_factory=Desk)
    logging: Logging = Field(default_factory=Logging)

    # Set by ``load``: the directory relative paths are resolved against, and the file itself.
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_sections(self) -> Settings:
        names = [s.name.casefold() for s in self.sections]
        if self.issue.catch_all:
            names.append(self.issue.catch_all.casefold())
        if len(names) != len(set(names)):
            raise ValueError("section names must be unique (catch_all included)")
        return self

    def path(self, value: str) -> Path:
        """Resolve a path from the config against the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def section_names(self) -> list[str]:
        """Every section an article (and a subscriber's choice) can name, in display order, the
        catch-all last."""
        names = [s.name for s in self.sections]
        return [*names, self.issue.catch_all] if self.issue.catch_all else names

    @property
    def data_dir(self) -> Path:
        return self.path(self.store.data_dir)

    @property
    def database_url(self) -> str:
        """$DIGEST_DATABASE_URL, else ``[store] url``, else a SQLite file in the data directory."""
        url = secret("DIGEST_DATABASE_URL") or self.store.url
        return url or f"sqlite:///{self.data_dir / 'digest.sqlite3'}"

    @property
    def outbox_dir(self) -> Path:
        return self.path(self.delivery.outbox.dir) if self.delivery.outbox.dir else self.data_dir / "outbox"


# Keys a user may write that are not model fields (``from`` is an alias), for the docs check.
def documented_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every key a config file may contain, dotted (``issue.min_items``, ``sections[].limit``)."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        key = prefix + (info.alias or name)
        sub = _submodel(info.annotation)
        if sub is None:
            keys.append(key)
        else:
            many = "list[" in str(info.annotation)
            keys.extend(documented_keys(sub, key + ("[]." if many else ".")))
    return keys


def _submodel(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for inner in list(candidates):
        candidates.extend(getattr(inner, "__args__", ()))
        meta = getattr(inner, "__origin__", None)
        if meta is not None:
            candidates.append(meta)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def load(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a config file; every failure is a ConfigError naming the file and key."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{file}: no such config file", hint="pass --config with the path to config.toml") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: config file is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}", hint="fix the syntax at that line") from exc
    return parse(raw, source=file)


def parse(raw: dict[str, Any], *, source: Path | None = None) -> Settings:
    """Validate an already-parsed TOML document (used by ``load`` and by tests)."""
    label = str(source) if source else "config"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {_describe(exc)}", hint="fix that key and run again") from exc
    base = source.resolve().parent if source else Path.cwd()
    return settings.model_copy(update={"base_dir": base, "source": source})


def _describe(exc: ValidationError) -> str:
    """The first validation error as ``[table] key: problem`` — one line, the one to fix first."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = _location(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check its spelling against the README's config reference)"
    if kind == "missing":
        return f"{where}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    return f"{where}: {msg}{shown}"


def _location(loc: list[str]) -> str:
    if not loc:
        return "(top level)"
    table: list[str] = []
    for part in loc[:-1]:
        if part.isdigit() and table:
            table[-1] = f"{table[-1]}[{int(part) + 1}]"
        else:
            table.append(part)
    key = loc[-1]
    if key.isdigit():
        return f"[{'.'.join(table)}] item {int(key) + 1}" if table else f"item {int(key) + 1}"
    return f"[{'.'.join(table)}] {key}" if table else key


def secret(name: str) -> str | None:
    """Secrets (API keys, passwords, signing keys) come from the environment, never the file."""
    value = os.environ.get(name, "").strip()
    return value or None
