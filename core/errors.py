"""The errors a job's work raises, so that whoever runs it can tell how it ended without
knowing which app did the work."""

from __future__ import annotations


class JobCancelled(Exception):
    """Raised between files or steps when the caller asked to stop; what was done stays."""


class JobInputError(Exception):
    """The job's own inputs are wrong (bad params, unreadable input); retrying will not help."""
