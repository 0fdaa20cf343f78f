"""manage.py relsim_score (A B | --pairs FILE.csv) [--model ID | --checkpoint FOLDER]: relsim
as a metric - the similarity of image file pairs, as CSV (a,b,score) on stdout."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import progress_bar
from curation.intake import ImageRejected, normalise_image
from curation.services import intake_limits
from ml.callbacks import ProgressFn
from training.models import TrainedModel

BATCH = 16


# (a, b) as written, for the output, and the files they name.
Pair = tuple[str, str, Path, Path]


def read_pairs(path: Path) -> list[Pair]:
    """Pairs from a CSV with a header naming columns a and b; relative paths are taken from
    the CSV's own folder."""
    if not path.is_file():
        raise CommandError(f"The pairs file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read the pairs file {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip() for name in reader.fieldnames or []]
    if "a" not in columns or "b" not in columns:
        raise CommandError(
            f"{path} needs a header line naming the columns a and b (found {columns or 'none'})."
        )
    reader.fieldnames = columns
    pairs = []
    for line, row in enumerate(reader, start=2):
        a, b = (row.get("a") or "").strip(), (row.get("b") or "").strip()
        if not a or not b:
            raise CommandError(f"{path}, line {line}: both a and b need a file path.")
        pairs.append((a, b, path.parent / a, path.parent / b))
    if not pairs:
        raise CommandError(f"{path} holds no pairs.")
    return pairs


def _load_image(path: Path) -> Any:
    """A file checked and normalised as an import would be (so a pool image scores the same
    from its file as from the index), as a PIL image."""
    from PIL import Image as PILImage

    try:
        normalised = normalise_image(path.read_bytes(), limits=intake_limits())
    except ImageRejected as exc:
        raise CommandError(f"{path} is not a usable image: {exc.reason}") from None
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from None
    with PILImage.open(io.BytesIO(normalised.png)) as opened:
        return opened.convert("RGB")


@contextmanager
def _bar(total: int, batch: int) -> Iterator[ProgressFn]:
    """A progress bar on stderr when there is more than one batch to embed."""
    if total <= batch:
        yield lambda done, total, message: None
        return
    with progress_bar("embedding") as progress:
        yield progress


class Command(BaseCommand):
    help = (
        "Score image pairs with relsim (dot product of unit embeddings): two image files, or "
        "--pairs FILE.csv with a header and columns a,b. Prints CSV a,b,score."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("images", nargs="*", type=Path, help="Two image files.")
        parser.add_argument(
            "--pairs",
            type=Path,
            help="CSV of pairs: a header line, then columns a and b holding image paths "
            "(relative ones are read from the CSV's folder).",
        )
        model = parser.add_mutually_exclusive_group()
        model.add_argument("--model", type=int, help="A relsim model's id (default: the active).")
        model.add_argument("--checkpoint", type=Path, help="A relsim checkpoint folder.")
        parser.add_argument("--batch-size", type=int, default=BATCH)

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = self._pairs(options)
        folder, base_model, label = self._checkpoint(options)
        unique = list(dict.fromkeys(path for *_, a, b in pairs for path in (a, b)))
        # Missing files are found before the model loads; images are decoded a batch at a
        # time, so that many pairs never hold every picture in memory at once.
        for path in unique:
            if not path.is_file():
                raise CommandError(f"No such image file: {path}")
        import torch

        from ml.relsim import load_checkpoint
        from ml.search.embed import default_device

        dtype, device = default_device()
        try:
            model = load_checkpoint(folder, base_model=base_model, dtype=dtype, device=device)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise CommandError(f"Cannot load the relsim model {label}: {exc}") from None
        batch = max(1, options["batch_size"])
        chunks = []
        with _bar(len(unique), batch) as progress:
            for start in range(0, len(unique), batch):
                pictures = [_load_image(path) for path in unique[start : start + batch]]
                chunks.append(model.embed_images(pictures, batch_size=batch))
                done = start + len(pictures)
                progress(done, len(unique), f"{done} images")
        vectors = torch.cat(chunks)
        row = {path: n for n, path in enumerate(unique)}
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(["a", "b", "score"])
        for name_a, name_b, a, b in pairs:
            score = float(vectors[row[a]] @ vectors[row[b]])
            writer.writerow([name_a, name_b, f"{score:.6f}"])

    def _pairs(self, options: dict[str, Any]) -> list[Pair]:
        images: list[Path] = options["images"]
        if options["pairs"] is not None:
            if images:
                raise CommandError("Give either two image files or --pairs FILE.csv, not both.")
            return read_pairs(options["pairs"])
        if len(images) != 2:
            raise CommandError("Give two image files, or --pairs FILE.csv.")
        return [(str(images[0]), str(images[1]), images[0], images[1])]

    def _checkpoint(self, options: dict[str, Any]) -> tuple[Path, str | None, str]:
        """(checkpoint folder, backbone override, how to name it in errors)."""
        if options["checkpoint"] is not None:
            folder: Path = options["checkpoint"]
            if not folder.is_dir():
                raise CommandError(f"The checkpoint folder {folder} does not exist.")
            return folder, None, str(folder)
        models = TrainedModel.objects.filter(kind=TrainedModel.Kind.RELSIM)
        if options["model"] is not None:
            record = models.filter(pk=options["model"]).first()
            if record is None:
                raise CommandError(f"There is no relsim model #{options['model']}.")
        else:
            record = models.filter(is_active=True).first()
            if record is None:
                raise CommandError(
                    "There is no active relsim model: give --model ID or --checkpoint FOLDER."
                )
        if not Path(record.folder).is_dir():
            raise CommandError(f"The folder of {record} is missing: {record.folder}")
        return Path(record.folder), record.base_vlm or None, str(record)
