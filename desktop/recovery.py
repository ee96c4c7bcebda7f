"""Crash recovery: the editor's text autosaved to a recovery file.

The window writes the file a moment after each edit and deletes it on a clean
exit. If the app dies, the file is still there at the next start, which offers
the text back. Writes are atomic (a temporary file, then os.replace), so a
crash during a write leaves the previous copy, never half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RECOVERY_FILE = "recovery.json"


@dataclass(frozen=True)
class Recovered:
    """What the last session left unsaved."""

    text: str
    path: str | None  # the file it was editing, if any


class RecoveryStore:
    """Reads, writes and clears the recovery file in `folder`."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / RECOVERY_FILE

    def save(self, text: str, path: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": text, "path": path}), encoding="utf-8")
        os.replace(tmp, self.path)

    def load(self) -> Recovered | None:
        """The recovered text, or None when there is none (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Recovered(str(data["text"]), data.get("path"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
