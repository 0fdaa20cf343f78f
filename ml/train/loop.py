"""The one training loop every model in ml/ trains through (relsim, the captioner, the interest
filter, the tuned baselines). A task supplies its model, data, collate and a step (batch ->
loss); the loop owns accelerate, mixed precision, accumulation, the LR schedule, checkpoints
and exact resume, the metrics JSONL, progress and the stop vote.

`batch_size` is per process and micro-step; one optimiser step sees
batch_size x processes x grad_accum_steps samples. Several GPUs (DDP) through
`accelerate launch`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ml.callbacks import ProgressFn, StopFn, ThrottledProgress, never_stop, no_progress
from ml.train.run_state import (
    CHECKPOINT_PREFIX,
    Named,
    any_process,
    latest_checkpoint,
    lr_factor,
    param_groups,
    restore_training_state,
    save_training_state,
    seed_everything,
)

METRICS_FILE = "metrics.jsonl"

_ConfigT = TypeVar("_ConfigT", bound="LoopConfig")


@dataclass(kw_only=True)
class LoopConfig:
    """The loop's settings; each task's config extends it with its model and data."""

    output_dir: str
    batch_size: int = 32
    grad_accum_steps: int = 1
    epochs: int = 3
    max_steps: int | None = None  # stop earlier than `epochs` would
    # How long the warm-up + cosine schedule is. False: it is fitted into the steps the run
    # takes, so a run cut short by max_steps decays all the way. True: it spans the whole
    # `epochs` even when max_steps stops the run sooner, so the run ends part-way down the
    # cosine, as the release's step-2000 weights (from a 3-epoch schedule) were; such a run
    # can later resume with a larger max_steps and keep to the same curve.
    schedule_over_epochs: bool = False
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    save_every: int = 500
    log_every: int = 10
    keep_checkpoints: int | None = None  # newest N periodic checkpoints kept; None keeps all
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" = bf16 on GPU, fp32 on CPU; or "no" / "bf16"
    num_workers: int = 0
    resume: bool = True  # continue from the newest checkpoint in output_dir if there is one

    @classmethod
    def from_dict(cls: type[_ConfigT], data: dict[str, Any]) -> _ConfigT:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls: type[_ConfigT], path: str | Path) -> _ConfigT:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum_steps", "epochs", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError("mixed_precision must be 'auto', 'no' or 'bf16'")

    def resolved_precision(self) -> str:
        if self.mixed_precision == "auto":
            return "bf16" if torch.cuda.is_available() else "no"
        return self.mixed_precision

    def torch_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.resolved_precision() == "bf16" else torch.float32


@dataclass
class StepOutput:
    """What a task's step returns for one micro-batch."""

    loss: torch.Tensor  # scalar; the loop scales it for accumulation and back-propagates it
    samples: int  # samples in the micro-batch (for throughput)
    metrics: dict[str, float] = field(default_factory=dict)  # averaged over the log window


def _plain_index(epoch: int, index: int) -> Any:
    return index


@dataclass
class Task:
    """What the loop trains and how: everything that differs between models."""

    module: nn.Module  # prepared by accelerate and handed to `step`
    parameters: Named  # what the optimiser updates, in a fixed order (saved states rely on it)
    dataset: Dataset[Any]
    n_samples: int
    collate: Callable[[list[Any]], Any]
    step: Callable[[nn.Module, Any], StepOutput]  # (prepared module, collated batch)
    save: Callable[[Path, int, int], None]  # (folder, global_step, epoch): write model files
    # The dataset key of sample `index` in `epoch`: a key holding the epoch lets random choices
    # inside a sample come from a stream fixed by the seed, so a resumed run draws the same.
    sample_key: Callable[[int, int], Any] = _plain_index
    epoch_order: Callable[[int], list[int]] | None = None  # default: a seeded permutation
    # True: samples that do not fill a micro-batch are dropped; False: the order wraps round so
    # the last micro-batch is full on every process.
    drop_last: bool = False
    batch_size: int | None = None  # overrides config.batch_size (a data set under one batch)
    no_decay: Callable[[str], bool] | None = None  # parameters kept out of weight decay
    log_extras: Callable[[], dict[str, float]] | None = None  # read at each metrics record


@dataclass
class TrainResult:
    output_dir: Path
    checkpoint: Path | None  # the last checkpoint written (None only if no step ran)
    global_step: int
    total_steps: int
    epoch: int
    stopped: bool  # should_stop() asked to stop before the end
    last_loss: float | None
    elapsed_s: float
    metrics_path: Path
    resumed_from: Path | None = None
    losses: list[float] = field(default_factory=list)  # one per optimiser step of this run


@dataclass(frozen=True)
class LoopContext:
    """What a task's builder gets: where to put the model, and a way to say what it is doing."""

    accelerator: Accelerator
    dtype: torch.dtype
    report: Callable[[str], None]

    @property
    def device(self) -> torch.device:
        device: torch.device = self.accelerator.device
        return device


