"""Fixtures for the ml tests: a tiny Qwen2.5-VL folder built once per session, small images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

# Nothing in the ml tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_IMAGE_SIZE = 56


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
    from ml.backbone import build_tiny_vlm

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
