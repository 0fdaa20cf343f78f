"""manage.py import_dataset DIR: a folder written by export_dataset (or laid out alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captions.importers import ImportFileError, dataset_import
from core.cli import acting_user, add_common_arguments, check_report_path, finish, progress_bar


class Command(BaseCommand):
    help = (
        "Import seed_group.json, anonymous_captions_*.jsonl and interest_labels.jsonl"
        " from one folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path)
        add_common_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        user = acting_user(options, "curation.add_group")
        check_report_path(options)
        with progress_bar("data set") as progress:
            try:
                report = dataset_import(folder=options["folder"], user=user, progress=progress)
            except ImportFileError as exc:
                raise CommandError(str(exc)) from None
        finish(self, report, options)
