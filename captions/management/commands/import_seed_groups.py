"""manage.py import_seed_groups FILE --images-root DIR: the released seed_group.json, its
images read from disk as the release's downloader saved them (or fetched with --fetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captions.importers import ROWS_REJECTED_EXIT, ImportFileError, seed_groups_import
from core.cli import acting_user, add_common_arguments, check_report_path, finish, progress_bar
from core.splits import Split


class Command(BaseCommand):
    help = "Import groups and their approved captions from a seed_group.json file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--images-root",
            type=Path,
            help="Folder of the images (default: the file's folder). Relative paths and "
            "file:// URLs must lie under it; an http(s) URL is found there as the release's "
            "downloader saved it: group_<i>/<md5 of the URL>.png or group_<i>/<its file "
            "name>.png (i = the row's 0-based position), or the same names in the folder itself.",
        )
        parser.add_argument(
            "--fetch",
            action="store_true",
            help="Fetch http(s) URLs whose file is not under the images root.",
        )
        parser.add_argument("--split", choices=Split.values, default=Split.TRAIN)
        add_common_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        user = acting_user(options, "curation.add_group")
        check_report_path(options)
        root = options["images_root"] or options["file"].parent
        if not root.is_dir():
            raise CommandError(f"The images root {root} is not a folder.")
        with progress_bar("groups") as progress:
            try:
                result = seed_groups_import(
                    file=options["file"],
                    images_root=root,
                    fetch=options["fetch"],
                    split=options["split"],
                    user=user,
                    progress=progress,
                )
            except ImportFileError as exc:
                raise CommandError(str(exc)) from None
        finish(self, result.report, options)
        if result.report.rejected:
            raise CommandError(
                f"{len(result.report.rejected)} rows rejected; the others were imported.",
                returncode=ROWS_REJECTED_EXIT,
            )
