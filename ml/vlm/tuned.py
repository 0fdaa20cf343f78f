"""The shared base of every Qwen2.5-VL tuned to a task by its language head (the captioner,
the interest filter): multi-image chat inputs with masked labels, LoRA set-up, and saving and
loading a tuned VLM."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image
from torch import nn
from transformers import PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ml.data.images import check_image_size, preprocess_image
from ml.vlm.backbone import (
    load_image_processor,
    load_qwen_model,
    load_tokenizer,
    load_vlm,
    lora_target_pattern,
    quiet_transformers,
)

IMAGE_PAD_TOKEN = "<|image_pad|>"
END_TOKEN = "<|im_end|>"
IGNORE_INDEX = -100  # label of positions that take no part in the loss
FULL_BACKBONE_DIR = "backbone"  # full fine-tuning keeps the whole backbone here

FinetuneMode = Literal["lora", "full"]
PaddingSide = Literal["left", "right"]


@dataclass
class VLMTuneConfig:
    """How a Qwen2.5-VL is adapted to one task; saved with every checkpoint."""

    backbone: str  # Qwen2.5-VL folder (tiny or real) or hub name
    image_size: int = 448
    finetune: FinetuneMode = "lora"  # "full" is meant for tiny backbones
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    freeze_vision: bool = True  # full fine-tuning only; LoRA never touches the vision tower
    prompt_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[_ConfigT], data: dict[str, Any]) -> _ConfigT:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**data)

    def validate(self) -> None:
        check_image_size(self.image_size)
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if not self.lora_targets:
            raise ValueError("lora_targets is empty")
        if self.lora_r < 1:
            raise ValueError("lora_r must be at least 1")


_ConfigT = TypeVar("_ConfigT", bound=VLMTuneConfig)


@dataclass(frozen=True)
class ChatSample:
    """One user turn: images first, then the instruction; `answer` is the reply to learn."""

    images: Sequence[Image.Image]
    prompt: str
    answer: str | None = None


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.get_vocab().get(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token}")
    return int(token_id)


class VisionChatBuilder:
    """Padded model inputs for chat samples with any number of images each: image placeholders
    expanded, 3D-rope token types, and labels that keep only the answer and its end token."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
        image_size: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_size = check_image_size(image_size)
        self.image_token_id = _token_id(tokenizer, IMAGE_PAD_TOKEN)
        self.end_token_id = _token_id(tokenizer, END_TOKEN)
        pad_id = tokenizer.pad_token_id
        self.pad_token_id = int(pad_id if pad_id is not None else self.end_token_id)

    def prompt_text(self, n_images: int, instruction: str) -> str:
        """The rendered chat up to the assistant's turn, with one placeholder per image."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": instruction})
        messages: Any = [{"role": "user", "content": content}]
        text = str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        if text.count(IMAGE_PAD_TOKEN) != n_images:
            raise ValueError(
                f"the chat template rendered {text.count(IMAGE_PAD_TOKEN)} image placeholders "
                f"for {n_images} images"
            )
        return text

    def __call__(
        self,
        samples: Sequence[ChatSample],
        *,
        padding_side: PaddingSide = "left",
        preprocessed: bool = False,
    ) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("no samples to encode")
        if any(not sample.images for sample in samples):
            raise ValueError("every sample needs at least one image")
        flat = [image for sample in samples for image in sample.images]
        if not preprocessed:
            flat = [preprocess_image(image, self.image_size) for image in flat]
        vision = self.image_processor(images=flat, return_tensors="pt")
        grid_thw = vision["image_grid_thw"]
        merge = int(self.image_processor.merge_size)
        tokens_per_image = [int(thw.prod()) // (merge * merge) for thw in grid_thw]

        rows: list[list[int]] = []
        label_rows: list[list[int]] = []
        first = 0
        for sample in samples:
            counts = tokens_per_image[first : first + len(sample.images)]
            first += len(sample.images)
            parts = self.prompt_text(len(sample.images), sample.prompt).split(IMAGE_PAD_TOKEN)
            text = parts[0] + "".join(
                IMAGE_PAD_TOKEN * n + part for n, part in zip(counts, parts[1:], strict=True)
            )
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            labels = [IGNORE_INDEX] * len(ids)
            if sample.answer is not None:
                # Tokenised apart from the prompt so that the prompt's tokens are exactly those
                # generation will see, whatever BPE would merge across the boundary.
                answer = list(self.tokenizer(sample.answer, add_special_tokens=False)["input_ids"])
                answer.append(self.end_token_id)
                ids += answer
                labels += answer
            rows.append(ids)
            label_rows.append(labels)

        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels_tensor = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, labels) in enumerate(zip(rows, label_rows, strict=True)):
            span = (
                slice(length - len(ids), length) if padding_side == "left" else slice(0, len(ids))
            )
            input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, span] = 1
            labels_tensor[i, span] = torch.tensor(labels, dtype=torch.long)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": grid_thw,
            # Text 0, image 1: image tokens get 2D rope positions.
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
        }
        if any(sample.answer is not None for sample in samples):
            batch["labels"] = labels_tensor
        return batch


def prepare_backbone(
    config: VLMTuneConfig,
    model: Qwen2_5_VLForConditionalGeneration,
    *,
    seed: int = 0,
    adapter_dir: str | Path | None = None,
    trainable: bool = True,
) -> Qwen2_5_VLForConditionalGeneration | PeftModel:
    """LoRA on the language model (fresh, or from `adapter_dir`), or the bare model made
    trainable for full fine-tuning. LoRA's random parts are drawn from `seed`."""
    for param in model.parameters():
        param.requires_grad = False
    if config.finetune == "full":
        if trainable:
            for param in model.parameters():
                param.requires_grad = True
            if config.freeze_vision:
                for param in model.model.visual.parameters():
                    param.requires_grad = False
        return model
    device = cast(torch.Tensor, model.get_input_embeddings().weight).device
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        warnings.catch_warnings(),
    ):
        torch.manual_seed(seed)
        # PEFT still asks transformers the pre-v5 gradient-checkpointing question.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        if adapter_dir is not None:
            return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=lora_target_pattern(config.lora_targets),
            bias="none",
        )
        return cast(PeftModel, get_peft_model(model, lora))


