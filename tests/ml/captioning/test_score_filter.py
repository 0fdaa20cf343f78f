"""The filter's scoring command line: scores per image id as JSON lines, progress on stderr,
unreadable images skipped, and SIGTERM stopping it with what it scored kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml.captioning.interest_filter import (
    FilterConfig,
    InterestFilter,
    build_filter,
    save_filter,
    score_images,
)
from ml.captioning.score_filter import _main, read_items, score_files
from ml.data.images import load_image
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def interest_filter(tiny_backbone: Path) -> InterestFilter:
    return build_filter(FilterConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE))


@pytest.fixture(scope="module")
def saved_filter(interest_filter: InterestFilter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_filter(interest_filter, tmp_path_factory.mktemp("saved") / "filter")


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        draw_image(i).save(path)
        paths.append(path)
    return paths


def _write_items(path: Path, items: list[tuple[str, Path]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "path": str(p)}) + "\n" for i, p in items))
    return path


def _read_scores(path: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["id"]: row["score"] for row in rows}


def test_the_command_writes_one_score_per_item_with_progress_on_stderr(
    saved_filter: Path,
    interest_filter: InterestFilter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _images(tmp_path / "images", 5)
    items = _write_items(tmp_path / "items.jsonl", [(f"img{i}", p) for i, p in enumerate(paths)])
    out = tmp_path / "out" / "scores.jsonl"
    args = ["--checkpoint", str(saved_filter), "--items", str(items), "--out", str(out)]
    assert _main([*args, "--batch-size", "2"]) == 0
    scores = _read_scores(out)
    assert list(scores) == [f"img{i}" for i in range(5)]
    expected = score_images(
        interest_filter, [load_image(p, TINY_IMAGE_SIZE) for p in paths], preprocessed=True
    )
    assert list(scores.values()) == pytest.approx(expected, abs=1e-5)
    captured = capsys.readouterr()
    assert "[2/5] scored 2 of 5 images" in captured.err
    assert "[5/5] scored 5 of 5 images" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["scored"] == 5 and summary["stopped"] is False


def test_an_unreadable_image_is_skipped_and_named(
    interest_filter: InterestFilter, tmp_path: Path
) -> None:
    good = _images(tmp_path / "images", 2)
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not a png")
    items = [("a", good[0]), ("bad", broken), ("missing", tmp_path / "nope.png"), ("b", good[1])]
    result = score_files(interest_filter, items, tmp_path / "scores.jsonl", batch_size=3)
    assert result.scored == 2 and result.skipped == ["bad", "missing"]
    assert list(_read_scores(tmp_path / "scores.jsonl")) == ["a", "b"]


def test_a_stop_request_keeps_the_batches_already_scored(
    interest_filter: InterestFilter, tmp_path: Path
) -> None:
    paths = _images(tmp_path / "images", 6)
    calls = iter([False, False, True])
    result = score_files(
        interest_filter,
        [(str(i), p) for i, p in enumerate(paths)],
        tmp_path / "scores.jsonl",
        batch_size=2,
        should_stop=lambda: next(calls),
    )
    assert result.stopped and result.scored == 4
    assert list(_read_scores(tmp_path / "scores.jsonl")) == ["0", "1", "2", "3"]


def test_items_must_be_id_and_path_objects_with_unique_ids(
    interest_filter: InterestFilter, tmp_path: Path
) -> None:
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"id": "a", "path": "x.png"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_items(bad)
    with pytest.raises(ValueError, match="unique"):
        score_files(interest_filter, [("a", "x.png"), ("a", "y.png")], tmp_path / "s.jsonl")


def test_sigterm_stops_the_command_cleanly_with_its_scores_kept(
    saved_filter: Path, tmp_path: Path
) -> None:
    (path,) = _images(tmp_path / "images", 1)
    total = 5000
    items = _write_items(tmp_path / "items.jsonl", [(str(i), path) for i in range(total)])
    out = tmp_path / "scores.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    args = ["--checkpoint", str(saved_filter), "--items", str(items), "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "ml.captioning.score_filter", *args, "--batch-size", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        for line in process.stderr:
            if line.startswith("[1/"):
                break
            assert time.monotonic() < deadline, "no progress line"
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped"] is True and 1 <= summary["scored"] < total
    assert len(_read_scores(out)) == summary["scored"]