@dataclass(frozen=True)
class Schedule:
    """Where each optimiser step's samples come from: epoch e uses an order fixed by the seed
    and e, cut into micro-batches, so the data order never needs to be saved."""

    n_samples: int
    micro_batch: int  # per process
    processes: int
    accum: int
    epochs: int
    max_steps: int | None
    seed: int
    drop_last: bool = False
    over_epochs: bool = False  # LoopConfig.schedule_over_epochs

    @property
    def lr_steps(self) -> int:
        """Steps the learning-rate schedule spans (at least the steps the run takes)."""
        return self.steps_per_epoch * self.epochs if self.over_epochs else self.total_steps

    @property
    def global_micro(self) -> int:
        return self.micro_batch * self.processes

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_last:
            micro = self.n_samples // self.global_micro
        else:
            micro = math.ceil(self.n_samples / self.global_micro)
        # Micro-batches that do not fill a whole optimiser step are dropped (the next epoch's
        # order puts other samples there).
        return max(1, micro // self.accum)

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps is not None else total

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_samples, generator=generator).tolist()

    def micro_batches(self, order: list[int], first_step: int, rank: int) -> list[list[int]]:
        """This process's micro-batches of one epoch's `order`, from optimiser step
        `first_step` on."""
        needed = self.steps_per_epoch * self.accum * self.global_micro
        while len(order) < needed:  # wrap so that the last micro-batch is full everywhere
            order = order + order[: needed - len(order)]
        batches = []
        for micro in range(first_step * self.accum, self.steps_per_epoch * self.accum):
            chunk = order[micro * self.global_micro : (micro + 1) * self.global_micro]
            batches.append(chunk[rank :: self.processes])
        return batches


class _KeyedBatches:
    """A batch sampler that turns a micro-batch's indices into the task's dataset keys."""

    def __init__(self, batches: list[list[int]], epoch: int, key: Callable[[int, int], Any]):
        self.batches = batches
        self.epoch = epoch
        self.key = key

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.batches:
            yield [self.key(self.epoch, index) for index in batch]


class _Window:
    """Running sums between two metrics records."""

    def __init__(self) -> None:
        self.loss, self.steps, self.samples = 0.0, 0, 0
        self.metrics: dict[str, float] = {}
        self.micro = 0
        self.started = time.monotonic()


