"""Writing files so that a crash never leaves half of one: the single place that does it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Write beside ``path`` and rename over it: readers see the old file or the new, never half.

    The file beside it is ``.<name>.<random>.tmp``; a process killed mid-write leaves it behind
    (see ``leftover_target``).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def leftover_target(name: str) -> str | None:
    """The file a temporary file named ``name`` was to become, if ``atomic_write`` made it (one
    left behind means its process was killed mid-write); None for any other name."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    target = name[1 : -len(TMP_SUFFIX)].rpartition(".")[0]  # mkstemp's random part has no dot
    return target or None
