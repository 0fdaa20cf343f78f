"""Frozen vision tower for Qwen2.5-VL: image features computed outside autograd (optionally
cached per image across epochs) and injected into the language model's input embeddings."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen_vl

# Token type ids as the Qwen2.5-VL processor writes them (mm_token_type_ids).
_TEXT, _IMAGE, _VIDEO = 0, 1, 2


def find_vlm_core(model: nn.Module) -> qwen_vl.Qwen2_5_VLModel:
    """The Qwen2_5_VLModel inside `model` (itself, a ForConditionalGeneration or a PEFT wrapper)."""
    for module in model.modules():
        if isinstance(module, qwen_vl.Qwen2_5_VLModel):
            return module
    raise TypeError(f"no Qwen2_5_VLModel inside {type(model).__name__}")


def _tokens_per_image(core: qwen_vl.Qwen2_5_VLModel, image_grid_thw: torch.Tensor) -> list[int]:
    merge = int(core.visual.spatial_merge_size)
    return [int(n) for n in (image_grid_thw.prod(-1) // (merge * merge)).tolist()]


def _patches_per_image(image_grid_thw: torch.Tensor) -> list[int]:
    return [int(n) for n in image_grid_thw.prod(-1).tolist()]


def check_vision_frozen(model: nn.Module) -> None:
    """Raise if any vision-tower parameter is trainable: no_grad features would drop its grads."""
    core = find_vlm_core(model)
    trainable = [name for name, p in core.visual.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"the vision tower has {len(trainable)} trainable parameters (e.g. {trainable[0]}); "
            "freeze it before computing its features outside autograd"
        )


def compute_image_features(
    model: nn.Module, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor
) -> list[torch.Tensor]:
    """Run the frozen vision tower without autograd; one (tokens, hidden) tensor per image."""
    check_vision_frozen(model)
    core = find_vlm_core(model)
    with torch.no_grad():
        visual = core.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw)
        merged = out.pooler_output if hasattr(out, "pooler_output") else out
        return list(torch.split(merged, _tokens_per_image(core, image_grid_thw)))


class VisionFeatureCache:
    """Image features keyed by (image key, grid), kept in memory and optionally on disk.

    The key names the image content (e.g. its sha256); the grid is added so the same image at
    another resolution is not confused with it. Use one cache (or one directory) per backbone."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        max_in_memory: int | None = None,
        store_device: torch.device | str = "cpu",
    ) -> None:
        self.directory = directory
        self.max_in_memory = max_in_memory
        self.store_device = torch.device(store_device)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self._memory)

    @staticmethod
    def _full_key(key: str, grid: Sequence[int]) -> str:
        if not key or any(c in key for c in "/\\\0") or key.startswith("."):
            raise ValueError(f"unusable image key {key!r}")
        return f"{key}-{'x'.join(str(int(g)) for g in grid)}"

    def _path(self, full_key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{full_key}.pt"

    def _remember(self, full_key: str, features: torch.Tensor) -> None:
        self._memory[full_key] = features
        self._memory.move_to_end(full_key)
        if self.max_in_memory is not None:
            while len(self._memory) > self.max_in_memory:
                self._memory.popitem(last=False)

    def _lookup(self, full_key: str, tokens: int) -> torch.Tensor | None:
        found = self._memory.get(full_key)
        if found is None:
            path = self._path(full_key)
            if path is not None and path.exists():
                found = torch.load(path, map_location=self.store_device, weights_only=True)
                self._remember(full_key, found)
        if found is not None and found.shape[0] != tokens:
            return None
        return found

    def get_or_compute(
        self,
        model: nn.Module,
        keys: Sequence[str],
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Features for each image, on the model's device; the vision tower runs only on misses."""
        core = find_vlm_core(model)
        grids = [[int(g) for g in row] for row in image_grid_thw.tolist()]
        if len(keys) != len(grids):
            raise ValueError(f"{len(keys)} keys for {len(grids)} images")
        full_keys = [self._full_key(k, g) for k, g in zip(keys, grids, strict=True)]
        tokens = _tokens_per_image(core, image_grid_thw)
        found = [self._lookup(fk, n) for fk, n in zip(full_keys, tokens, strict=True)]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            per_image = torch.split(pixel_values, _patches_per_image(image_grid_thw))
            fresh = compute_image_features(
                model,
                torch.cat([per_image[i] for i in missing]),
                image_grid_thw[missing],
            )
            for i, features in zip(missing, fresh, strict=True):
                stored = features.detach().to(self.store_device)
                self._remember(full_keys[i], stored)
                path = self._path(full_keys[i])
                if path is not None:
                    # Write-then-rename so a reader never sees half a file.
                    tmp = path.with_suffix(".tmp")
                    torch.save(stored.clone(), tmp)
                    tmp.replace(path)
                found[i] = features
        device = core.language_model.embed_tokens.weight.device
        return [f.to(device, non_blocking=True) for f in found if f is not None]


def multimodal_token_types(input_ids: torch.Tensor, config: Qwen2_5_VLConfig) -> torch.Tensor:
    """mm_token_type_ids for input_ids: 0 text, 1 image placeholder, 2 video placeholder."""
    types = torch.full_like(input_ids, _TEXT, dtype=torch.int32)
    types[input_ids == config.image_token_id] = _IMAGE
    types[input_ids == config.video_token_id] = _VIDEO
    return types


def inject_image_features(
    model: nn.Module,
    input_ids: torch.Tensor,
    image_features: Sequence[torch.Tensor],
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Input embeddings with the image placeholder tokens replaced by the image features."""
    core = find_vlm_core(model)
    if inputs_embeds is None:
        inputs_embeds = core.get_input_embeddings()(input_ids)
    features = torch.cat(list(image_features)).to(inputs_embeds.device, inputs_embeds.dtype)
    mask = (input_ids == core.config.image_token_id).unsqueeze(-1)
    placeholders = int(mask.sum())
    if placeholders != features.shape[0]:
        raise ValueError(
            f"{placeholders} image placeholder tokens for {features.shape[0]} image features"
        )
    return inputs_embeds.masked_scatter(mask, features)


def language_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    image_grid_thw: torch.Tensor,
    image_features: Sequence[torch.Tensor],
    inputs_embeds: torch.Tensor | None = None,
    mm_token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last-layer hidden states (batch, seq, hidden) of the language model, given precomputed
    image features: the vision tower is not run and autograd never sees it. The LM head is
    skipped too (the embedding needs hidden states, not logits)."""
    core = find_vlm_core(model)
    embeds = inject_image_features(model, input_ids, image_features, inputs_embeds)
    if mm_token_type_ids is None:
        mm_token_type_ids = multimodal_token_types(input_ids, core.config)
    # input_ids travel along only so the model can compute its 3D rope positions.
    out = core(
        input_ids=input_ids,
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        image_grid_thw=image_grid_thw,
        mm_token_type_ids=mm_token_type_ids,
        use_cache=False,
    )
    hidden: torch.Tensor = out.last_hidden_state
    return hidden
