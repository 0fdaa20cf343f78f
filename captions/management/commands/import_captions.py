"""manage.py import_captions FILE.jsonl --images DIR: released anonymous_captions_*.jsonl,
or random_images_*.jsonl (lines with no caption: images join the pool uncaptioned)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captions.importers import ROWS_REJECTED_EXIT, ImportFileError, captions_import
from core.cli import acting_user, add_common_arguments, check_report_path, finish, progress_bar
from core.splits import Split


class Command(BaseCommand):
    help = (
        "Import single-image anonymous captions (JSONL) with their <image_hash>.png images; "
        "lines with no caption add their image to the pool uncaptioned."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--images", type=Path, help="Folder of <image_hash>.png (default: beside the file)."
        )
        parser.add_argument("--split", choices=Split.values, help="Default: from the file name.")
        add_common_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        user = acting_user(options, "captions.add_caption")
        check_report_path(options)
        images = options["images"] or options["file"].parent
        if not images.is_dir():
            raise CommandError(f"The images folder {images} is not a folder.")
        with progress_bar("captions") as progress:
            try:
                report = captions_import(
                    file=options["file"],
                    images_dir=images,
                    split=options["split"],
                    user=user,
                    progress=progress,
                )
            except ImportFileError as exc:
                raise CommandError(str(exc)) from None
        finish(self, report, options)
        if report.rejected:
            raise CommandError(
                f"{len(report.rejected)} lines rejected; the others were imported.",
                returncode=ROWS_REJECTED_EXIT,
            )
