"""What every training loop in ml/ shares: the learning-rate schedule, where checkpoints
live, and the training and random state that an exact resume restores."""

from __future__ import annotations

import math
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # accelerate is imported by the loops that use these helpers
    from accelerate import Accelerator

TRAINING_STATE_FILE = "training_state.pt"
CHECKPOINT_PREFIX = "checkpoint-"


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up, then cosine decay from 1 to `floor`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return floor + (1.0 - floor) * cosine


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run (those with a training state), oldest first."""
    found = []
    for path in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and (path / TRAINING_STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete checkpoint (one with a training state) of a run, if any."""
    found = list_checkpoints(Path(output_dir))
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


Named = list[tuple[str, nn.Parameter]]


def param_groups(
    named: Named, weight_decay: float, *, no_decay: Callable[[str], bool] | None = None
) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight matrices decay; biases, norms and the parameters that
    `no_decay(name)` picks do not (pulling them towards 0 has no purpose)."""
    exempt = no_decay or (lambda name: False)
    decay = [p for n, p in named if p.ndim >= 2 and not exempt(n)]
    plain = [p for n, p in named if not (p.ndim >= 2 and not exempt(n))]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process if `flag` is True on any (a stop request must reach all ranks)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def save_training_state(
    accelerator: Accelerator,
    folder: Path,
    named: Named,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    global_step: int,
    *,
    keep_checkpoints: int | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Beside the model files the main process has written to `folder`: the trainable
    tensors, optimiser and scheduler (main process) and every process's random state; then
    the oldest periodic checkpoints beyond `keep_checkpoints` are removed. Every process
    calls this."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(
            {
                "global_step": global_step,
                "trainable": {n: p.detach().cpu().clone() for n, p in named},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                **(extra or {}),
            },
            folder / TRAINING_STATE_FILE,
        )
    accelerator.wait_for_everyone()
    # Every process keeps its own random stream (dropout differs per rank).
    torch.save(rng_state(), folder / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and keep_checkpoints is not None:
        for step, path in list_checkpoints(folder.parent)[:-keep_checkpoints]:
            if step != global_step:
                shutil.rmtree(path, ignore_errors=True)


def restore_training_state(
    accelerator: Accelerator,
    folder: Path,
    named: Named,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Put a checkpoint's trainable tensors, optimiser, scheduler and this process's random
    state back; returns the whole saved state (its "global_step" and any extra)."""
    state: dict[str, Any] = torch.load(
        folder / TRAINING_STATE_FILE, map_location="cpu", weights_only=False
    )
    saved = state["trainable"]
    if sorted(saved) != sorted(n for n, _ in named):
        raise ValueError(
            f"{folder} was written by a different model set-up (trainable parameters differ)"
        )
    with torch.no_grad():
        for name, param in named:
            param.copy_(saved[name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_path = folder / f"rng_state_{accelerator.process_index}.pt"
    if rng_path.is_file():
        set_rng_state(torch.load(rng_path, weights_only=False))
    return state
