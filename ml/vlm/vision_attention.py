"""Batched attention for the Qwen2.5-VL vision tower: equal-length windows and images go
through one scaled_dot_product_attention call instead of one call per window."""

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen_vl

_PATCHED_FLAG = "_relsim_batched_attention"


@dataclass(frozen=True)
class _Bucket:
    """Segments sharing one length, laid out contiguously in the gathered order."""

    count: int
    length: int


@dataclass(frozen=True)
class _SegmentPlan:
    """How to regroup a packed sequence of segments into per-length batches."""

    buckets: tuple[_Bucket, ...]
    # None when the segments already share one length: no reordering needed.
    order: torch.Tensor | None
    inverse: torch.Tensor | None


class _PlanCache:
    """Remembers the plan for the last few cu_seqlens tensors.

    Every block of one forward pass receives the same two cu_seqlens tensors (windows and
    whole images); keeping a reference to them makes identity checks safe and saves one
    device-to-host copy per block."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.entries: list[tuple[torch.Tensor, _SegmentPlan]] = []

    def plan_for(self, cu_seqlens: torch.Tensor) -> _SegmentPlan:
        for tensor, plan in self.entries:
            if tensor is cu_seqlens:
                return plan
        plan = _make_plan(cu_seqlens)
        self.entries.insert(0, (cu_seqlens, plan))
        del self.entries[self.size :]
        return plan


def _make_plan(cu_seqlens: torch.Tensor) -> _SegmentPlan:
    bounds = [int(x) for x in cu_seqlens.tolist()]
    starts = bounds[:-1]
    lengths = [end - start for start, end in itertools.pairwise(bounds)]
    # Zero-length segments (possible after unique_consecutive edge cases) carry no tokens.
    by_length: dict[int, list[int]] = {}
    for start, length in zip(starts, lengths, strict=True):
        if length > 0:
            by_length.setdefault(length, []).append(start)
    buckets = tuple(_Bucket(len(group), length) for length, group in by_length.items())
    if len(buckets) == 1 and starts[0] == 0:
        return _SegmentPlan(buckets=buckets, order=None, inverse=None)
    order = torch.cat(
        [
            (torch.tensor(group)[:, None] + torch.arange(length)[None, :]).reshape(-1)
            for length, group in by_length.items()
        ]
    ).to(cu_seqlens.device)
    return _SegmentPlan(buckets=buckets, order=order, inverse=torch.argsort(order))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Same arithmetic as the reference: rotate in float32, cast back to the input dtype.
    cos = cos.unsqueeze(-2).float()
    sin = sin.unsqueeze(-2).float()
    q32, k32 = q.float(), k.float()
    q_out = q32 * cos + _rotate_half(q32) * sin
    k_out = k32 * cos + _rotate_half(k32) * sin
    return q_out.to(q.dtype), k_out.to(k.dtype)


def batched_segment_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    scale: float,
    dropout_p: float = 0.0,
    plan_cache: _PlanCache | None = None,
) -> torch.Tensor:
    """Block-diagonal attention over packed segments.

    query, key, value: (tokens, heads, head_dim), segments given by cu_seqlens. Returns
    (tokens, heads, head_dim). One SDPA call per distinct segment length."""
    plan = (plan_cache or _PlanCache(1)).plan_for(cu_seqlens)
    if plan.order is not None:
        query, key, value = query[plan.order], key[plan.order], value[plan.order]
    heads, head_dim = query.shape[1], query.shape[2]
    outputs = []
    offset = 0
    for bucket in plan.buckets:
        size = bucket.count * bucket.length
        chunks = [
            t[offset : offset + size]
            .reshape(bucket.count, bucket.length, heads, head_dim)
            .transpose(1, 2)
            for t in (query, key, value)
        ]
        out = F.scaled_dot_product_attention(
            chunks[0], chunks[1], chunks[2], dropout_p=dropout_p, scale=scale
        )
        outputs.append(out.transpose(1, 2).reshape(size, heads, head_dim))
        offset += size
    merged = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return merged if plan.inverse is None else merged[plan.inverse]


def _batched_forward(
    # A Qwen2_5_VLVisionAttention; typed Any because its attributes are not annotated.
    self: Any,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_seqlen: int | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    if position_embeddings is None:
        raise ValueError("the batched vision attention needs position_embeddings (cos, sin)")
    tokens = hidden_states.shape[0]
    heads: int = self.num_heads
    qkv = self.qkv(hidden_states).reshape(tokens, 3, heads, -1)
    query, key, value = qkv.unbind(1)
    query, key = _apply_rotary(query, key, *position_embeddings)
    dropout_p = float(self.attention_dropout) if self.training else 0.0
    out = batched_segment_attention(
        query,
        key,
        value,
        cu_seqlens,
        scale=float(self.scaling),
        dropout_p=dropout_p,
        plan_cache=self._relsim_plan_cache,
    )
    projected: torch.Tensor = self.proj(out.reshape(tokens, -1))
    return projected


def _vision_attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, qwen_vl.Qwen2_5_VLVisionAttention)]


def patch_vision_attention(model: nn.Module) -> int:
    """Route every Qwen2.5-VL vision attention of `model` through the batched forward.

    Leaves the model alone when it uses flash attention (already one varlen call). Safe to call
    twice. Returns the number of attention modules patched."""
    patched = 0
    # One cache shared by all blocks: they all see the same cu_seqlens tensors.
    cache = _PlanCache()
    for module in _vision_attention_modules(model):
        if getattr(module, _PATCHED_FLAG, False):
            continue
        if "flash" in str(getattr(module.config, "_attn_implementation", "") or ""):
            continue
        module._relsim_plan_cache = cache  # type: ignore[assignment]
        module.forward = types.MethodType(_batched_forward, module)
        setattr(module, _PATCHED_FLAG, True)
        patched += 1
    return patched


def unpatch_vision_attention(model: nn.Module) -> int:
    """Undo patch_vision_attention; returns the number of modules restored."""
    restored = 0
    for module in _vision_attention_modules(model):
        if getattr(module, _PATCHED_FLAG, False):
            del module.forward
            del module._relsim_plan_cache
            delattr(module, _PATCHED_FLAG)
            restored += 1
    return restored


def is_vision_attention_patched(model: nn.Module) -> bool:
    """True when at least one vision attention module runs the batched forward."""
    return any(getattr(m, _PATCHED_FLAG, False) for m in _vision_attention_modules(model))
