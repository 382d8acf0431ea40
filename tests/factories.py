"""The one home of the values tests build: a configuration (as settings or as a file), the bundled
sample copied out of the checkout, articles, subscribers, a rendered issue, recipients and batches.

A test asks for what it needs and overrides only what it is about, so a change to the config's
shape or to a model is made here once, not in every test file that happened to spell it out.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import tomli_w

from digest.config import Settings, parse
from digest.delivery.tokens import Signer
from digest.delivery.transports.base import Batch, Recipient
from digest.feeds.urls import canonical_url
from digest.issue.render import Rendered
from digest.models import Article, Image
from digest.store import NewSubscriber, Store

ROOT = Path(__file__).resolve().parents[1]  # the repository: config.toml and examples/ (the bundled sample)
FEED_FIXTURES = Path(__file__).parent / "fixtures" / "feeds"  # feeds as publishers write them, quirks and all
NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # Friday 09:00 in New York, ISO week 48
KEY = "2026-W48"  # NOW's issue
SECRET = "test-secret-long-enough-to-sign-links"
SIGNER = Signer(SECRET)

NAME = "Statecraft Weekly"
SENDER = "news@example.org"
NEWSLETTER: dict[str, Any] = {
    "name": NAME,
    "from": f"{NAME} <{SENDER}>",
    "reply_to": "editors@example.org",
    "timezone": "America/New_York",
    "base_url": "https://news.example.org",
    "postal_address": "1 Main St, Springfield",
}


# --- configuration -------------------------------------------------------------------------------


def config(folder: Path, **overrides: Any) -> dict[str, Any]:
    """A valid configuration's tables, its state in ``folder/state``; ``overrides`` replace whole
    top-level tables (spread ``NEWSLETTER`` to change one newsletter key)."""
    raw: dict[str, Any] = {
        "newsletter": dict(NEWSLETTER),
        "feeds": [{"url": "feed.xml"}],
        "sections": [
            {"name": "Asia-Pacific", "categories": ["Asia-Pacific"], "limit": 3},
            {"name": "Military Industrial Complex", "categories": ["Military Industrial Complex"], "limit": 3},
        ],
        "issue": {"min_items": 2},
        "store": {"data_dir": str(folder / "state")},
    }
    raw.update(overrides)
    return raw


def settings(folder: Path, **overrides: Any) -> Settings:
    """``config(folder, **overrides)`` read as the program reads it, as if from ``folder/config.toml``."""
    return parse(config(folder, **overrides), source=folder / "config.toml")


def sending(folder: Path, transport: str, table: dict[str, Any] | None = None, **delivery: Any) -> Settings:
    """Settings that send through ``transport``: ``table`` is its ``[delivery.<transport>]`` table,
    ``delivery`` any other ``[delivery]`` keys."""
    return settings(folder, delivery={"transport": transport, transport: table or {}, **delivery})


def write_config(folder: Path, **overrides: Any) -> Path:
    """``config(folder, **overrides)`` written to ``folder/config.toml``, for a command or a process."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(config(folder, **overrides)), encoding="utf-8")
    return path


def copy_sample(folder: Path, *, append: str = "") -> Path:
    """The bundled sample (config.toml and examples/) copied into ``folder``, so its state stays out
    of the checkout; ``append`` (TOML) is added to the config. Returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", folder / "examples")
    path = folder / "config.toml"
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    path.write_text(text + ("\n" + append if append else ""), encoding="utf-8")
    return path


# --- articles ------------------------------------------------------------------------------------


def article(
    slug: str,
    *,
    hours_ago: float = 24,
    categories: tuple[str, ...] = ("Asia-Pacific",),
    image: bool = True,
    authors: tuple[str, ...] = ("Ana Author",),
    summary: str = "",
    published: bool = True,
) -> Article:
    """An article published ``hours_ago`` before NOW at https://example.org/<slug>."""
    url = f"https://example.org/{slug}"
    when = NOW - timedelta(hours=hours_ago)
    return Article(
        id=f"id-{slug}",
        url=url,
        canonical_url=canonical_url(url),
        title=f"Title of {slug}",
        published=when if published else None,
        seen=when,
        authors=authors,
        categories=categories,
        summary_html=f"<p>{summary or 'Summary of ' + slug}</p>",
        summary_text=summary or f"Summary of {slug}",
        image=Image(
            url=f"https://example.org/{slug}.jpg", alt=f"Alt {slug}", credit=f"Credit {slug}", width=1200, height=675
        )
        if image
        else None,
    )


# --- subscribers and a recorded issue ------------------------------------------------------------


def readers(count: int, name: str = "Reader {i}") -> list[NewSubscriber]:
    """``count`` subscribers reader<i>@example.org, each named ``name`` with ``{i}`` filled in."""
    return [NewSubscriber(f"reader{i}@example.org", name.format(i=i)) for i in range(count)]


# A rendered variant with the per-recipient placeholders in both parts, the HTML one escaped.
VARIANT = Rendered(
    subject=f"{NAME}: A lead story",
    html='<p>%%name%% <a href="%%unsubscribe_url%%">u</a></p>\n',
    text="%%name:text%% %%unsubscribe_url:text%%\n",
    warnings=(),
)


def record_issue(store: Store, variant: Rendered = VARIANT, key: str = KEY) -> bool:
    """Record issue ``key`` (the week before NOW) with ``variant`` as its only, whole-issue variant."""
    return store.issues.record(
        key,
        subject=variant.subject,
        window=(NOW - timedelta(days=7), NOW),
        article_count=5,
        summary={},
        rendered={"all": (variant.subject, variant.html, variant.text)},
    )


def ready_to_send(store: Store, count: int, name: str = "Reader {i}") -> None:
    """``count`` active subscribers (see ``readers``) and the issue recorded: what a send starts from."""
    store.subscribers.merge(readers(count, name))
    record_issue(store)


class Sleeps(list[float]):
    """Stands in for time.sleep: records the waits asked for, without waiting. A send that keeps
    asking to wait (a retry loop without end) is stopped after ``limit`` waits."""

    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self.limit = limit

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if len(self) >= self.limit:
            raise RuntimeError(f"still waiting after {self.limit} waits: the retries have no bound")


# --- what a transport is handed ------------------------------------------------------------------


def recipient(i: int, **values: str) -> Recipient:
    """Recipient ``i`` (delivery 100 + i) at r<i>@example.net. Its name and unsubscribe link need
    escaping in the HTML part and not in the text part; ``values`` replace single values."""
    email = f"r{i}@example.net"
    return Recipient(
        delivery_id=100 + i,
        subscriber_id=i,
        email=email,
        values={
            "name": f"Reader <{i}>",
            "email": email,
            "unsubscribe_url": f"https://example.org/unsubscribe?t=tok{i}&x=1",
            "preferences_url": f"https://example.org/preferences?t=tok{i}",
            **values,
        },
    )


def batch(*ids: int, test: bool = False) -> Batch:
    """One batch of issue KEY with ``recipient(i)`` for each of ``ids``, numbered after the first."""
    return Batch(KEY, VARIANT, tuple(recipient(i) for i in ids), batch_id=ids[0], test=test)


# --- what was sent, read back as a mail client reads it -------------------------------------------


def read_eml(path: Path) -> EmailMessage:
    """The message in ``path`` (an outbox file, say), parsed with the modern email API."""
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()
