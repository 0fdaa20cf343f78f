"""Baseline indexes from `python -m ml.baselines.embed --baseline NAME` with the folders it
needs, written in the same index format as relsim's (ml.search.embed)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.baselines.attributes import ColourHistogram
from ml.baselines.embed import _main, embed_baseline
from ml.baselines.registry import BASELINE_NAMES
from ml.search.baseline_models import BASELINE_MODELS, baseline_models
from ml.search.embed import image_files
from ml.search.index import load_index
from tests.ml.conftest import draw_image


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        draw_image(i).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """The command line installs its own SIGTERM/SIGINT handlers; the test process keeps its."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_every_registry_baseline_but_relsim_says_which_folders_it_loads() -> None:
    assert set(BASELINE_MODELS) == set(BASELINE_NAMES) - {"relsim"}
    assert baseline_models("histogram") == ()
    with pytest.raises(ValueError, match="embed relsim from its checkpoint"):
        baseline_models("relsim")


@pytest.mark.usefixtures("keep_signal_handlers")
def test_the_command_line_writes_a_weight_free_baseline_index(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    assert _main(["--baseline", "histogram", "--images", str(images), "--out", str(out)]) == 0
    index = load_index(out)
    assert index.ids == [f"img{i:02d}" for i in range(5)]
    rows = index.vectors(list(range(index.n)))
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-2)
    direct = ColourHistogram().embed([Image.open(path) for _, path in image_files(images)])
    assert np.allclose(rows, direct, atol=2e-3)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["baseline"], meta["models"], meta["count"]) == ("histogram", {}, 5)
    assert "[5/5] embedded 5/5 images" in capsys.readouterr().err


@pytest.mark.usefixtures("keep_signal_handlers")
def test_a_model_baseline_loads_the_folder_it_is_given(images: Path, tmp_path: Path) -> None:
    from ml.vlm.tiny_vision import build_tiny_clip

    clip = build_tiny_clip(tmp_path / "clip", seed=0)
    out = tmp_path / "index"
    args = ["--baseline", "clip-i", "--clip", str(clip), "--images", str(images)]
    assert _main([*args, "--out", str(out), "--batch-size", "2"]) == 0
    index = load_index(out)
    assert (index.n, index.dim) == (5, 32)
    assert index.meta["models"] == {"clip": str(clip)}


@pytest.mark.usefixtures("keep_signal_handlers")
def test_the_command_line_refuses_relsim_and_a_tuned_baseline_without_its_checkpoint(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "index")
    for name, message in (("relsim", "from its checkpoint"), ("tuned-clip", "--tuned-clip")):
        with pytest.raises(SystemExit):
            _main(["--baseline", name, "--images", str(images), "--out", out])
        assert message in capsys.readouterr().err
    assert not Path(out).exists()


def test_a_stopped_baseline_run_writes_nothing(images: Path, tmp_path: Path) -> None:
    result = embed_baseline(
        "dhash", image_files(images), tmp_path / "index", batch_size=2, should_stop=lambda: True
    )
    assert result.stopped and result.out_dir is None
    assert not (tmp_path / "index").exists()
