"""Shared pieces of the import/export commands: a progress bar on a terminal, the acting
user, and the JSON report file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from core.reports import ImportReport
from ml.callbacks import ProgressFn


def add_common_arguments(parser: CommandParser, *, report: bool = True) -> None:
    parser.add_argument(
        "--user", help="Act as this user (recorded as creator; must have the permission)."
    )
    if report:
        parser.add_argument("--report", type=Path, help="Write the JSON report to this file.")


def acting_user(options: dict[str, Any], permission: str) -> User | None:
    name = options.get("user")
    if not name:
        return None
    user = get_user_model().objects.filter(username=name, is_active=True).first()
    if user is None:
        raise CommandError(f"No active user named {name!r}.")
    if not user.has_perm(permission):
        raise CommandError(f"User {name!r} may not do this (needs {permission}).")
    return user


def check_report_path(options: dict[str, Any]) -> None:
    path: Path | None = options.get("report")
    if path is not None and not path.resolve().parent.is_dir():
        raise CommandError(f"The report's folder {path.parent} does not exist.")


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressFn]:
    """A tqdm bar when stderr is a terminal; silent otherwise (logs, CI, cron)."""
    if not sys.stderr.isatty():
        yield lambda done, total, message: None
        return
    bar = tqdm(desc=description, unit="item", dynamic_ncols=True)

    def update(done: int, total: int, message: str) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_postfix_str(message[-40:], refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def finish(command: Any, report: ImportReport, options: dict[str, Any]) -> None:
    command.stdout.write(report.summary())
    for row in report.rejected[:50]:
        command.stdout.write(f"  rejected {row['name']}: {row['reason']}")
    if len(report.rejected) > 50:
        command.stdout.write(f"  ... and {len(report.rejected) - 50} more (see --report)")
    path: Path | None = options.get("report")
    if path is not None:
        report.write(path)
        command.stdout.write(f"Report written to {path}")
