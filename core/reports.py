"""The report every importer returns: what was accepted, what was already there, what was
rejected and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Created accounts named in the one-line summary; the report lists them all.
SUMMARY_NAMES = 10


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0
    # JSONL lines that restate a group's caption for its members (no new caption needed).
    group_lines: int = 0
    # Accepted images that came with no caption (the release's distractor lists).
    uncaptioned: int = 0
    # One entry per duplicate: the file or row, and the image already here that it repeats.
    duplicate_of: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    normalised: list[dict[str, Any]] = field(default_factory=list)
    # Per image URL of a rejected row: where its file was looked for, and why it failed.
    images_not_found: list[dict[str, Any]] = field(default_factory=list)
    # User names of the accounts the import made for annotators it named who had none here
    # (inactive, no usable password): an admin decides who may sign in.
    users_created: list[str] = field(default_factory=list)
    batch_id: int | None = None

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": name, "reason": reason})

    def duplicate(self, name: str, image_id: int | None) -> None:
        self.duplicates += 1
        self.duplicate_of.append({"name": name, "image_id": image_id})

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "duplicate_of": self.duplicate_of,
            "group_lines": self.group_lines,
            "uncaptioned": self.uncaptioned,
            "rejected": self.rejected,
            "normalised": self.normalised,
            "images_not_found": self.images_not_found,
            "users_created": self.users_created,
            "batch": self.batch_id,
        }

    def summary(self) -> str:
        text = f"{self.accepted} accepted, {self.duplicates} already present, "
        if self.group_lines:
            text += f"{self.group_lines} lines of group captions, "
        if self.uncaptioned:
            text += f"{self.uncaptioned} of the accepted without a caption, "
        text += f"{len(self.rejected)} rejected"
        if self.images_not_found:
            text += f" ({len(self.images_not_found)} image URLs not found)"
        if self.users_created:
            shown = ", ".join(self.users_created[:SUMMARY_NAMES])
            more = len(self.users_created) - SUMMARY_NAMES
            text += (
                f"; {len(self.users_created)} inactive annotator account"
                f"{'s' if len(self.users_created) != 1 else ''} created: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        return text

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n")
