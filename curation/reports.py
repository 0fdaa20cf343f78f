"""The report every importer returns: what was accepted, what was already there, what was
rejected and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0
    # JSONL lines that restate a group's caption for its members (no new caption needed).
    group_lines: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    normalised: list[dict[str, Any]] = field(default_factory=list)
    batch_id: int | None = None

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": name, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "group_lines": self.group_lines,
            "rejected": self.rejected,
            "normalised": self.normalised,
            "batch": self.batch_id,
        }

    def summary(self) -> str:
        text = f"{self.accepted} accepted, {self.duplicates} already present, "
        if self.group_lines:
            text += f"{self.group_lines} lines of group captions, "
        return text + f"{len(self.rejected)} rejected"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n")
