from __future__ import annotations

import hashlib
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.data.captions import DataFormatError, read_caption_file, read_split
from ml.relsim.train import TrainConfig, train_relsim
from ml.train import METRICS_FILE
from ml.train.run_state import TRAINING_STATE_FILE, latest_checkpoint, lr_factor
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

CAPTIONS = [
    "A {Shape} above a {Shape}.",
    "Three {Object} in a row.",
    "One {Object} unlike the rest.",
]


def write_export(folder: Path, count: int = 12, *, subfolder: bool = True) -> Path:
    """A caption export: jsonl lines and <md5>.png images (in images/ or beside the file)."""
    image_dir = folder / "images" if subfolder else folder
    image_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        buffer = io.BytesIO()
        draw_image(i).save(buffer, format="PNG")
        data = buffer.getvalue()
        image_hash = hashlib.md5(data).hexdigest()
        (image_dir / f"{image_hash}.png").write_bytes(data)
        lines.append(
            {"image_hash": image_hash, "url_link": f"synthetic://{i}", "caption": CAPTIONS[i % 3]}
        )
    (folder / "anonymous_captions_train.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    return folder


def tiny_config(data: Path, out: Path, backbone: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "data_dir": str(data),
        "output_dir": str(out),
        "backbone": str(backbone),
        "image_size": TINY_IMAGE_SIZE,
        "batch_size": 2,
        "grad_accum_steps": 2,
        "epochs": 3,
        "max_steps": 4,
        "lr": 1e-2,
        "warmup_steps": 1,
        "save_every": 100,
        "log_every": 1,
        "lora_r": 4,
    }
    settings.update(overrides)
    return TrainConfig.from_dict(settings)


def test_export_images_are_found_beside_the_file_or_in_images(tmp_path: Path) -> None:
    beside = read_split(write_export(tmp_path / "a", subfolder=False))
    nested = read_split(write_export(tmp_path / "b", subfolder=True))
    assert len(beside) == len(nested) == 12
    assert beside[0].image_path.parent == tmp_path / "a"
    assert nested[0].image_path.parent == tmp_path / "b" / "images"
    assert nested[1].caption == CAPTIONS[1] and nested[1].url_link == "synthetic://1"


def test_missing_images_and_bad_lines_are_reported_with_their_line(tmp_path: Path) -> None:
    folder = write_export(tmp_path / "data")
    jsonl = folder / "anonymous_captions_train.jsonl"
    good = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join([*good, '{"image_hash": "feed", "caption": "x"}']) + "\n")
    with pytest.raises(DataFormatError, match=r"1 image\(s\).*line 13: feed\.png"):
        read_caption_file(jsonl)
    jsonl.write_text("\n".join([*good[:2], "{not json", *good[2:]]) + "\n")
    with pytest.raises(DataFormatError, match=r":3: not valid JSON"):
        read_caption_file(jsonl)
    jsonl.write_text('{"image_hash": "abc"}\n')
    with pytest.raises(DataFormatError, match=r":1: missing or non-string \['caption'\]"):
        read_caption_file(jsonl)


def test_config_loads_from_json_and_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data_dir": "d", "output_dir": "o", "backbone": "b", "lr": 3e-4}))
    config = TrainConfig.from_json(path)
    assert config.lr == 3e-4 and config.temperature == 0.07 and config.lora_r == 16
    path.write_text(json.dumps({"data_dir": "d", "output_dir": "o", "backbone": "b", "lrr": 1}))
    with pytest.raises(ValueError, match="lrr"):
        TrainConfig.from_json(path)


def test_lr_warms_up_then_follows_a_cosine_to_the_floor() -> None:
    factors = [lr_factor(step, 10, 2, 0.1) for step in range(11)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[2:]))
    assert factors[10] == pytest.approx(0.1)


def _trained_state(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / TRAINING_STATE_FILE, weights_only=False)
    return state["trainable"]  # type: ignore[no-any-return]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    data = write_export(tmp_path / "data")
    straight = train_relsim(tiny_config(data, tmp_path / "straight", tiny_backbone))
    assert straight.global_step == 4 and not straight.stopped

    calls = {"n": 0}

    def stop_after_two_steps() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    config = tiny_config(data, tmp_path / "resumed", tiny_backbone)
    first = train_relsim(config, should_stop=stop_after_two_steps)
    assert first.stopped and first.global_step == 2
    assert first.checkpoint is not None and first.checkpoint.name == "checkpoint-2"
    assert latest_checkpoint(tmp_path / "resumed") == first.checkpoint
    second = train_relsim(config)
    assert second.resumed_from == first.checkpoint and second.global_step == 4

    assert straight.checkpoint is not None and second.checkpoint is not None
    expected = _trained_state(straight.checkpoint)
    got = _trained_state(second.checkpoint)
    assert set(got) == set(expected)
    assert any("lora_B" in name for name in got)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    # Training really moved the weights away from the start.
    assert any(float(t.abs().sum()) > 0 for n, t in expected.items() if "lora_B" in n)


def test_metrics_progress_and_checkpoints_are_written(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_export(tmp_path / "data")
    reports: list[tuple[int, int, str]] = []
    config = tiny_config(
        data,
        tmp_path / "run",
        tiny_backbone,
        finetune="full",
        save_every=2,
        learnable_temperature=True,
        symmetric_loss=True,
        gradient_checkpointing=True,
    )
    result = train_relsim(config, progress=lambda d, t, m: reports.append((d, t, m)))
    assert result.total_steps == 4 and result.global_step == 4
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert {"loss", "lr", "samples_per_s", "temperature", "epoch"} <= set(row)
        assert row["loss"] > 0 and row["samples_per_s"] > 0
    assert rows[0]["temperature"] != rows[-1]["temperature"]  # learnable
    assert reports[-1][0] == reports[-1][1] == 4 and reports[-1][2] == "done"


def test_a_finished_run_is_not_trained_again(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_export(tmp_path / "data")
    config = tiny_config(data, tmp_path / "run", tiny_backbone, max_steps=2)
    first = train_relsim(config)
    again = train_relsim(config)
    assert again.resumed_from == first.checkpoint and again.global_step == 2
    assert again.checkpoint == first.checkpoint


@pytest.mark.gpu
@pytest.mark.gpu
def test_training_runs_in_bf16_on_a_gpu_and_the_checkpoint_reloads(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    from ml.relsim.checkpoint import load_checkpoint
    from ml.vlm.tiny_text import build_tiny_text_model

    data = write_export(tmp_path / "data")
    # The test is about bf16 training on CUDA, not the caption encoder: a tiny random one will
    # do, and it needs no package that a GPU machine may lack.
    text_model = build_tiny_text_model(tmp_path / "text_model")
    config = tiny_config(
        data,
        tmp_path / "gpu",
        tiny_backbone,
        gradient_checkpointing=True,
        text_model=str(text_model),
    )
    result = train_relsim(config)
    assert result.global_step == 4 and result.checkpoint is not None
    rows = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert all(np.isfinite(row["loss"]) for row in rows)
    gpu = load_checkpoint(result.checkpoint, dtype=torch.bfloat16, device="cuda")
    assert gpu.device.type == "cuda"
    images = [draw_image(i) for i in range(3)]
    on_gpu = gpu.embed_images(images)
    on_cpu = load_checkpoint(result.checkpoint).embed_images(images)
    assert torch.allclose(on_gpu.norm(dim=1), torch.ones(3), atol=1e-4)
    # bf16 backbone vs float32 backbone: the same directions up to rounding.
    assert float((on_gpu * on_cpu).sum(dim=1).min()) > 0.98
