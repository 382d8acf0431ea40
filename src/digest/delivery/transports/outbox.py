"""The outbox transport: one .eml file per recipient in a folder, the embedded default.

It lets anyone run the whole weekly job (and its tests) with nothing but a disk, and keeps an
exact copy of what each recipient would have got. Files are written atomically and named by
issue and delivery, so a re-run after a crash rewrites, never duplicates, a file.

Because a file appears whole or not at all, the folder is the evidence ``settle`` needs: after a
crash, a delivery whose file is there was submitted, and one whose file is not was never written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from digest.config import Outbox, Settings
from digest.delivery.transports.base import Batch, Orphan, Outcome, Result, Settlement, TemporaryError, messages
from digest.files import atomic_write, leftover_target

log = logging.getLogger("digest.transports.outbox")


class OutboxTransport:
    name = "outbox"
    settings_model = Outbox
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
        outcomes: dict[int, tuple[Outcome, str]] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for _, r, message in messages(self.settings, batch, outcomes):
                atomic_write(folder / _file_name(batch, r.delivery_id, r.subscriber_id, r.email), message.as_bytes())
                outcomes[r.delivery_id] = ("submitted", "")
        except OSError as exc:
            raise TemporaryError(f"outbox {folder}: cannot write: {exc.strerror or exc}") from exc
        return Result(outcomes, provider_id=str(folder))

    def settle(self, orphans: Sequence[Orphan]) -> dict[int, Settlement]:
        """An orphan whose file exists was submitted; one without was never written, so it may be
        written now. The half-written temporary files of those orphans (left by a killed
        process, which is gone: nobody is still writing them) are removed."""
        resolved: dict[int, Settlement] = {}
        for key in sorted({o.issue_key for o in orphans}):
            folder = self.folder / key
            try:
                names = os.listdir(folder) if folder.is_dir() else []  # once, however many files
                partial: dict[str, list[str]] = {}
                for name in names:
                    target = leftover_target(name)
                    if target:
                        partial.setdefault(target, []).append(name)
                present = set(names)
                for orphan in (o for o in orphans if o.issue_key == key):
                    name = delivery_file_name(orphan.delivery_id, orphan.subscriber_id)
                    resolved[orphan.delivery_id] = "submitted" if name in present else "unsent"
                    for tmp in partial.get(name, ()):
                        (folder / tmp).unlink(missing_ok=True)
                        log.info("removed %s, half-written when its process stopped", tmp, extra={"issue": key})
            except OSError as exc:
                raise TemporaryError(f"outbox {folder}: cannot read: {exc.strerror or exc}") from exc
        return resolved

    def close(self) -> None:
        return None


def _file_name(batch: Batch, delivery_id: int, subscriber_id: int, email: str) -> str:
    """A delivery's file is named by its ledger ids, so a re-run rewrites it; a test copy by its
    address; anything else (an editors' notice) by its batch too, so notices never overwrite."""
    if batch.test:
        return f"{email}.eml"
    if subscriber_id:
        return delivery_file_name(delivery_id, subscriber_id)
    return f"{batch.batch_id}-{delivery_id:03d}-{email}.eml"


def delivery_file_name(delivery_id: int, subscriber_id: int) -> str:
    """The file of one delivery of an issue, in that issue's folder."""
    return f"{delivery_id:08d}-{subscriber_id}.eml"
