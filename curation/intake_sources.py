"""Safe reading of import sources (a folder, a zip, a tar, a single file), never extracting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from curation.intake_types import DEFAULT_LIMITS, IntakeLimits, SkippedEntry, SourceFile


def iter_source(
    path: Path, *, limits: IntakeLimits = DEFAULT_LIMITS
) -> Iterator[SourceFile | SkippedEntry]:
    """Yield every candidate file of a source, or why an entry was skipped."""
    raise NotImplementedError
