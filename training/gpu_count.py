"""How many GPUs a worker's jobs may use, found without initialising CUDA in the worker
(its jobs' processes do that): the devices it is given, or what nvidia-smi lists."""

from __future__ import annotations

import os
import shutil
import subprocess

from django.conf import settings


def _listed(devices: str) -> int:
    return len([d for d in devices.split(",") if d.strip()])


def visible_gpus() -> int:
    """RELSIM_GPU_DEVICES when set, else CUDA_VISIBLE_DEVICES when set, else the GPUs
    nvidia-smi lists (0 without it)."""
    configured = settings.RELSIM_GPU_DEVICES.strip()
    if configured:
        return _listed(configured)
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return _listed(os.environ["CUDA_VISIBLE_DEVICES"])
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
