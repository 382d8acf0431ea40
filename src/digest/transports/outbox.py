"""The outbox transport: one .eml file per recipient in a folder, the embedded default.

It lets anyone run the whole weekly job (and its tests) with nothing but a disk, and keeps an
exact copy of what each recipient would have got. Files are written atomically and named by
issue and delivery, so a re-run after a crash rewrites, never duplicates, a file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings
from ..files import atomic_write
from ..message import build_message
from .base import Batch, Outcome, Result, TemporaryError, not_built


class OutboxTransport:
    name = "outbox"
    max_batch = 1000

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTransport:
        return cls(settings, settings.outbox_dir)

    def send(self, batch: Batch) -> Result:
        """One file per recipient; a recipient whose message cannot be built fails alone."""
        folder = self.folder / (f"test-{batch.issue_key}" if batch.test else batch.issue_key)
        now = datetime.now(UTC)
        outcomes: dict[int, tuple[Outcome, str]] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for r in batch.recipients:
                try:
                    data = build_message(
                        self.settings, batch.variant, r.values, now=now, to=r.email, subject_prefix=batch.subject_prefix
                    ).as_bytes()
                except Exception as exc:  # any build error is this recipient's alone; see not_built
                    outcomes[r.delivery_id] = not_built(r, exc)
                    continue
                atomic_write(folder / _file_name(batch, r.delivery_id, r.subscriber_id, r.email), data)
                outcomes[r.delivery_id] = ("submitted", "")
        except OSError as exc:
            raise TemporaryError(f"outbox {folder}: cannot write: {exc.strerror or exc}") from exc
        return Result(outcomes, provider_id=str(folder))

    def close(self) -> None:
        return None


def _file_name(batch: Batch, delivery_id: int, subscriber_id: int, email: str) -> str:
    """A delivery's file is named by its ledger ids, so a re-run rewrites it; a test copy by its
    address; anything else (an editors' notice) by its batch too, so notices never overwrite."""
    if batch.test:
        return f"{email}.eml"
    if subscriber_id:
        return f"{delivery_id:08d}-{subscriber_id}.eml"
    return f"{batch.batch_id}-{delivery_id:03d}-{email}.eml"
