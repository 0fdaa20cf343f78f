"""Unstructured clutter: the negatives of the synthetic relational set. Objects at random
places and sizes, on the same backgrounds and with the same split's shape x colour pairings
as the relational images, so that neither background nor look tells clutter from a relation;
only the arrangement does."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from ml.synthetic.relations import SUPERSAMPLE
from ml.synthetic.shapes import SPLITS, draw_shape, paint_background, random_style


def draw_clutter(key: str, size: int, split: str = "train") -> Image.Image:
    """3 to 12 objects of 2 to 5 looks scattered at random; the same for the same `key`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    rng = random.Random(f"clutter/{split}/{key}")
    style = random_style(rng, split)
    # Painted big and shrunk, exactly as the relation painters are: a difference in
    # resampling would be a cue that has nothing to do with arrangement.
    big = size * SUPERSAMPLE
    canvas = paint_background(style, big)
    draw = ImageDraw.Draw(canvas)
    looks = [style.look(rng) for _ in range(rng.randint(2, 5))]
    for _ in range(rng.randint(3, 12)):
        radius = rng.uniform(0.04, 0.14) * big
        x = rng.uniform(radius, big - radius)
        y = rng.uniform(radius, big - radius)
        look = rng.choice(looks)
        draw_shape(draw, look.shape, x, y, radius, look.rgb)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)
