"""Paper-style figures of evaluation results, rendered to PNG or PDF bytes.

Uses matplotlib's Figure API, not pyplot, so rendering touches no global backend state and
works in web and worker processes alike.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Literal

from matplotlib.figure import Figure

from evaluation.stats import ABRow

ImageFormat = Literal["png", "pdf"]

# Reference, tie and baseline; a colour-blind-safe blue / grey / orange.
COLOURS = ("#2b6cb0", "#b8b8b8", "#dd8452")

# Segments narrower than this share get no label: the text would not fit inside them.
_MIN_LABELLED_SHARE = 0.06


def stacked_bar_chart(
    rows: Sequence[ABRow],
    path_or_buffer: str | PathLike[str] | BinaryIO | None = None,
    fmt: ImageFormat = "png",
    title: str | None = None,
) -> bytes:
    """Horizontal stacked bars of an A/B table: one bar per baseline, split into reference
    wins, ties and baseline wins as shares of its answers, each part labelled with its count.

    Returns the image bytes and also writes them to `path_or_buffer` when one is given.
    """
    if fmt not in ("png", "pdf"):
        raise ValueError(f"unsupported format {fmt!r}")
    reference = rows[0].reference if rows else "relsim"
    figure = Figure(figsize=(6.4, 0.5 * max(len(rows), 1) + 1.3), layout="constrained")
    axes = figure.add_subplot()

    # The first row is drawn at the top, as it reads in the table.
    positions = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    labels = (reference, "tie", "baseline")
    for part, (label, colour) in enumerate(zip(labels, COLOURS, strict=True)):
        shares = [(row.wins, row.ties, row.losses)[part] for row in rows]
        bars = axes.barh(
            positions,
            [share.share for share in shares],
            left=left,
            color=colour,
            label=label,
            height=0.7,
            edgecolor="white",
            linewidth=0.8,
        )
        axes.bar_label(
            bars,
            labels=[
                str(share.count) if share.share >= _MIN_LABELLED_SHARE else "" for share in shares
            ],
            label_type="center",
            fontsize=8,
            color="black" if part == 1 else "white",
        )
        left = [start + share.share for start, share in zip(left, shares, strict=True)]

    axes.set_yticks(positions, [f"vs {row.baseline}" for row in rows])
    axes.set_xlim(0, 1)
    axes.axvline(0.5, color="black", linewidth=0.6, linestyle=":")
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_xlabel("share of answers")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=9)
    if title:
        figure.suptitle(title)

    buffer = io.BytesIO()
    # No creation date in the PDF, so the same table renders to the same bytes.
    metadata = {"CreationDate": None} if fmt == "pdf" else None
    figure.savefig(buffer, format=fmt, metadata=metadata, dpi=150)
    data = buffer.getvalue()
    if isinstance(path_or_buffer, str | PathLike):
        Path(path_or_buffer).write_bytes(data)
    elif path_or_buffer is not None:
        path_or_buffer.write(data)
    return data
