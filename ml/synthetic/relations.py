"""The relations of the synthetic data set: one painter per relation, each laying out objects
whose looks, counts, positions and sizes are random while the relation itself stays fixed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

from ml.synthetic.shapes import INSCRIBED, Look, Style, draw_shape, paint_background

# Painting at twice the output size and shrinking gives smooth edges without a renderer.
SUPERSAMPLE = 2
_MARGIN = 0.06

Painter = Callable[[Image.Image, random.Random, Style], None]


@dataclass(frozen=True)
class Relation:
    """One relation: its name, its anonymous caption template and how to draw an instance."""

    name: str
    caption: str
    paint: Painter

    def draw(self, rng: random.Random, size: int, style: Style) -> Image.Image:
        """Draw one RGB image of `size` x `size` pixels showing this relation."""
        canvas = paint_background(style, size * SUPERSAMPLE)
        self.paint(canvas, rng, style)
        return canvas.resize((size, size), Image.Resampling.LANCZOS)


def _place(draw: ImageDraw.ImageDraw, look: Look, cx: float, cy: float, r: float) -> None:
    draw_shape(draw, look.shape, cx, cy, r, look.rgb)


def _scatter(
    rng: random.Random, count: int, radius: float, low: float, high: float, tries: int = 4000
) -> list[tuple[float, float]]:
    """Up to `count` centres in [low, high]^2 whose discs of `radius` do not touch."""
    gap = 2.3 * radius
    centres: list[tuple[float, float]] = []
    for _ in range(tries):
        if len(centres) == count:
            break
        x, y = rng.uniform(low, high), rng.uniform(low, high)
        if all(math.hypot(x - a, y - b) >= gap for a, b in centres):
            centres.append((x, y))
    return centres


def _fit_line(
    rng: random.Random,
    size: int,
    along: list[float],
    across: list[float],
    radii: list[float],
    max_radius: float,
) -> list[tuple[float, float, float]]:
    """Objects on a line tilted by up to 30 degrees, scaled and shifted to a random spot
    inside the canvas. Positions are in free units: `along` the line, `across` it."""
    angle = math.radians(rng.uniform(-30, 30))
    dx, dy = math.cos(angle), math.sin(angle)
    points = [(a * dx - c * dy, a * dy + c * dx) for a, c in zip(along, across, strict=True)]
    low_x = min(x - r for (x, _), r in zip(points, radii, strict=True))
    high_x = max(x + r for (x, _), r in zip(points, radii, strict=True))
    low_y = min(y - r for (_, y), r in zip(points, radii, strict=True))
    high_y = max(y + r for (_, y), r in zip(points, radii, strict=True))
    usable = size * (1 - 2 * _MARGIN)
    scale = min(
        usable * rng.uniform(0.75, 1.0) / max(high_x - low_x, high_y - low_y),
        max_radius / max(radii),
    )
    left = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - (high_x - low_x) * scale)
    top = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - (high_y - low_y) * scale)
    return [
        (left + (x - low_x) * scale, top + (y - low_y) * scale, r * scale)
        for (x, y), r in zip(points, radii, strict=True)
    ]


def paint_growing_row(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    look = style.look(rng)
    count = rng.randint(3, 6)
    growth = rng.uniform(2.2, 3.5)
    radii = [1 + (growth - 1) * k / (count - 1) for k in range(count)]
    spacing = rng.uniform(0.15, 0.5)
    along, position = [], 0.0
    for r in radii:
        along.append(position + r)
        position += 2 * r + spacing
    # Either the objects share a base line or their centres line up.
    align_base = rng.random() < 0.5
    across = [radii[-1] - r if align_base else 0.0 for r in radii]
    for x, y, r in _fit_line(rng, size, along, across, radii, size * 0.2):
        _place(draw, look, x, y, r)


def paint_ring(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    look = style.look(rng)
    count = rng.randint(5, 10)
    ring = size * rng.uniform(0.22, 0.34)
    radius = min(ring * math.sin(math.pi / count) * rng.uniform(0.55, 0.8), size * 0.09)
    reach = ring + radius + size * _MARGIN
    cx, cy = rng.uniform(reach, size - reach), rng.uniform(reach, size - reach)
    start = rng.uniform(0, 2 * math.pi)
    for k in range(count):
        angle = start + 2 * math.pi * k / count
        _place(draw, look, cx + ring * math.cos(angle), cy + ring * math.sin(angle), radius)


def paint_odd_one_out(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    common = style.look(rng)
    # The odd one always differs in shape, and half the time in colour as well.
    keep_colour = rng.random() < 0.5
    odd = style.look(
        rng,
        not_shapes=(common.shape,),
        not_colours=() if keep_colour else (common.colour,),
    )
    if keep_colour and odd.colour == common.colour:
        odd = Look(odd.shape, odd.colour, common.rgb)
    count = rng.randint(7, 14)
    radius = size * rng.uniform(0.045, 0.07)
    centres = _scatter(
        rng, count + 1, radius, size * _MARGIN + radius, size * (1 - _MARGIN) - radius
    )
    odd_index = rng.randrange(len(centres))
    for k, (x, y) in enumerate(centres):
        _place(draw, odd if k == odd_index else common, x, y, radius)


def paint_made_of(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    small = style.look(rng)
    outline = style.look(rng, not_shapes=(small.shape, "cross", "star")).shape
    big = size * rng.uniform(0.3, 0.42)
    reach = big + size * _MARGIN
    cx, cy = rng.uniform(reach, size - reach), rng.uniform(reach, size - reach)
    mask = Image.new("L", canvas.size, 0)
    draw_shape(ImageDraw.Draw(mask), outline, cx, cy, big, 255)
    radius = size * rng.uniform(0.022, 0.03)
    step = radius * rng.uniform(2.3, 2.8)
    draw = ImageDraw.Draw(canvas)
    offset_x, offset_y = rng.uniform(0, step), rng.uniform(0, step)
    y = offset_y
    while y < size:
        x = offset_x
        while x < size:
            if mask.getpixel((int(x), int(y))) == 255:
                _place(draw, small, x, y, radius)
            x += step
        y += step


def paint_mirror_symmetry(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    count = rng.randint(3, 5)
    looks = [style.look(rng) for _ in range(rng.randint(1, 3))]
    axis = size / 2
    placed: list[tuple[float, float, float]] = []
    for _ in range(400):
        if len(placed) == count:
            break
        radius = size * rng.uniform(0.05, 0.12)
        x = rng.uniform(size * _MARGIN + radius, axis - radius * 1.2)
        y = rng.uniform(size * _MARGIN + radius, size * (1 - _MARGIN) - radius)
        if all(math.hypot(x - a, y - b) > (radius + c) * 1.1 for a, b, c in placed):
            placed.append((x, y, radius))
            _place(draw, rng.choice(looks), x, y, radius)
    mirrored = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas.paste(layer, (0, 0), layer)
    canvas.paste(mirrored, (0, 0), mirrored)


def paint_inside(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    containers = tuple(s for s, f in INSCRIBED.items() if f >= 0.5)
    outer = style.look(rng, shapes=containers)
    radius = size * rng.uniform(0.22, 0.38)
    reach = radius * 1.1 + size * _MARGIN
    cx, cy = rng.uniform(reach, size - reach), rng.uniform(reach, size - reach)
    _place(draw, outer, cx, cy, radius)
    inner = style.look(rng, not_shapes=(outer.shape,), not_colours=(outer.colour,))
    inner_radius = radius * INSCRIBED[outer.shape] * rng.uniform(0.45, 0.7)
    _place(draw, inner, cx, cy, inner_radius)


def paint_stack(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    shape = style.look(rng).shape
    count = rng.randint(3, 6)
    usable = size * (1 - 2 * _MARGIN)
    radius = min(usable / (2 * count) * rng.uniform(0.7, 1.0), size * 0.12)
    height = 2 * radius * count
    cx = rng.uniform(size * _MARGIN + radius, size * (1 - _MARGIN) - radius)
    bottom = rng.uniform(size * _MARGIN + height, size * (1 - _MARGIN))
    # Same shape throughout; the colour may change from layer to layer.
    looks = [style.look(rng, shapes=(shape,))]
    for _ in range(count - 1):
        looks.append(looks[-1] if rng.random() < 0.5 else style.look(rng, shapes=(shape,)))
    for k, look in enumerate(looks):
        _place(draw, look, cx, bottom - radius - 2 * radius * k, radius)


def paint_grid_gap(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    look = style.look(rng)
    rows, cols = rng.randint(3, 5), rng.randint(3, 5)
    usable = size * (1 - 2 * _MARGIN)
    cell = usable / max(rows, cols) * rng.uniform(0.7, 1.0)
    radius = cell * rng.uniform(0.28, 0.4)
    left = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - cols * cell)
    top = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - rows * cell)
    # A missing corner reads as a ragged edge rather than a gap, so corners never go missing.
    corners = {0, cols - 1, (rows - 1) * cols, rows * cols - 1}
    gap = rng.choice([k for k in range(rows * cols) if k not in corners])
    for k in range(rows * cols):
        if k != gap:
            row, col = divmod(k, cols)
            _place(draw, look, left + (col + 0.5) * cell, top + (row + 0.5) * cell, radius)


def paint_count_staircase(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    look = style.look(rng)
    first = rng.randint(1, 2)
    rows = rng.randint(3, 5)
    widest = first + rows - 1
    usable = size * (1 - 2 * _MARGIN)
    cell = usable / max(widest, rows) * rng.uniform(0.75, 1.0)
    radius = cell * rng.uniform(0.3, 0.4)
    left = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - widest * cell)
    top = rng.uniform(size * _MARGIN, size * (1 - _MARGIN) - rows * cell)
    centred = rng.random() < 0.5
    for row in range(rows):
        count = first + row
        shift = (widest - count) * cell / 2 if centred else 0.0
        for col in range(count):
            _place(draw, look, left + shift + (col + 0.5) * cell, top + (row + 0.5) * cell, radius)


def paint_alternating_row(canvas: Image.Image, rng: random.Random, style: Style) -> None:
    size = canvas.width
    draw = ImageDraw.Draw(canvas)
    first = style.look(rng)
    second = style.look(rng, not_shapes=(first.shape,), not_colours=(first.colour,))
    count = rng.randint(5, 7)
    radius = rng.uniform(0.36, 0.46)
    along = [k + 0.5 for k in range(count)]
    placed = _fit_line(rng, size, along, [0.0] * count, [radius] * count, size * 0.09)
    for k, (x, y, r) in enumerate(placed):
        _place(draw, first if k % 2 == 0 else second, x, y, r)


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "growing_row",
        "A row of {Object}s growing steadily in size from left to right.",
        paint_growing_row,
    ),
    Relation(
        "ring",
        "{Object}s spaced evenly around a circle, leaving its centre empty.",
        paint_ring,
    ),
    Relation(
        "odd_one_out",
        "A crowd of identical {Object}s with a single {Object} that does not belong.",
        paint_odd_one_out,
    ),
    Relation(
        "made_of",
        "A large {Shape} built entirely out of many small {Object}s.",
        paint_made_of,
    ),
    Relation(
        "mirror_symmetry",
        "A scattered arrangement of {Object}s that is mirrored exactly across a vertical line.",
        paint_mirror_symmetry,
    ),
    Relation(
        "inside",
        "A small {Object} sitting right in the middle of a larger {Object}.",
        paint_inside,
    ),
    Relation(
        "stack",
        "A tower of {Object}s stacked one directly on top of another.",
        paint_stack,
    ),
    Relation(
        "grid_gap",
        "A tidy grid of {Object}s with exactly one place left empty.",
        paint_grid_gap,
    ),
    Relation(
        "count_staircase",
        "Rows of {Object}s, each row holding one more {Object} than the row above it.",
        paint_count_staircase,
    ),
    Relation(
        "alternating_row",
        "A line that alternates between a {Object} and a {Object}, again and again.",
        paint_alternating_row,
    ),
)
