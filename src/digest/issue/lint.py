"""Client lint: what each email client would not support in an issue's HTML, from caniemail data.

The checks are caniemail.com's data as packaged by the npm package ``@jsx-email/doiuse-email``,
run by the small node script in ``tools/email-lint`` (installed there with ``npm ci``). This
module runs it in a subprocess with a timeout and reads its JSON findings per client.

The rule the bundled templates keep (tests/test_email_lint.py checks it): no error at all for
Gmail (web, iOS, Android) and Apple Mail (macOS, iOS); for Outlook, only the progressive
enhancements in ``ENHANCEMENTS``, each there for a reason Outlook's own rendering makes harmless.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from digest.errors import DigestError

# caniemail's client names, and how a person calls them.
CLIENTS: dict[str, str] = {
    "gmail.desktop-webmail": "Gmail (web)",
    "gmail.ios": "Gmail (iOS)",
    "gmail.android": "Gmail (Android)",
    "apple-mail.macos": "Apple Mail (macOS)",
    "apple-mail.ios": "Apple Mail (iOS)",
    "outlook.windows": "Outlook (Windows)",
    "outlook.macos": "Outlook (macOS)",
    "outlook.ios": "Outlook (iOS)",
    "outlook.android": "Outlook (Android)",
}
# Clients that must support everything the issue uses.
STRICT = frozenset(c for c in CLIENTS if not c.startswith("outlook."))
# The only findings accepted for Outlook, and why each is harmless there.
ENHANCEMENTS: dict[str, str] = {
    "@media": "phone sizes and dark mode; Outlook for Windows lays the issue out from its 600 px "
    "ghost tables (<!--[if mso]>) instead",
    "Attribute selector": "the [data-ogsc]/[data-ogsb] rules are for Outlook.com's dark mode; "
    "Outlook for Windows ignores them and keeps the light colours",
    "overflow": "hides the preheader where display:none is not enough; Outlook hides it with mso-hide:all",
    "<body> element": "Outlook for Mac, iOS and Android put a div in place of <body>; nothing rests on "
    "<body>'s styles (the background is on the wrapper table)",
}
TIMEOUT = 60.0


class LintUnavailable(DigestError):
    """The client lint cannot run here (no node, packages not installed, the script failed)."""


@dataclass(frozen=True, slots=True)
class ClientFindings:
    """One client's findings: features used that it does not support (errors) or only in part."""

    client: str
    errors: dict[str, int]
    warnings: dict[str, int]

    @property
    def name(self) -> str:
        return CLIENTS.get(self.client, self.client)

    @property
    def strict(self) -> bool:
        return self.client in STRICT

    @property
    def accepted(self) -> dict[str, int]:
        """Errors that are a named progressive enhancement (Outlook only)."""
        if self.strict:
            return {}
        return {f: n for f, n in self.errors.items() if f in ENHANCEMENTS}

    @property
    def problems(self) -> dict[str, int]:
        """Errors the templates must not have: every error for a strict client, the unlisted ones
        for Outlook."""
        return {f: n for f, n in self.errors.items() if f not in self.accepted}


@dataclass(frozen=True, slots=True)
class LintReport:
    tool: str
    clients: tuple[ClientFindings, ...]

    @property
    def ok(self) -> bool:
        return not any(c.problems for c in self.clients)

    def client(self, client: str) -> ClientFindings:
        return next(c for c in self.clients if c.client == client)


def tool_dir() -> Path:
    """The checkout's ``tools/email-lint`` (the lint is an editor's and CI's tool: not in the wheel)."""
    return Path(__file__).resolve().parents[3] / "tools" / "email-lint"


def lint(html: str, clients: tuple[str, ...] = tuple(CLIENTS), *, timeout: float = TIMEOUT) -> LintReport:
    """Check ``html`` for ``clients``; LintUnavailable (one line saying why) when it cannot run."""
    folder = tool_dir()
    node = shutil.which("node")
    if node is None:
        raise LintUnavailable(
            "node is not installed", hint="install Node.js 20 or later, then npm ci in " + str(folder)
        )
    if not (folder / "node_modules" / "@jsx-email" / "doiuse-email").is_dir():
        raise LintUnavailable(
            f"the lint's packages are not installed in {folder}", hint=f"run: npm ci --prefix {folder}"
        )
    try:
        done = subprocess.run(
            [node, str(folder / "lint.mjs"), *clients],
            input=html,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=folder,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LintUnavailable(f"the lint took more than {timeout:.0f} s") from exc
    except OSError as exc:
        raise LintUnavailable(f"cannot run node: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LintUnavailable(f"the lint script failed (exit {done.returncode}): {last}")
    try:
        data = json.loads(done.stdout)
        found = tuple(
            ClientFindings(client, dict(v["errors"]), dict(v["warnings"])) for client, v in data["clients"].items()
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LintUnavailable(f"the lint script printed something other than its JSON: {exc}") from exc
    return LintReport(tool=str(data.get("tool", "")), clients=found)
