"""A synthetic relational data set: procedurally drawn images whose relation (a ring, a stack,
an odd one out...) is known and independent of their shapes, colours and backgrounds.

It writes the released relsim formats (REFERENCE.md) so every importer, trainer and benchmark
can run on it without downloading anything. Held-out evaluation: the shape x colour table is
split along its diagonals (see `ml.synthetic.shapes.is_held_out`); objects in "test" images
only use pairings that never occur in "train" images, while every shape and every colour
still appears in both splits. Seed groups are built from train images only.

Command line: `python -m ml.synthetic.dataset OUT_DIR --per-relation 20 --size 224 --seed 0`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ml.callbacks import ProgressFn, StopFn, ThrottledProgress, never_stop, no_progress
from ml.data.captions import read_split
from ml.data.images import preprocess_image
from ml.synthetic.relations import RELATIONS, Relation
from ml.synthetic.shapes import SPLITS, Style, random_style

__all__ = [
    "RELATIONS",
    "Relation",
    "Style",
    "SyntheticDataset",
    "SyntheticStream",
    "draw_example",
    "generate_dataset",
    "read_labels",
    "read_relation_split",
    "relation_by_name",
    "render_relation",
]

TRAIN_CAPTIONS = "anonymous_captions_train.jsonl"
TEST_CAPTIONS = "anonymous_captions_test.jsonl"
SEED_GROUPS = "seed_group.json"
LABELS = "labels.json"
IMAGES = "images"


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a generated data set lives and how much of it there is."""

    out_dir: Path
    images_dir: Path
    train_captions: Path
    test_captions: Path
    seed_groups: Path
    labels: Path
    n_train: int
    n_test: int
    n_groups: int
    stopped: bool = False

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_test


@dataclass(frozen=True)
class ImageLabel:
    """Ground truth for one generated image, as stored in labels.json."""

    relation: str
    split: str
    url_link: str


def relation_by_name(name: str) -> Relation:
    """The relation called `name`; ValueError listing the known names otherwise."""
    for relation in RELATIONS:
        if relation.name == name:
            return relation
    known = ", ".join(r.name for r in RELATIONS)
    raise ValueError(f"unknown relation {name!r}; known: {known}")


def render_relation(relation: Relation, key: str, size: int, split: str) -> Image.Image:
    """One image of `relation` in `split`'s looks, fixed by the string `key`."""
    # String seeds are hashed with SHA-512 by `random`, so the stream is stable across runs.
    rng = random.Random(key)
    style = random_style(rng, split)
    return relation.draw(rng, size, style)


