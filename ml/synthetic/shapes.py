"""Shapes, colours and backgrounds for the synthetic relational data set, and the rule that
keeps some shape x colour combinations out of training so a test split holds unseen looks."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "star",
    "cross",
)

COLOURS: dict[str, RGB] = {
    "red": (214, 40, 40),
    "orange": (245, 130, 20),
    "yellow": (240, 205, 30),
    "green": (46, 160, 67),
    "teal": (20, 150, 150),
    "blue": (40, 90, 220),
    "purple": (125, 60, 190),
    "pink": (235, 100, 170),
    "brown": (130, 80, 40),
    "grey": (120, 120, 130),
}

# Low-saturation backgrounds (light and dark) so every object colour stands out on some of them.
BACKGROUNDS: tuple[RGB, ...] = (
    (250, 250, 248),
    (236, 232, 220),
    (215, 222, 230),
    (225, 236, 222),
    (240, 226, 230),
    (30, 30, 34),
    (24, 36, 60),
    (48, 40, 36),
    (58, 62, 66),
)

# How far inside its nominal radius a shape still covers the whole disc: used to fit one
# shape inside another.
INSCRIBED: dict[str, float] = {
    "circle": 1.0,
    "square": 0.8,
    "triangle": 0.5,
    "diamond": 0.7,
    "pentagon": 0.8,
    "hexagon": 0.86,
    "star": 0.4,
    "cross": 0.33,
}

# Every fourth diagonal of the shape x colour table is held out for the test split. Each
# shape and each colour still occurs in both splits, only never in the same pairing.
_HELD_OUT_EVERY = 4

SPLITS = ("train", "test")
_MIN_CONTRAST = 110.0


def is_held_out(shape: str, colour: str) -> bool:
    """True when the (shape, colour) pairing belongs to the test split only."""
    shape_index = SHAPES.index(shape)
    colour_index = list(COLOURS).index(colour)
    return (shape_index + colour_index) % _HELD_OUT_EVERY == 0


def combinations_for(split: str) -> tuple[tuple[str, str], ...]:
    """The (shape, colour) pairings that objects in images of `split` may use."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    want_held_out = split == "test"
    return tuple(
        (shape, colour)
        for shape in SHAPES
        for colour in COLOURS
        if is_held_out(shape, colour) == want_held_out
    )


@dataclass(frozen=True)
class Look:
    """What one object looks like: its shape and its fill colour."""

    shape: str
    colour: str
    rgb: RGB


@dataclass(frozen=True)
class Style:
    """The attributes of one image, drawn independently of its relation."""

    background: RGB
    background_end: RGB
    gradient_vertical: bool
    combinations: tuple[tuple[str, str], ...]

    def look(
        self,
        rng: random.Random,
        *,
        not_shapes: tuple[str, ...] = (),
        not_colours: tuple[str, ...] = (),
        shapes: tuple[str, ...] | None = None,
    ) -> Look:
        """A random allowed look, avoiding the given shapes and colours when possible."""
        pool = [
            (s, c)
            for s, c in self.combinations
            if s not in not_shapes and c not in not_colours and (shapes is None or s in shapes)
        ]
        if not pool:
            pool = [(s, c) for s, c in self.combinations if shapes is None or s in shapes]
        if not pool:
            pool = list(self.combinations)
        shape, colour = rng.choice(pool)
        base = COLOURS[colour]
        # Small jitter so no two images share exact pixel values for the same colour name.
        rgb = tuple(min(255, max(0, v + rng.randint(-12, 12))) for v in base)
        return Look(shape, colour, (rgb[0], rgb[1], rgb[2]))


def _distance(a: RGB, b: RGB) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))


def random_style(rng: random.Random, split: str) -> Style:
    """Draw a background and the object looks it allows (colours that contrast with it)."""
    allowed = combinations_for(split)
    background = rng.choice(BACKGROUNDS)
    shift = rng.randint(-25, 25)
    background_end = (
        min(255, max(0, background[0] + shift)),
        min(255, max(0, background[1] + shift)),
        min(255, max(0, background[2] + shift)),
    )
    visible = tuple(
        (s, c)
        for s, c in allowed
        if min(_distance(COLOURS[c], background), _distance(COLOURS[c], background_end))
        >= _MIN_CONTRAST
    )
    return Style(
        background=background,
        background_end=background_end,
        gradient_vertical=rng.random() < 0.5,
        combinations=visible or allowed,
    )


def paint_background(style: Style, size: int) -> Image.Image:
    """A square RGB canvas filled with the style's two-colour gradient."""
    start = Image.new("RGB", (size, size), style.background)
    end = Image.new("RGB", (size, size), style.background_end)
    ramp = Image.linear_gradient("L").resize((size, size))
    if not style.gradient_vertical:
        ramp = ramp.transpose(Image.Transpose.ROTATE_90)
    return Image.composite(end, start, ramp)


def _polygon(cx: float, cy: float, r: float, sides: int, turn: float) -> list[tuple[float, float]]:
    return [
        (
            cx + r * math.cos(turn + 2 * math.pi * k / sides),
            cy + r * math.sin(turn + 2 * math.pi * k / sides),
        )
        for k in range(sides)
    ]


def shape_outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The polygon of `shape` centred on (cx, cy) with nominal radius r (circles excluded)."""
    up = -math.pi / 2
    if shape == "square":
        h = r * 0.8
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        # Shifted down so the triangle's visual centre sits on (cx, cy).
        return _polygon(cx, cy + r * 0.12, r * 1.1, 3, up)
    if shape == "diamond":
        return _polygon(cx, cy, r, 4, up)
    if shape == "pentagon":
        return _polygon(cx, cy, r, 5, up)
    if shape == "hexagon":
        return _polygon(cx, cy, r, 6, 0.0)
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.42
            angle = up + math.pi * k / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        a, w = r * 0.9, r * 0.32
        return [
            (cx - w, cy - a),
            (cx + w, cy - a),
            (cx + w, cy - w),
            (cx + a, cy - w),
            (cx + a, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + a),
            (cx - w, cy + a),
            (cx - w, cy + w),
            (cx - a, cy + w),
            (cx - a, cy - w),
            (cx - w, cy - w),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: RGB | int,
) -> None:
    """Draw one filled shape of nominal radius r centred on (cx, cy)."""
    if shape == "circle":
        draw.ellipse((cx - r * 0.92, cy - r * 0.92, cx + r * 0.92, cy + r * 0.92), fill=fill)
    else:
        draw.polygon(shape_outline(shape, cx, cy, r), fill=fill)
