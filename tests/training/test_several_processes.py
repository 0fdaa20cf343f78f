"""A job asking for several GPUs runs its trainer under `accelerate launch`, one process per
GPU. Without GPUs the same command runs over gloo on the CPU (ACCELERATE_USE_CPU=true):
the processes share out the data and the stop vote, and only the main one writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ml.train import METRICS_FILE
from ml.vlm.backbone import build_tiny_vlm
from tests.ml.conftest import TINY_IMAGE_SIZE
from tests.ml.relsim.test_train import write_export
from training.child_process import module_command

pytestmark = pytest.mark.slow


def test_two_processes_train_relsim_on_half_the_steps_with_one_result(tmp_path: Path) -> None:
    data = write_export(tmp_path / "data", count=16)
    config = {
        "data_dir": str(data),
        "output_dir": str(tmp_path / "run"),
        "backbone": str(build_tiny_vlm(tmp_path / "vlm", seed=0)),
        "image_size": TINY_IMAGE_SIZE,
        "batch_size": 2,
        "grad_accum_steps": 1,
        "epochs": 1,
        "lr": 1e-2,
        "warmup_steps": 1,
        "save_every": 100,
        "log_every": 1,
        "lora_r": 4,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    command = module_command(
        "ml.relsim.train", ["--config", str(tmp_path / "config.json")], processes=2
    )
    assert command[3:7] == ["--multi_gpu", "--num_processes", "2", "-m"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # One result line and one progress stream, from the main process.
    [line] = done.stdout.strip().splitlines()
    result = json.loads(line)
    # 16 images, 2 a step in each of 2 processes: 4 steps to the epoch (one process: 8).
    assert result["total_steps"] == result["global_step"] == "4"
    assert done.stderr.count("[4/4] done") == 1
    rows = (tmp_path / "run" / METRICS_FILE).read_text().splitlines()
    assert [json.loads(row)["step"] for row in rows] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "checkpoint-4").is_dir()