class _Run:
    def __init__(
        self,
        config: LoopConfig,
        accelerator: Accelerator,
        task: Task,
        progress: ThrottledProgress,
        should_stop: StopFn,
        started: float,
    ) -> None:
        self.config = config
        self.accelerator = accelerator
        self.task = task
        self.progress = progress
        self.should_stop = should_stop
        self.started = started
        self.output_dir = Path(config.output_dir)
        self.metrics_path = self.output_dir / METRICS_FILE
        self.schedule = Schedule(
            n_samples=task.n_samples,
            micro_batch=task.batch_size or config.batch_size,
            processes=accelerator.num_processes,
            accum=config.grad_accum_steps,
            epochs=config.epochs,
            max_steps=config.max_steps,
            seed=config.seed,
            drop_last=task.drop_last,
            over_epochs=config.schedule_over_epochs,
        )

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self.metrics_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def _loader(self, epoch: int, first_step: int) -> Iterator[Any]:
        task, schedule = self.task, self.schedule
        order = list(task.epoch_order(epoch)) if task.epoch_order else schedule.order(epoch)
        batches = schedule.micro_batches(order, first_step, self.accelerator.process_index)
        loader = DataLoader(
            task.dataset,
            batch_sampler=_KeyedBatches(batches, epoch, task.sample_key),
            collate_fn=task.collate,
            num_workers=self.config.num_workers,
            # Its own generator: a loader made mid-epoch on resume must not draw from the
            # global stream that dropout uses, or resume would not be exact.
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
        )
        return iter(loader)

    def run(self) -> TrainResult:
        config, accelerator, task = self.config, self.accelerator, self.task
        schedule = self.schedule
        named = task.parameters
        if not named:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(
            param_groups(named, config.weight_decay, no_decay=task.no_decay), lr=config.lr
        )
        total = schedule.total_steps
        lr_steps = schedule.lr_steps
        # A LambdaLR saves its step count but not its function: a resumed run rebuilds the
        # schedule from its config, which must therefore give the same length.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, lr_steps, config.warmup_steps, config.min_lr_ratio),
        )
        global_step = 0
        resumed_from = latest_checkpoint(self.output_dir) if config.resume else None
        if resumed_from is not None:
            state = restore_training_state(accelerator, resumed_from, named, optimizer, scheduler)
            global_step = int(state["global_step"])
            _check_same_lr_schedule(state, lr_steps, resumed_from)
        else:
            seed_everything(config.seed + accelerator.process_index)
        trainer = accelerator.prepare(task.module)

        losses: list[float] = []
        last_saved = resumed_from
        saved_step = global_step if resumed_from is not None else -1
        window = _Window()
        stopped = False
        task.module.train()
        self.progress(global_step, total, "training", force=True)
        while global_step < total:
            epoch, in_epoch = divmod(global_step, schedule.steps_per_epoch)
            micro_iter = self._loader(epoch, in_epoch)
            for _ in range(in_epoch, schedule.steps_per_epoch):
                if global_step >= total:
                    break
                step_loss = 0.0
                for micro in range(config.grad_accum_steps):
                    batch = next(micro_iter)
                    last_micro = micro == config.grad_accum_steps - 1
                    # Gradients are all-reduced on the last micro-step only.
                    sync = nullcontext() if last_micro else accelerator.no_sync(trainer)
                    with sync:
                        out = task.step(trainer, batch)
                        accelerator.backward(out.loss / config.grad_accum_steps)
                    step_loss += float(out.loss.detach()) / config.grad_accum_steps
                    window.samples += out.samples * accelerator.num_processes
                    window.micro += 1
                    for name, value in out.metrics.items():
                        window.metrics[name] = window.metrics.get(name, 0.0) + value
                if config.grad_clip > 0:
                    accelerator.clip_grad_norm_([p for _, p in named], config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                losses.append(step_loss)
                window.loss += step_loss
                window.steps += 1
                if global_step % config.log_every == 0 or global_step == total:
                    self._log(self._record(window, global_step, scheduler))
                    window = _Window()
                message = f"step {global_step}/{total} loss {step_loss:.4f}"
                self.progress(global_step, total, message)
                stop = any_process(accelerator, self.should_stop())
                if global_step % config.save_every == 0 or global_step == total or stop:
                    last_saved = self._save(named, optimizer, scheduler, global_step)
                    saved_step = global_step
                if stop:
                    stopped = global_step < total
                    break
            if stopped:
                break
        if saved_step != global_step and global_step > 0:
            last_saved = self._save(named, optimizer, scheduler, global_step)
        task.module.eval()
        self.progress(global_step, total, "stopped" if stopped else "done", force=True)
        accelerator.wait_for_everyone()
        return TrainResult(
            output_dir=self.output_dir,
            checkpoint=last_saved,
            global_step=global_step,
            total_steps=total,
            epoch=global_step // schedule.steps_per_epoch,
            stopped=stopped,
            last_loss=losses[-1] if losses else None,
            elapsed_s=time.monotonic() - self.started,
            metrics_path=self.metrics_path,
            resumed_from=resumed_from,
            losses=losses,
        )

    def _record(
        self, window: _Window, global_step: int, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> dict[str, Any]:
        elapsed = max(1e-9, time.monotonic() - window.started)
        record: dict[str, Any] = {
            "step": global_step,
            "epoch": global_step / self.schedule.steps_per_epoch,
            "loss": window.loss / window.steps,
            "lr": scheduler.get_last_lr()[0],
            "samples_per_s": window.samples / elapsed,
        }
        record.update({k: v / max(1, window.micro) for k, v in window.metrics.items()})
        if self.task.log_extras is not None:
            record.update(self.task.log_extras())
        record["elapsed_s"] = time.monotonic() - self.started
        return record

    def _save(
        self,
        named: Named,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        global_step: int,
    ) -> Path:
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
        epoch = global_step // self.schedule.steps_per_epoch
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.task.save(folder, global_step, epoch)
        save_training_state(
            self.accelerator,
            folder,
            named,
            optimizer,
            scheduler,
            global_step,
            keep_checkpoints=self.config.keep_checkpoints,
            extra={"schedule": asdict(self.schedule), "lr_steps": self.schedule.lr_steps},
        )
        return folder


def _check_same_lr_schedule(state: dict[str, Any], lr_steps: int, folder: Path) -> None:
    """Refuse to resume onto another learning-rate curve than the checkpoint's (older
    checkpoints did not record theirs and pass)."""
    saved = state.get("lr_steps")
    if saved is not None and int(saved) != lr_steps:
        raise ValueError(
            f"{folder} was trained on a learning-rate schedule of {saved} steps, but this "
            f"config gives {lr_steps}: resume with the settings it was trained with (epochs, "
            "batch size, max_steps unless schedule_over_epochs is on), or start afresh in "
            "another output_dir"
        )


def run_training(
    config: _ConfigT,
    build: Callable[[_ConfigT, LoopContext], Task],
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) the task that `build(config, context)` makes: AdamW, warm-up +
    cosine, accumulation, clipping, checkpoints (the task's model files + training state) every
    `save_every` steps, and exact resume from the newest one in `config.output_dir`."""
    started = time.monotonic()
    config.validate()
    if not config.output_dir:
        raise ValueError("output_dir is required")
    accelerator = Accelerator(mixed_precision=config.resolved_precision())
    reporter = ThrottledProgress(progress, enabled=accelerator.is_main_process)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    context = LoopContext(
        accelerator=accelerator,
        dtype=config.torch_dtype(),
        report=lambda message: reporter(0, 1, message, force=True),
    )
    task = build(config, context)
    return _Run(config, accelerator, task, reporter, should_stop, started).run()
