"""Train the anonymous captioner with `accelerate` on our export format: single images from
anonymous_captions_train.jsonl and, from seed_group.json, k sampled images of a group -> the
group's caption. Also the fine-tuning loop the interest filter reuses.

One process: `python -m ml.train_captioner --config FILE`.
Several GPUs (DDP): `accelerate launch -m ml.train_captioner --config FILE`.
`batch_size` is per process and micro-step."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress, training_command
from ml.caption_postprocess import unwrap_caption
from ml.caption_prompts import PROMPT_VERSION, get_prompt
from ml.captioner import (
    Captioner,
    CaptionerConfig,
    ChatSample,
    TunedVLM,
    VLMTuneConfig,
    build_captioner,
    save_captioner,
)
from ml.preprocess import load_image
from ml.relsim_data import DataFormatError, read_caption_file
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
from ml.synthetic_samples import SyntheticCaptionSamples

METRICS_FILE = "metrics.jsonl"
TRAIN_CAPTIONS = "anonymous_captions_train.jsonl"
SEED_GROUPS = "seed_group.json"
_PROGRESS_EVERY_S = 2.0

_LoopConfigT = TypeVar("_LoopConfigT", bound="LoopConfig")


@dataclass(kw_only=True)
class LoopConfig:
    """Settings of the fine-tuning loop shared by the captioner and the filter."""

    output_dir: str
    batch_size: int = 32
    grad_accum_steps: int = 1
    epochs: int = 3
    max_steps: int | None = None  # stop earlier than `epochs` would
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False  # language model only
    save_every: int = 500
    log_every: int = 10
    keep_checkpoints: int | None = None  # newest N periodic checkpoints kept; None keeps all
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" = bf16 on GPU, fp32 on CPU; or "no" / "bf16"
    num_workers: int = 0
    resume: bool = True  # continue from the newest checkpoint in output_dir if there is one

    @classmethod
    def from_dict(cls: type[_LoopConfigT], data: dict[str, Any]) -> _LoopConfigT:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls: type[_LoopConfigT], path: str | Path) -> _LoopConfigT:
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

    def torch_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.resolved_precision() == "bf16" else torch.float32

    def resolved_precision(self) -> str:
        if self.mixed_precision == "auto":
            return "bf16" if torch.cuda.is_available() else "no"
        return self.mixed_precision


@dataclass
class FinetuneResult:
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


# A sample is addressed by (epoch, index) so that random choices inside it (which images of a
# group) are drawn from a stream fixed by the seed: an interrupted run resumes exactly.
SampleKey = tuple[int, int]


@dataclass
class LoopJob:
    """What the loop trains: a model, its samples, how to batch them and score a batch."""

    model: TunedVLM
    dataset: Dataset[Any]  # indexed by SampleKey
    n_samples: int
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    save: Callable[[Path, int], None]  # (folder, global_step): write the model files
    epoch_order: Callable[[int], list[int]] | None = None  # default: a fresh permutation


class _Loop:
    """One run of the loop; `run` trains, saves checkpoints and returns where they are."""

    def __init__(
        self,
        config: LoopConfig,
        accelerator: Accelerator,
        job: LoopJob,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> None:
        self.config = config
        self.accelerator = accelerator
        self.job = job
        self.progress = progress
        self.should_stop = should_stop
        self.output_dir = Path(config.output_dir)
        self.metrics_path = self.output_dir / METRICS_FILE
        self.started = time.monotonic()
        self.last_report = -math.inf
        self.global_micro = config.batch_size * accelerator.num_processes
        micro_per_epoch = math.ceil(job.n_samples / self.global_micro)
        # Micro-batches that do not fill a whole optimiser step are dropped; the next epoch's
        # order puts other samples there.
        self.steps_per_epoch = max(1, micro_per_epoch // config.grad_accum_steps)
        total = self.steps_per_epoch * config.epochs
        self.total = min(total, config.max_steps) if config.max_steps is not None else total

    def _report(self, done: int, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.accelerator.is_main_process and (
            force or now - self.last_report >= _PROGRESS_EVERY_S
        ):
            self.last_report = now
            self.progress(done, self.total, message)

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self.metrics_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def _micro_batches(self, epoch: int, first_step: int) -> list[list[SampleKey]]:
        if self.job.epoch_order is not None:
            order = list(self.job.epoch_order(epoch))
        else:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            order = torch.randperm(self.job.n_samples, generator=generator).tolist()
        needed = self.steps_per_epoch * self.config.grad_accum_steps * self.global_micro
        while len(order) < needed:  # wrap so that the last micro-batch is full everywhere
            order = order + order[: needed - len(order)]
        rank, processes = self.accelerator.process_index, self.accelerator.num_processes
        batches = []
        for micro in range(
            first_step * self.config.grad_accum_steps,
            self.steps_per_epoch * self.config.grad_accum_steps,
        ):
            chunk = order[micro * self.global_micro : (micro + 1) * self.global_micro]
            batches.append([(epoch, index) for index in chunk[rank::processes]])
        return batches

    def run(self) -> FinetuneResult:
        config, accelerator, job = self.config, self.accelerator, self.job
        device = accelerator.device
        named = job.model.trainable_named_parameters()
        if not named:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(param_groups(named, config.weight_decay), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, self.total, config.warmup_steps, config.min_lr_ratio),
        )
        global_step = 0
        resumed_from = latest_checkpoint(self.output_dir) if config.resume else None
        if resumed_from is not None:
            state = restore_training_state(accelerator, resumed_from, named, optimizer, scheduler)
            global_step = int(state["global_step"])
        else:
            seed_everything(config.seed + accelerator.process_index)
        trainer = accelerator.prepare(job.model)

        last_loss: float | None = None
        last_saved = resumed_from
        saved_step = global_step if resumed_from is not None else -1
        window_loss, window_steps, window_samples = 0.0, 0, 0
        window_start = time.monotonic()
        stopped = False
        job.model.train()
        self._report(global_step, "training", force=True)
        while global_step < self.total:
            epoch, in_epoch = divmod(global_step, self.steps_per_epoch)
            loader = DataLoader(
                job.dataset,
                batch_sampler=self._micro_batches(epoch, in_epoch),
                collate_fn=job.collate,
                num_workers=config.num_workers,
                generator=torch.Generator().manual_seed(config.seed + epoch),
            )
            micro_iter = iter(loader)
            for _ in range(in_epoch, self.steps_per_epoch):
                if global_step >= self.total:
                    break
                step_loss = 0.0
                for micro in range(config.grad_accum_steps):
                    batch = {k: v.to(device) for k, v in next(micro_iter).items()}
                    last_micro = micro == config.grad_accum_steps - 1
                    # Gradients are all-reduced on the last micro-step only.
                    sync = nullcontext() if last_micro else accelerator.no_sync(trainer)
                    with sync:
                        loss = job.loss(trainer, batch)
                        accelerator.backward(loss / config.grad_accum_steps)
                    step_loss += float(loss.detach()) / config.grad_accum_steps
                    window_samples += int(batch["input_ids"].shape[0]) * accelerator.num_processes
                if config.grad_clip > 0:
                    accelerator.clip_grad_norm_([p for _, p in named], config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                last_loss = step_loss
                window_loss += step_loss
                window_steps += 1
                if global_step % config.log_every == 0 or global_step == self.total:
                    elapsed = max(1e-9, time.monotonic() - window_start)
                    self._log(
                        {
                            "step": global_step,
                            "epoch": global_step / self.steps_per_epoch,
                            "loss": window_loss / window_steps,
                            "lr": scheduler.get_last_lr()[0],
                            "samples_per_s": window_samples / elapsed,
                            "elapsed_s": time.monotonic() - self.started,
                        }
                    )
                    window_loss, window_steps, window_samples = 0.0, 0, 0
                    window_start = time.monotonic()
                self._report(global_step, f"step {global_step}/{self.total} loss {step_loss:.4f}")
                stop = any_process(accelerator, self.should_stop())
                if global_step % config.save_every == 0 or global_step == self.total or stop:
                    last_saved = self._save(named, optimizer, scheduler, global_step)
                    saved_step = global_step
                if stop:
                    stopped = global_step < self.total
                    break
            if stopped:
                break
        if saved_step != global_step and global_step > 0:
            last_saved = self._save(named, optimizer, scheduler, global_step)
        job.model.eval()
        self._report(global_step, "stopped" if stopped else "done", force=True)
        accelerator.wait_for_everyone()
        return FinetuneResult(
            output_dir=self.output_dir,
            checkpoint=last_saved,
            global_step=global_step,
            total_steps=self.total,
            epoch=global_step // self.steps_per_epoch,
            stopped=stopped,
            last_loss=last_loss,
            elapsed_s=time.monotonic() - self.started,
            metrics_path=self.metrics_path,
            resumed_from=resumed_from,
        )

    def _save(
        self,
        named: list[tuple[str, nn.Parameter]],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        global_step: int,
    ) -> Path:
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.job.save(folder, global_step)
        save_training_state(
            self.accelerator,
            folder,
            named,
            optimizer,
            scheduler,
            global_step,
            keep_checkpoints=self.config.keep_checkpoints,
        )
        return folder


def make_accelerator(config: LoopConfig) -> Accelerator:
    return Accelerator(mixed_precision=config.resolved_precision())


def run_finetune(
    config: LoopConfig,
    accelerator: Accelerator,
    job: LoopJob,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> FinetuneResult:
    """Train `job.model` with AdamW, warm-up + cosine, accumulation, clipping, checkpoints
    (model files + training state) every `save_every` steps, and resume from the newest."""
    config.validate()
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    if config.gradient_checkpointing:
        job.model.core.language_model.activation_checkpointing_enable({"use_reentrant": False})
    return _Loop(config, accelerator, job, progress, should_stop).run()


@dataclass(kw_only=True)
class TunedLoopConfig(LoopConfig):
    """A loop that tunes a Qwen2.5-VL: which backbone, and how it is adapted."""

    backbone: str  # Qwen2.5-VL folder (tiny or real) or hub name
    image_size: int = 448
    finetune: str = "lora"  # "lora" or "full" (tiny backbones)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    freeze_vision: bool = True

    def tune_settings(self) -> dict[str, Any]:
        """The VLMTuneConfig fields these settings fill (not the prompt version)."""
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "finetune": self.finetune,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "lora_targets": list(self.lora_targets),
            "freeze_vision": self.freeze_vision,
        }

    def model_config(self) -> VLMTuneConfig:
        return VLMTuneConfig(**self.tune_settings())

    def validate(self) -> None:
        super().validate()
        self.model_config().validate()


# ---------------------------------------------------------------------------------------------
# The captioner's data and entry point


@dataclass(kw_only=True)
class CaptionerTrainConfig(TunedLoopConfig):
    """One captioner training run; loadable from a JSON file."""

    data_dir: str = ""  # export folder: anonymous_captions_train.jsonl, seed_group.json, images/
    # > 0: train on that many freshly drawn synthetic samples (ml.synthetic_samples) instead
    # of data_dir, a share `synthetic_group_share` of them groups of the group_*_images sizes.
    synthetic_train_samples: int = 0
    synthetic_group_share: float = 0.5
    train_file: str | None = None  # default: data_dir/anonymous_captions_train.jsonl
    groups_file: str | None = None  # default: data_dir/seed_group.json when present
    use_single_images: bool = True  # (image, caption) pairs
    use_groups: bool = True  # (k images of a group, group caption) samples
    group_min_images: int = 2
    group_max_images: int = 4
    group_draws_per_epoch: int = 1  # samples drawn from each group per epoch
    prompt_version: str = PROMPT_VERSION

    def model_config(self) -> CaptionerConfig:
        return CaptionerConfig(**self.tune_settings(), prompt_version=self.prompt_version)

    def validate(self) -> None:
        super().validate()
        if self.synthetic_train_samples < 0:
            raise ValueError("synthetic_train_samples must not be negative")
        if not 0.0 <= self.synthetic_group_share <= 1.0:
            raise ValueError("synthetic_group_share must be within [0, 1]")
        if not self.synthetic_train_samples and not self.data_dir:
            raise ValueError("data_dir is needed unless synthetic_train_samples is set")
        if not (self.use_single_images or self.use_groups):
            raise ValueError("use_single_images and use_groups are both off: nothing to train")
        if not 1 <= self.group_min_images <= self.group_max_images:
            raise ValueError("need 1 <= group_min_images <= group_max_images")
        if self.group_draws_per_epoch < 1:
            raise ValueError("group_draws_per_epoch must be at least 1")


@dataclass(frozen=True)
class CaptionedGroup:
    """Images that share one caption (a single image is a group of one)."""

    image_paths: tuple[Path, ...]
    caption: str


def read_seed_groups(
    groups_file: str | Path, *, data_dir: str | Path | None = None
) -> list[CaptionedGroup]:
    """Groups of seed_group.json with their images resolved to local files.

    An entry of `image_urls` may be a path relative to the data folder (our exports write
    images/<md5>.png) or the URL of a released image, looked up through the `url_link` of the
    caption files beside it."""
    path = Path(groups_file)
    folder = Path(data_dir) if data_dir is not None else path.parent
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise DataFormatError(f"{path}: expected a JSON list of groups")
    by_url: dict[str, Path] = {}
    for jsonl in sorted(folder.glob("anonymous_captions_*.jsonl")):
        for record in read_caption_file(jsonl):
            if record.url_link:
                by_url[record.url_link] = record.image_path
    groups: list[CaptionedGroup] = []
    missing: list[str] = []
    for number, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise DataFormatError(f"{path}: group {number} is not an object")
        caption = entry.get("anonymous_caption")
        urls = entry.get("image_urls")
        if not isinstance(caption, str) or not isinstance(urls, list):
            raise DataFormatError(f"{path}: group {number} lacks anonymous_caption/image_urls")
        caption = unwrap_caption(caption)
        if not caption:
            raise DataFormatError(f"{path}: group {number} has an empty caption")
        paths: list[Path] = []
        for url in urls:
            local = folder / str(url)
            found = local if local.is_file() else by_url.get(str(url))
            if found is None:
                missing.append(f"group {number}: {url}")
            else:
                paths.append(found)
        if paths:
            groups.append(CaptionedGroup(tuple(paths), caption))
    if missing:
        shown = "; ".join(missing[:5])
        raise DataFormatError(
            f"{len(missing)} group image(s) of {path} not found: {shown}"
            f"{' ...' if len(missing) > 5 else ''}"
        )
    return groups


class CaptionSamples(Dataset[ChatSample]):
    """Single images first, then `draws` samples per group; a group sample takes k random
    images of its group (k in [min_images, max_images], at most the group's size)."""

    def __init__(
        self,
        singles: Sequence[CaptionedGroup],
        groups: Sequence[CaptionedGroup],
        *,
        prompt_version: str,
        image_size: int,
        min_images: int,
        max_images: int,
        draws: int,
        seed: int,
    ) -> None:
        self.singles = list(singles)
        self.groups = list(groups)
        self.prompt = get_prompt(prompt_version)
        self.image_size = image_size
        self.min_images = min_images
        self.max_images = max_images
        self.draws = draws
        self.seed = seed

    def __len__(self) -> int:
        return len(self.singles) + len(self.groups) * self.draws

    def pick(self, key: SampleKey) -> CaptionedGroup:
        """Which images and caption the sample `key` uses (no image is read)."""
        epoch, index = key
        if index < len(self.singles):
            return self.singles[index]
        draw, group_index = divmod(index - len(self.singles), len(self.groups))
        group = self.groups[group_index]
        rng = random.Random(f"{self.seed}/{epoch}/{index}/{draw}")
        high = min(self.max_images, len(group.image_paths))
        k = rng.randint(min(self.min_images, high), high)
        return CaptionedGroup(tuple(rng.sample(group.image_paths, k)), group.caption)

    def __getitem__(self, key: SampleKey) -> ChatSample:
        chosen = self.pick(key)
        images = []
        for image_path in chosen.image_paths:
            try:
                images.append(load_image(image_path, self.image_size))
            except OSError as error:
                raise DataFormatError(f"cannot read image {image_path}: {error}") from error
        return ChatSample(images, self.prompt.text(len(images)), chosen.caption)


def caption_samples(config: CaptionerTrainConfig) -> CaptionSamples | SyntheticCaptionSamples:
    """The training samples a config asks for, read from its export folder or drawn."""
    if config.synthetic_train_samples:
        return SyntheticCaptionSamples(
            config.synthetic_train_samples,
            prompt=get_prompt(config.prompt_version),
            image_size=config.image_size,
            group_share=config.synthetic_group_share,
            min_images=config.group_min_images,
            max_images=config.group_max_images,
            seed=config.seed,
        )
    data_dir = Path(config.data_dir)
    singles: list[CaptionedGroup] = []
    if config.use_single_images:
        jsonl = Path(config.train_file) if config.train_file else data_dir / TRAIN_CAPTIONS
        if not jsonl.is_file():
            raise FileNotFoundError(f"{jsonl} not found")
        singles = [
            CaptionedGroup((r.image_path,), unwrap_caption(r.caption))
            for r in read_caption_file(jsonl)
        ]
    groups: list[CaptionedGroup] = []
    if config.use_groups:
        groups_path = Path(config.groups_file) if config.groups_file else data_dir / SEED_GROUPS
        if groups_path.is_file():
            groups = read_seed_groups(groups_path, data_dir=data_dir)
        elif config.groups_file:
            raise FileNotFoundError(f"{groups_path} not found")
    if not singles and not groups:
        raise DataFormatError(f"no captioned images or groups to train on in {data_dir}")
    return CaptionSamples(
        singles,
        groups,
        prompt_version=config.prompt_version,
        image_size=config.image_size,
        min_images=config.group_min_images,
        max_images=config.group_max_images,
        draws=config.group_draws_per_epoch,
        seed=config.seed,
    )


class _Collate:
    """Right-padded training inputs with labels; a class so DataLoader workers can pickle it."""

    def __init__(self, captioner: Captioner) -> None:
        self.builder = captioner.inputs

    def __call__(self, samples: list[ChatSample]) -> dict[str, torch.Tensor]:
        return self.builder(samples, padding_side="right", preprocessed=True)


def _captioner_loss(module: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    loss: torch.Tensor = module(**batch)
    return loss


def train_captioner(
    config: CaptionerTrainConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> FinetuneResult:
    """Train (or resume) a captioner; checkpoints load with `ml.captioner.load_captioner`."""
    config.validate()
    accelerator = make_accelerator(config)
    progress(0, 1, "reading data")
    samples = caption_samples(config)
    progress(0, 1, "loading model")
    seed_everything(config.seed)
    captioner = build_captioner(
        config.model_config(),
        dtype=config.torch_dtype(),
        device=accelerator.device,
        seed=config.seed,
    )

    counts = (
        {"n_synthetic_samples": len(samples)}
        if isinstance(samples, SyntheticCaptionSamples)
        else {"n_single_images": len(samples.singles), "n_groups": len(samples.groups)}
    )

    def save(folder: Path, step: int) -> None:
        save_captioner(
            captioner,
            folder,
            global_step=step,
            extra={"train_config": config.to_dict(), **counts},
        )

    job = LoopJob(
        model=captioner,
        dataset=samples,
        n_samples=len(samples),
        collate=_Collate(captioner),
        loss=_captioner_loss,
        save=save,
    )
    return run_finetune(config, accelerator, job, progress=progress, should_stop=should_stop)


def _main(argv: list[str] | None = None) -> int:
    return training_command(
        argv,
        "Train the anonymous captioner.",
        lambda path, progress, stop: train_captioner(
            CaptionerTrainConfig.from_json(path), progress=progress, should_stop=stop
        ),
    )


if __name__ == "__main__":
    raise SystemExit(_main())
