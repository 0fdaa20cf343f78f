"""The training loop on a toy task (a linear fit): it learns, resumes exactly on the same LR
schedule, honours a stop request, writes its metrics and reports progress sparingly."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ml.callbacks import ThrottledProgress
from ml.train import METRICS_FILE, LoopConfig, LoopContext, StepOutput, Task, run_training
from ml.train.run_state import lr_factor

WEIGHTS = torch.tensor([2.0, -3.0, 0.5])


def _points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return x, x @ WEIGHTS


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _step(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    x, y = batch
    # Dropout makes the random state part of what an exact resume must restore.
    predicted = module(x).squeeze(-1)
    loss = nn.functional.mse_loss(predicted, y)
    return StepOutput(loss, len(x), {"abs_error": float((predicted.detach() - y).abs().mean())})


class _Toy:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 1))

    def build(self, config: LoopConfig, context: LoopContext) -> Task:
        x, y = _points(64, seed=0)

        def save(folder: Path, step: int, epoch: int) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(self.model.state_dict(), folder / "toy.pt")

        return Task(
            module=self.model,
            parameters=list(self.model.named_parameters()),
            dataset=TensorDataset(x, y),
            n_samples=len(x),
            collate=_collate,
            step=_step,
            save=save,
        )


def _config(output_dir: Path, **overrides: Any) -> LoopConfig:
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "batch_size": 8,
        "epochs": 5,
        "lr": 0.3,
        "warmup_steps": 0,
        "log_every": 4,
    }
    settings.update(overrides)
    return LoopConfig(**settings)


def _held_out_loss(model: nn.Module) -> float:
    x, y = _points(32, seed=1)
    model.eval()
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x).squeeze(-1), y))


def test_the_loop_trains_a_toy_fit_on_held_out_points(tmp_path: Path) -> None:
    toy = _Toy()
    untrained = _held_out_loss(toy.model)
    result = run_training(_config(tmp_path), toy.build)
    assert result.global_step == result.total_steps == 5 * 8
    trained = _held_out_loss(toy.model)
    assert untrained > 1.0 and trained < 0.1 * untrained, (untrained, trained)
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(4, 41, 4))
    assert rows[-1]["loss"] < rows[0]["loss"] and "abs_error" in rows[0]


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = _Toy()
    run_training(_config(tmp_path / "straight", grad_accum_steps=2), straight.build)
    resumed = _Toy()
    polls = 0

    def stop_at_seven() -> bool:
        nonlocal polls
        polls += 1
        return polls == 7

    config = _config(tmp_path / "resumed", grad_accum_steps=2)
    first = run_training(config, resumed.build, should_stop=stop_at_seven)
    assert first.stopped and first.global_step == 7 and first.checkpoint is not None
    again = _Toy()  # a fresh process: nothing carried over but the files
    second = run_training(config, again.build)
    assert second.resumed_from == first.checkpoint and second.global_step == 20
    for left, right in zip(straight.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(left, right)


def _lrs(output_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output_dir / METRICS_FILE).read_text().splitlines()]
    return {row["step"]: row["lr"] for row in rows}


def test_a_run_stopped_by_max_steps_can_keep_the_schedule_of_its_epochs(tmp_path: Path) -> None:
    # 64 points in batches of 8: 8 steps an epoch, 40 in 5 epochs; the run stops at 16.
    kept = run_training(
        _config(tmp_path / "kept", max_steps=16, log_every=1, schedule_over_epochs=True),
        _Toy().build,
    )
    squeezed = run_training(_config(tmp_path / "squeezed", max_steps=16, log_every=1), _Toy().build)
    assert kept.global_step == squeezed.global_step == kept.total_steps == 16
    kept_lr = _lrs(tmp_path / "kept")
    squeezed_lr = _lrs(tmp_path / "squeezed")
    # The lr logged at a step is the one the next step uses: the cosine at that step.
    assert kept_lr[16] == pytest.approx(0.3 * lr_factor(16, 40, 0, 0.0))
    assert kept_lr[16] == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 16 / 40)))
    assert squeezed_lr[16] == pytest.approx(0.3 * lr_factor(16, 16, 0, 0.0)) == 0.0
    assert all(kept_lr[step] > squeezed_lr[step] for step in range(1, 17))


def test_a_run_on_the_schedule_of_its_epochs_resumes_past_max_steps_on_the_same_curve(
    tmp_path: Path,
) -> None:
    straight = _Toy()
    run_training(
        _config(tmp_path / "straight", log_every=1, schedule_over_epochs=True), straight.build
    )
    config = _config(tmp_path / "resumed", log_every=1, schedule_over_epochs=True)
    first = run_training(replace(config, max_steps=16), _Toy().build)
    assert first.global_step == 16 and first.checkpoint is not None
    again = _Toy()
    second = run_training(config, again.build)
    assert second.resumed_from == first.checkpoint and second.global_step == 40
    assert _lrs(tmp_path / "resumed") == pytest.approx(_lrs(tmp_path / "straight"))
    for left, right in zip(straight.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(left, right)


def test_resuming_onto_another_lr_schedule_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, max_steps=16)
    run_training(config, _Toy().build)
    # Without schedule_over_epochs the cosine was fitted into 16 steps; 40 would jump up it.
    with pytest.raises(ValueError, match="schedule of 16 steps, but this config gives 40"):
        run_training(replace(config, max_steps=None), _Toy().build)


def test_progress_is_reported_sparingly(tmp_path: Path) -> None:
    reports: list[tuple[int, int, str]] = []
    run_training(_config(tmp_path), _Toy().build, progress=lambda *r: reports.append(r))
    # The first and last word always; the 40 steps in between fall inside one interval.
    assert reports[-1] == (40, 40, "done")
    assert len(reports) < 10


def test_a_throttled_callback_passes_forced_reports_only_within_its_interval() -> None:
    seen: list[str] = []
    throttled = ThrottledProgress(lambda done, total, message: seen.append(message), every_s=60)
    throttled(0, 2, "first")
    throttled(1, 2, "dropped")
    throttled(2, 2, "forced", force=True)
    assert seen == ["first", "forced"]
    silent = ThrottledProgress(lambda *r: seen.append("never"), enabled=False)
    silent(0, 1, "x", force=True)
    assert seen == ["first", "forced"]


def test_a_run_needs_an_output_folder() -> None:
    with pytest.raises(ValueError, match="output_dir"):
        run_training(LoopConfig(output_dir=""), _Toy().build)
