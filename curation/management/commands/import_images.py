"""manage.py import_images PATH: a folder (recursive), a .zip or a .tar(.gz) of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import acting_user, add_common_arguments, check_report_path, finish, progress_bar
from curation.intake import SourceError
from curation.services import images_import


class Command(BaseCommand):
    help = "Import images from a folder, a .zip or a .tar(.gz); each file is checked."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        add_common_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        user = acting_user(options, "curation.add_image")
        check_report_path(options)
        with progress_bar("images") as progress:
            try:
                report = images_import(source=options["path"], user=user, progress=progress)
            except SourceError as exc:
                raise CommandError(str(exc)) from None
        finish(self, report, options)