def draw_example(
    relation_name: str, *, seed: int, size: int = 224, split: str = "train"
) -> Image.Image:
    """One RGB image of `relation_name`, the same for the same arguments."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    relation = relation_by_name(relation_name)
    return render_relation(relation, f"example/{relation.name}/{split}/{seed}", size, split)


class SyntheticStream(Dataset[tuple[Image.Image, str, int]]):
    """`length` distinct images drawn on demand, item i showing relation i mod 10, as
    (image preprocessed to `image_size`, caption, i): a training set as large as the number of
    images a run looks at, so that no image is seen twice and nothing is stored. Drawn from
    their own seeds, never those of `generate_dataset`; picklable for DataLoader workers."""

    def __init__(
        self,
        length: int,
        *,
        image_size: int,
        seed: int = 0,
        draw_size: int | None = None,
        split: str = "train",
    ) -> None:
        if length < 1:
            raise ValueError("length must be at least 1")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.length = length
        self.image_size = image_size
        # Drawing at the training size is about 3x cheaper than drawing big and shrinking.
        self.draw_size = draw_size or image_size
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.length

    def relation(self, index: int) -> Relation:
        return RELATIONS[index % len(RELATIONS)]

    def captions(self) -> list[str]:
        """Every caption the stream can yield, in relation order."""
        return [relation.caption for relation in RELATIONS[: min(self.length, len(RELATIONS))]]

    def __getitem__(self, index: int) -> tuple[Image.Image, str, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        relation = self.relation(index)
        key = f"stream/{self.seed}/{self.split}/{index}"
        image = render_relation(relation, key, self.draw_size, self.split)
        return preprocess_image(image, self.image_size), relation.caption, index


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _group_sizes(count: int, group_size: int) -> list[int]:
    """Split `count` images into near-equal groups of 2..group_size (odd one left out)."""
    if count < 2:
        return []
    groups = math.ceil(count / group_size)
    while groups > 1 and count // groups < 2:
        groups -= 1
    sizes = [count // groups + (1 if k < count % groups else 0) for k in range(groups)]
    # Only group_size == 2 with an odd count overflows; leave that one image ungrouped.
    return [min(s, group_size) for s in sizes]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")


def generate_dataset(
    out_dir: Path,
    *,
    seed: int = 0,
    per_relation: int = 20,
    size: int = 224,
    test_fraction: float = 0.25,
    group_size: int = 4,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> SyntheticDataset:
    """Draw `per_relation` images of every relation into `out_dir` in the released formats.

    The last `round(per_relation * test_fraction)` images of each relation form the test
    split. Stopping early still writes consistent files for what was drawn so far.
    """
    if per_relation < 1:
        raise ValueError("per_relation must be at least 1")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError("test_fraction must lie in [0, 1]")
    if group_size < 2:
        raise ValueError("group_size must be at least 2")
    out_dir = Path(out_dir)
    images_dir = out_dir / IMAGES
    images_dir.mkdir(parents=True, exist_ok=True)

    n_test_each = round(per_relation * test_fraction)
    total = per_relation * len(RELATIONS)
    rows: dict[str, list[dict[str, str]]] = {"train": [], "test": []}
    labels: dict[str, dict[str, str]] = {}
    train_by_relation: dict[str, list[str]] = {r.name: [] for r in RELATIONS}
    done, stopped = 0, False
    # Drawing is quick: a report a second at most.
    report = ThrottledProgress(progress, every_s=1.0)
    report(0, total, "drawing synthetic images", force=True)

    for relation in RELATIONS:
        for n in range(per_relation):
            if should_stop():
                stopped = True
                break
            split = "test" if n >= per_relation - n_test_each else "train"
            data = _png_bytes(
                render_relation(relation, f"dataset/{seed}/{relation.name}/{n}", size, split)
            )
            digest = hashlib.md5(data).hexdigest()
            # A repeated image would collide on its hash; redraw with another stream instead.
            attempt = 0
            while digest in labels:
                attempt += 1
                key = f"dataset/{seed}/{relation.name}/{n}/{attempt}"
                data = _png_bytes(render_relation(relation, key, size, split))
                digest = hashlib.md5(data).hexdigest()
            (images_dir / f"{digest}.png").write_bytes(data)
            url = f"synthetic://{relation.name}/{n}"
            rows[split].append({"image_hash": digest, "url_link": url, "caption": relation.caption})
            labels[digest] = {"relation": relation.name, "split": split, "url_link": url}
            if split == "train":
                train_by_relation[relation.name].append(digest)
            done += 1
            report(done, total, f"drew {done} of {total} images")
        if stopped:
            break

    groups: list[dict[str, object]] = []
    for relation in RELATIONS:
        hashes = train_by_relation[relation.name]
        start = 0
        for group in _group_sizes(len(hashes), group_size):
            members = hashes[start : start + group]
            start += group
            groups.append(
                {
                    "index_group": len(groups),
                    "anonymous_caption": relation.caption,
                    "image_urls": [f"{IMAGES}/{h}.png" for h in members],
                }
            )

    dataset = SyntheticDataset(
        out_dir=out_dir,
        images_dir=images_dir,
        train_captions=out_dir / TRAIN_CAPTIONS,
        test_captions=out_dir / TEST_CAPTIONS,
        seed_groups=out_dir / SEED_GROUPS,
        labels=out_dir / LABELS,
        n_train=len(rows["train"]),
        n_test=len(rows["test"]),
        n_groups=len(groups),
        stopped=stopped,
    )
    _write_jsonl(dataset.train_captions, rows["train"])
    _write_jsonl(dataset.test_captions, rows["test"])
    dataset.seed_groups.write_text(json.dumps(groups, indent=1), encoding="utf-8")
    dataset.labels.write_text(json.dumps(labels, indent=1, sort_keys=True), encoding="utf-8")
    progress(done, total, "stopped early" if stopped else "done")
    return dataset


def read_labels(out_dir: Path) -> dict[str, ImageLabel]:
    """labels.json of a generated data set: image md5 -> relation, split and url."""
    raw = json.loads((Path(out_dir) / LABELS).read_text(encoding="utf-8"))
    return {
        digest: ImageLabel(entry["relation"], entry["split"], entry["url_link"])
        for digest, entry in raw.items()
    }


def read_relation_split(out_dir: Path, split: str) -> tuple[list[Image.Image], list[str]]:
    """A generated data set's `split` as RGB images and, in the same order, their relations."""
    labels = read_labels(out_dir)
    images, relations = [], []
    for record in read_split(out_dir, split):
        with Image.open(record.image_path) as image:
            images.append(image.convert("RGB"))
        relations.append(labels[record.image_hash].relation)
    return images, relations


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.synthetic.dataset", description="Draw the synthetic relational data set."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-relation", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--group-size", type=int, default=4)
    args = parser.parse_args(argv)

    def report(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)

    dataset = generate_dataset(
        args.out_dir,
        seed=args.seed,
        per_relation=args.per_relation,
        size=args.size,
        test_fraction=args.test_fraction,
        group_size=args.group_size,
        progress=report,
    )
    print(
        f"{dataset.n_train} train + {dataset.n_test} test images, "
        f"{dataset.n_groups} seed groups in {dataset.out_dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
