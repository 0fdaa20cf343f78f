"""Fixtures for the ml tests: tiny Qwen2.5-VL folders built once per session, small images, and
a two-relation synthetic set for the tests that training learns."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

# Nothing in the ml tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_IMAGE_SIZE = 56


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are skipped where there is no CUDA device (run them with -m gpu)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module: the CPU is shared, and several threads per process
    stall each other (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ml.vlm.backbone import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), seed=0)


def draw_image(index: int, size: tuple[int, int] = (70, 56)) -> Image.Image:
    """A small distinct picture: a coloured square placed according to `index`."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x = (index * 13) % (size[0] - 20)
    y = (index * 7) % (size[1] - 20)
    colour = ((index * 70) % 256, (index * 40 + 90) % 256, (index * 110 + 30) % 256)
    draw.rectangle((x, y, x + 18, y + 18), fill=colour)
    return image


@pytest.fixture
def images() -> list[Image.Image]:
    return [draw_image(i) for i in range(4)]


# Two relations whose images differ in how many objects they hold: a tiny model learns to tell
# them apart from a few hundred images in seconds, on images it has never seen.
TWO_RELATIONS = ("odd_one_out", "inside")


@dataclass(frozen=True)
class TwoRelations:
    """Freshly drawn training images of two relations (an export-format caption file) and
    held-out images of the same relations in shape x colour pairings training never shows."""

    train_file: Path
    held_out: list[tuple[Image.Image, str]]

    @property
    def captions(self) -> list[str]:
        return sorted({caption for _, caption in self.held_out})

    def labels(self) -> torch.Tensor:
        return torch.tensor([self.captions.index(caption) for _, caption in self.held_out])


def _two_relation_images(
    seed: int, split: str, count: int, size: int
) -> list[tuple[Image.Image, str]]:
    from ml.synthetic import RELATIONS, SyntheticStream

    stream = SyntheticStream(10**6, image_size=size, seed=seed, split=split)
    chosen = [i for i, relation in enumerate(RELATIONS) if relation.name in TWO_RELATIONS]
    # Stream item i shows relation i mod 10.
    return [stream[10 * n + r][:2] for n in range(count // len(chosen)) for r in chosen]


@pytest.fixture(scope="session")
def two_relations(tmp_path_factory: pytest.TempPathFactory) -> TwoRelations:
    folder = tmp_path_factory.mktemp("two_relations")
    (folder / "images").mkdir()
    rows = []
    for image, caption in _two_relation_images(0, "train", 800, TINY_IMAGE_SIZE):
        digest = hashlib.md5(image.tobytes()).hexdigest()
        image.save(folder / "images" / f"{digest}.png")
        rows.append({"image_hash": digest, "url_link": "", "caption": caption})
    train_file = folder / "train.jsonl"
    train_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return TwoRelations(train_file, _two_relation_images(1, "test", 40, TINY_IMAGE_SIZE))


@pytest.fixture(scope="session")
def learnable_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL with fan-in scaled init, which learns from few steps."""
    from ml.vlm import build_tiny_vlm

    return build_tiny_vlm(
        tmp_path_factory.mktemp("learnable_vlm"),
        seed=0,
        max_image_size=TINY_IMAGE_SIZE,
        init="fan-in",
    )