class TunedVLM(nn.Module):
    """A Qwen2.5-VL adapted to one task, with its tokenizer, image processor and input builder."""

    config: VLMTuneConfig

    def __init__(
        self,
        config: VLMTuneConfig,
        backbone: Qwen2_5_VLForConditionalGeneration | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.inputs = VisionChatBuilder(tokenizer, image_processor, config.image_size)

    @property
    def model(self) -> Qwen2_5_VLForConditionalGeneration:
        """The Qwen model itself; PEFT injects LoRA in place, so calling it uses the adapter."""
        if isinstance(self.backbone, PeftModel):
            return cast(Qwen2_5_VLForConditionalGeneration, self.backbone.get_base_model())
        return self.backbone

    @property
    def core(self) -> Qwen2_5_VLModel:
        """Qwen2_5_VLModel: hidden states without the vocabulary-sized logits."""
        return cast(Qwen2_5_VLModel, self.model.model)

    @property
    def lm_head(self) -> nn.Module:
        return cast(nn.Module, self.model.lm_head)

    @property
    def device(self) -> torch.device:
        return cast(torch.Tensor, self.model.get_input_embeddings().weight).device

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """What an optimiser updates, in a fixed order (saved optimiser states rely on it)."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def export_backbone(model: TunedVLM, out_dir: str | Path) -> Path:
    """A standalone Qwen2.5-VL folder (weights with any LoRA merged in, tokenizer, chat
    template, image processor) that `load_vlm` reads and any task can be tuned from: a filter
    started from a captioner, say. The tuned model itself is left as it was."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model.backbone, PeftModel):
        # Merging rewrites the base weights in place, so merge a copy.
        merged = copy.deepcopy(model.backbone).merge_and_unload()
    else:
        merged = model.backbone
    with quiet_transformers():
        merged.save_pretrained(str(out))
    model.tokenizer.save_pretrained(str(out))
    model.image_processor.save_pretrained(str(out))
    return out


_ModelT = TypeVar("_ModelT", bound=TunedVLM)
Backbone = Qwen2_5_VLForConditionalGeneration | PeftModel


@dataclass(frozen=True)
class TunedKind(Generic[_ConfigT, _ModelT]):
    """One kind of tuned VLM (captioner, filter): how it is built from its config, and the
    JSON record that marks and describes a saved folder of that kind."""

    config_type: type[_ConfigT]
    make: Callable[[_ConfigT, Backbone, PreTrainedTokenizerBase, Qwen2VLImageProcessorPil], _ModelT]
    record_file: str
    format: str

    def build(
        self,
        config: _ConfigT,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> _ModelT:
        """A fresh, trainable model on the backbone named in `config`."""
        config.validate()
        vlm = load_vlm(config.backbone, dtype=dtype, device=device)
        backbone = prepare_backbone(config, vlm.model, seed=seed)
        return self.make(config, backbone, vlm.tokenizer, vlm.image_processor)

    def save(
        self,
        model: _ModelT,
        out_dir: str | Path,
        *,
        global_step: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Adapter (or full backbone) + tokenizer + image processor + our JSON record."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(model.backbone, PeftModel):
            model.backbone.save_pretrained(str(out))
        else:
            with quiet_transformers():
                model.backbone.save_pretrained(str(out / FULL_BACKBONE_DIR))
        model.tokenizer.save_pretrained(str(out))
        model.image_processor.save_pretrained(str(out))
        record = {
            "config": model.config.to_dict(),
            "format": self.format,
            "prompt_version": model.config.prompt_version,
            "global_step": global_step,
            "extra": extra or {},
        }
        (out / self.record_file).write_text(json.dumps(record, indent=2), encoding="utf-8")
        return out

    def read_record(self, path: str | Path) -> dict[str, Any]:
        record_path = Path(path) / self.record_file
        if not record_path.is_file():
            raise FileNotFoundError(
                f"not a saved model of this kind (no {self.record_file}): {path}"
            )
        record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
        return record

    def load(
        self,
        path: str | Path,
        *,
        base_model: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        trainable: bool = False,
    ) -> _ModelT:
        """Load a saved model; `base_model` overrides the backbone location it records."""
        folder = Path(path)
        config = self.config_type.from_dict(self.read_record(folder)["config"])
        if base_model is not None:
            config.backbone = str(base_model)
        config.validate()
        if config.finetune == "full":
            model = load_qwen_model(folder / FULL_BACKBONE_DIR, dtype=dtype, device=device)
        else:
            model = load_qwen_model(config.backbone, dtype=dtype, device=device)
        backbone = prepare_backbone(
            config,
            model,
            adapter_dir=folder if config.finetune == "lora" else None,
            trainable=trainable,
        )
        tuned = self.make(config, backbone, load_tokenizer(folder), load_image_processor(folder))
        tuned.train(trainable)
        return tuned
