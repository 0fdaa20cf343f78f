"""A worker counts the GPUs its jobs may use without touching CUDA, and reports the count
with its heartbeat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.gpu_count import visible_gpus
from training.models import WorkerBeat
from training.worker_watch import WorkerWatch


def test_the_configured_devices_come_first(settings: Any, monkeypatch: Any) -> None:
    settings.RELSIM_GPU_DEVICES = "2, 3,5"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert visible_gpus() == 3


def test_cuda_visible_devices_counts_next_and_empty_means_none(
    settings: Any, monkeypatch: Any
) -> None:
    settings.RELSIM_GPU_DEVICES = ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == 0


def test_otherwise_nvidia_smi_lists_them_and_without_it_there_are_none(
    settings: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    settings.RELSIM_GPU_DEVICES = ""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\n"
        "echo 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == 2
    tool.unlink()
    assert visible_gpus() == 0


@pytest.mark.django_db
def test_the_heartbeat_carries_the_count(settings: Any) -> None:
    settings.RELSIM_GPU_DEVICES = "0,1"
    WorkerWatch("gpu@test", ["gpu"]).tick()
    assert WorkerBeat.objects.get(name="gpu@test").gpus == 2
