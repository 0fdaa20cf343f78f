"""The relsim image encoder: Qwen2.5-VL reads "image then <|query|>", the last-layer hidden state
at the query token is projected to the text tower's space (384) and L2-normalised."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image
from torch import nn
from transformers import PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ml.relsim.inputs import QUERY_TOKEN, RelsimInputBuilder
from ml.vlm.backbone import LoadedVLM, load_vlm, lora_target_pattern

FinetuneMode = Literal["lora", "full"]


@dataclass
class RelsimConfig:
    """What a relsim model is made of; saved with every checkpoint."""

    backbone: str  # Qwen2.5-VL folder (tiny or real) or hub name
    image_size: int = 448
    text_dim: int = 384
    finetune: FinetuneMode = "lora"  # "full" is meant for tiny backbones
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # The released model never trains <|query|>'s input embedding; we do, through PEFT's
    # trainable tokens (the row itself is stored in the adapter, the rest of the table frozen).
    train_query_token: bool = True
    freeze_vision: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelsimConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown relsim config keys: {unknown}")
        return cls(**data)

    def validate(self) -> None:
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.finetune == "lora" and not self.freeze_vision:
            raise ValueError("a LoRA relsim model keeps its vision tower frozen")
        if not self.lora_targets:
            raise ValueError("lora_targets is empty")


def embedding_rows(model: Qwen2_5_VLForConditionalGeneration) -> int:
    """Rows of the input embedding table (may exceed the tokenizer's length)."""
    return int(cast(torch.Tensor, model.get_input_embeddings().weight).shape[0])


def add_query_token(
    tokenizer: PreTrainedTokenizerBase, model: Qwen2_5_VLForConditionalGeneration
) -> int:
    """Add <|query|> (or reuse it) and make sure the embedding tables have a row for it.

    Tables are grown, never shrunk: Qwen's tables carry spare rows, so with the real tokenizer
    the token lands at 151665 inside the existing table. A new row starts at the mean row."""
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [QUERY_TOKEN]}, replace_extra_special_tokens=False
    )
    query_id = int(tokenizer.get_vocab()[QUERY_TOKEN])
    old_rows = embedding_rows(model)
    if query_id >= old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for table in (model.get_input_embeddings(), model.get_output_embeddings()):
                if table is not None:
                    weight = cast(torch.Tensor, table.weight)
                    weight[old_rows:] = weight[:old_rows].mean(dim=0, keepdim=True)
    return query_id


def lora_config_for(config: RelsimConfig, query_token_id: int) -> LoraConfig:
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_pattern(config.lora_targets),
        bias="none",
        trainable_token_indices=(
            {"embed_tokens": [query_token_id]} if config.train_query_token else None
        ),
    )


def query_positions(input_ids: torch.Tensor, query_token_id: int) -> torch.Tensor:
    """Index of the single query token in each row; ValueError if a row has none or several."""
    is_query = input_ids == query_token_id
    counts = is_query.sum(dim=1)
    if bool((counts != 1).any()):
        bad = [(i, int(c)) for i, c in enumerate(counts.tolist()) if c != 1]
        raise ValueError(
            f"each sample needs exactly one {QUERY_TOKEN} (id {query_token_id}); "
            f"(sample, count) pairs that do not: {bad[:8]}"
        )
    return is_query.to(torch.int8).argmax(dim=1)


