"""Typed errors for every failure a user can cause or meet.

The CLI is the only place that turns these into a line of text and an exit code, so each error
carries enough context (which file, which key, which feed) to be read on its own. Errors inherit
from the builtin they resemble so callers that catch ``ValueError`` or ``OSError`` still work,
and they are always raised ``from`` their cause so ``--debug`` shows the whole chain.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error the CLI reports as one line; ``exit_code`` is what the process returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(DigestError, ValueError):
    """The config file is missing, unreadable or has a bad key: exit code 2, like a usage error."""

    exit_code = 2


class FeedError(DigestError, OSError):
    """A feed could not be fetched or parsed into anything usable."""


class TemplateError(DigestError, ValueError):
    """A template is missing or fails to render; names the template and line."""


class EmptyIssueError(DigestError):
    """No article falls in the issue's window: there is nothing to build, let alone send."""


class StoreError(DigestError):
    """The database cannot be opened or used."""


class SubscriberError(DigestError, ValueError):
    """A subscriber command was given an address or file it cannot use."""


class SubscriberNameError(SubscriberError):
    """A name that cannot go into a mail header as it is: exit code 2, like a usage error."""

    exit_code = 2


class DeliveryError(DigestError):
    """A send cannot start or cannot go on (no secret, thin week, refused credentials...)."""
