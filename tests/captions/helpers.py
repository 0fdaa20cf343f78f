"""Builders of released-format files for import tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_images(folder: Path, png_factory: Any, names: dict[str, int]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, seed in names.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_factory(seed))
        paths[name] = path
    return paths


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