class RelsimModel(nn.Module):
    """Backbone (LoRA-wrapped or fully trainable) + projection; forward gives unit vectors."""

    def __init__(
        self,
        config: RelsimConfig,
        backbone: Qwen2_5_VLForConditionalGeneration | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
        query_token_id: int,
        projection: nn.Linear,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.projection = projection
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.query_token_id = query_token_id
        self.inputs = RelsimInputBuilder(tokenizer, image_processor, config.image_size)

    @property
    def core(self) -> Qwen2_5_VLModel:
        """The Qwen2_5_VLModel inside: calling it skips the LM head's vocabulary-sized logits."""
        model = (
            self.backbone.get_base_model()
            if isinstance(self.backbone, PeftModel)
            else self.backbone
        )
        return cast(Qwen2_5_VLModel, model.model)

    @property
    def hidden_size(self) -> int:
        return int(self.projection.in_features)

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        mm_token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        # Checked before the expensive forward so a malformed batch fails fast.
        positions = query_positions(input_ids, self.query_token_id)
        out = self.core(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            use_cache=False,
        )
        hidden = out.last_hidden_state  # after the final norm, as hidden_states[-1]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        # The head runs in float32 whatever the backbone's dtype, for a stable normalisation.
        features = hidden[rows, positions.to(hidden.device)].float()
        with torch.autocast(device_type=features.device.type, enabled=False):
            return F.normalize(self.projection(features), dim=-1)

    def encode(
        self, images: Sequence[Image.Image], *, preprocessed: bool = False
    ) -> dict[str, torch.Tensor]:
        """Model inputs for `images`, on the model's device."""
        batch = self.inputs(images, preprocessed=preprocessed)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def embed_images(
        self, images: Sequence[Image.Image], *, batch_size: int = 16, preprocessed: bool = False
    ) -> torch.Tensor:
        """Unit-norm float32 embeddings [len(images), text_dim] on the CPU."""
        was_training = self.training
        self.eval()
        try:
            chunks = [
                self(**self.encode(images[i : i + batch_size], preprocessed=preprocessed)).cpu()
                for i in range(0, len(images), batch_size)
            ]
        finally:
            self.train(was_training)
        if not chunks:
            return torch.empty((0, self.projection.out_features))
        return torch.cat(chunks)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters the optimiser updates, in a fixed order (the optimiser state relies on it)."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def query_input_embedding(self) -> torch.Tensor:
        """The input embedding the LLM currently sees for <|query|> (a copy)."""
        table = self.backbone.get_input_embeddings()
        token = torch.tensor([self.query_token_id], device=self.device)
        with torch.no_grad():
            return table(token)[0].detach().clone()  # type: ignore[no-any-return]


def _freeze_for_full_finetune(
    model: Qwen2_5_VLForConditionalGeneration, freeze_vision: bool
) -> None:
    for param in model.parameters():
        param.requires_grad = True
    # relsim never computes logits, so the LM head gets no gradient: keep it out of the optimiser.
    output = model.get_output_embeddings()
    if output is not None:
        for param in output.parameters():
            param.requires_grad = False
    if freeze_vision:
        for param in model.model.visual.parameters():
            param.requires_grad = False


def assemble_relsim_model(
    config: RelsimConfig,
    vlm: LoadedVLM,
    *,
    seed: int = 0,
    adapter_dir: str | Path | None = None,
    trainable: bool = True,
) -> RelsimModel:
    """Wrap a loaded VLM as relsim: query token, LoRA (fresh or from `adapter_dir`) or full
    fine-tuning, projection head. Random parts are drawn from `seed`."""
    config.validate()
    model = vlm.model
    query_id = add_query_token(vlm.tokenizer, model)
    for param in model.parameters():
        param.requires_grad = False
    device = cast(torch.Tensor, model.get_input_embeddings().weight).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        backbone: Qwen2_5_VLForConditionalGeneration | PeftModel
        if config.finetune == "lora":
            with warnings.catch_warnings():
                # PEFT still asks transformers the pre-v5 gradient-checkpointing question.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                if adapter_dir is not None:
                    backbone = PeftModel.from_pretrained(
                        model, str(adapter_dir), is_trainable=trainable
                    )
                else:
                    backbone = get_peft_model(model, lora_config_for(config, query_id))
        else:
            backbone = model
            if trainable:
                _freeze_for_full_finetune(model, config.freeze_vision)
        hidden_size = int(model.config.get_text_config().hidden_size)
        projection = nn.Linear(hidden_size, config.text_dim).to(device)
    if not trainable:
        for param in projection.parameters():
            param.requires_grad = False
    return RelsimModel(config, backbone, vlm.tokenizer, vlm.image_processor, query_id, projection)


def build_relsim_model(
    config: RelsimConfig,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> RelsimModel:
    """A fresh, trainable relsim model on top of the backbone folder named in `config`."""
    vlm = load_vlm(config.backbone, dtype=dtype, device=device)
    return assemble_relsim_model(config, vlm, seed=seed)
