"""manage.py export_dataset OUT [--include-drafts] [--split train|test]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captions.export import ExportError, ExportOptions, dataset_export
from core.cli import acting_user, add_common_arguments, progress_bar
from core.splits import Split


class Command(BaseCommand):
    help = "Export the caption data set in the released formats to a new folder or OUT.zip."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path)
        parser.add_argument("--include-drafts", action="store_true")
        parser.add_argument(
            "--split",
            action="append",
            choices=Split.values,
            help="Export only this split (repeat for several; default: all).",
        )
        add_common_arguments(parser, report=False)

    def handle(self, *args: Any, **options: Any) -> None:
        acting_user(options, "captions.view_caption")
        export_options = ExportOptions(
            include_drafts=options["include_drafts"],
            splits=tuple(options["split"] or Split.values),
        )
        with progress_bar("export") as progress:
            try:
                result = dataset_export(
                    out=options["out"], options=export_options, progress=progress
                )
            except ExportError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(f"Exported to {result.path}")
        self.stdout.write(json.dumps(result.manifest["counts"]))
