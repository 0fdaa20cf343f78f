"""The captioner's drafting command line: one caption line per item (a group in one prompt or
a single image), progress on stderr, unreadable items skipped, and SIGTERM stopping it with
what it drafted kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml.captioning.captioner import (
    Captioner,
    CaptionerConfig,
    GenerationSettings,
    build_captioner,
    save_captioner,
)
from ml.captioning.draft_cli import DraftItem, _main, draft_captions, read_draft_items
from ml.captioning.prompts import PROMPT_VERSION
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[3]
SHORT = ["--max-new-tokens", "6", "--seed", "0"]


@pytest.fixture(scope="module")
def captioner(tiny_backbone: Path) -> Captioner:
    return build_captioner(
        CaptionerConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE), seed=0
    )


@pytest.fixture(scope="module")
def saved_captioner(captioner: Captioner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_captioner(captioner, tmp_path_factory.mktemp("saved") / "captioner")


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        draw_image(i).save(path)
        paths.append(path)
    return paths


def _write_items(path: Path, items: list[tuple[str, list[Path]]]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "paths": [str(p) for p in ps]}) + "\n" for i, ps in items)
    )
    return path


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_command_writes_one_caption_line_per_item_with_progress_on_stderr(
    saved_captioner: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _images(tmp_path / "images", 3)
    items = _write_items(
        tmp_path / "items.jsonl", [("group-1", paths[:2]), ("image-7", [paths[2]])]
    )
    out = tmp_path / "out" / "drafts.jsonl"
    args = ["--checkpoint", str(saved_captioner), "--items", str(items), "--out", str(out)]
    assert _main([*args, *SHORT]) == 0
    rows = _rows(out)
    assert [row["id"] for row in rows] == ["group-1", "image-7"]
    assert [row["n_images"] for row in rows] == [2, 1]
    assert all(row["prompt_version"] == PROMPT_VERSION for row in rows)
    assert all(isinstance(row["caption"], str) for row in rows)
    captured = capsys.readouterr()
    assert "[1/2] drafted 1 of 2" in captured.err and "[2/2] drafted 2 of 2" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["drafted"] == 2 and summary["stopped"] is False


def test_an_item_with_an_unreadable_image_is_skipped_and_named(
    captioner: Captioner, tmp_path: Path
) -> None:
    good = _images(tmp_path / "images", 2)
    items = [
        DraftItem("a", (good[0],)),
        DraftItem("bad", (good[1], tmp_path / "nope.png")),
        DraftItem("b", (good[1],)),
    ]
    settings = GenerationSettings(max_new_tokens=4, seed=0)
    result = draft_captions(captioner, items, tmp_path / "drafts.jsonl", settings=settings)
    assert result.drafted == 2 and result.skipped == ["bad"]
    assert [row["id"] for row in _rows(tmp_path / "drafts.jsonl")] == ["a", "b"]


def test_a_stop_request_keeps_the_items_already_drafted(
    captioner: Captioner, tmp_path: Path
) -> None:
    paths = _images(tmp_path / "images", 3)
    calls = iter([False, False, True])
    result = draft_captions(
        captioner,
        [DraftItem(str(i), (p,)) for i, p in enumerate(paths)],
        tmp_path / "drafts.jsonl",
        settings=GenerationSettings(max_new_tokens=4, seed=0),
        should_stop=lambda: next(calls),
    )
    assert result.stopped and result.drafted == 2
    assert [row["id"] for row in _rows(tmp_path / "drafts.jsonl")] == ["0", "1"]


def test_items_need_an_id_and_a_non_empty_list_of_paths_with_unique_ids(tmp_path: Path) -> None:
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"id": "a", "paths": ["x.png"]}\n{"id": "b", "paths": []}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_draft_items(bad)
    bad.write_text('{"id": "a", "paths": ["x.png"]}\n{"id": "a", "paths": ["y.png"]}\n')
    with pytest.raises(ValueError, match="unique"):
        read_draft_items(bad)


def test_sigterm_stops_the_command_after_the_current_item_with_its_drafts_kept(
    saved_captioner: Path, tmp_path: Path
) -> None:
    (path,) = _images(tmp_path / "images", 1)
    total = 2000
    items = _write_items(tmp_path / "items.jsonl", [(str(i), [path]) for i in range(total)])
    out = tmp_path / "drafts.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    args = ["--checkpoint", str(saved_captioner), "--items", str(items), "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "ml.captioning.draft_cli", *args, "--max-new-tokens", "2"],
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
    assert summary["stopped"] is True and 1 <= summary["drafted"] < total
    assert len(_rows(out)) == summary["drafted"]
