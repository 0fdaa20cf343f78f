"""Speed of relsim training and embedding on the full-size Qwen2.5-VL-7B architecture (random
weights, bf16, CUDA): the release-like step against the project's fast path.

    python3 -m benchmarks.gpu_relsim            # on a GPU machine; JSON to $OUT/gpu_relsim.json
    python3 -m benchmarks.gpu_relsim --quick    # tiny config on CPU, end to end, in seconds

Release-like step: plain sdpa everywhere (vision attention loops over its windows in Python),
the vision tower inside autograd (its patch embedding output requires grad, as
enable_input_require_grads() makes it when adapters are trained that way), the full model
forward with output_hidden_states=True (LM-head logits included) and a per-sample Python loop
to find the query token.
Fast step: batched vision attention, the frozen vision tower under no_grad (or its features
reused from a cache: a later epoch), the language model alone (no LM head) and one indexing op
for the query token. Both: LoRA r16/alpha32/dropout 0.05 on q_proj and v_proj, a trainable
query-token embedding, Linear(hidden, 384), InfoNCE (T 0.07) against random 384-d text
embeddings, AdamW, grad clip 1.0. The same batch is reused every step: data loading and image
preprocessing are not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # noqa: E402

from ml.relsim import RelsimConfig, lora_config_for  # noqa: E402
from ml.vlm import qwen25vl_7b_config  # noqa: E402
from ml.vlm.vision_speedups import (  # noqa: E402
    VisionFeatureCache,
    compute_image_features,
    find_vlm_core,
    gather_token_states,
    language_hidden_states,
    multimodal_token_types,
    patch_vision_attention,
    unpatch_vision_attention,
)

TEXT_DIM = 384
TEMPERATURE = 0.07
PEAK_BF16_DENSE = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12}
# Qwen's special token ids (the real tokenizer); <|query|> is the token relsim adds.
IM_START, IM_END, QUERY_ID = 151644, 151645, 151665


def log(message: str = "") -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- configs


def full_config() -> tuple[Qwen2_5_VLConfig, str]:
    """Qwen2.5-VL-7B's architecture, as the project defines it."""
    return qwen25vl_7b_config(), "ml.vlm.qwen25vl_7b_config()"


def tiny_config() -> tuple[Qwen2_5_VLConfig, str]:
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1, 3],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config={
            "vocab_size": 512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
            },
        },
        image_token_id=500,
        video_token_id=501,
        vision_start_token_id=502,
        vision_end_token_id=503,
    )
    return config, "tiny test config"


# ----------------------------------------------------------------------------- model


@dataclass
class Bench:
    model: nn.Module  # PEFT-wrapped Qwen2_5_VLForConditionalGeneration
    head: nn.Linear
    # None when PEFT trains the <|query|> row itself (the project's LoRA config).
    query_embedding: nn.Parameter | None
    query_token_id: int
    device: torch.device
    dtype: torch.dtype
    image_size: int


def relsim_lora(query_token_id: int, own: bool) -> tuple[LoraConfig, bool]:
    """The project's LoRA config (True), or the release-like one with a separate trainable
    query embedding (False)."""
    if not own:
        config = lora_config_for(RelsimConfig(backbone="benchmark"), query_token_id)
        log("  LoRA: ml.relsim.lora_config_for (r16, q_proj/v_proj, <|query|> row)")
        return config, True
    log("  LoRA: r16 alpha32 q_proj/v_proj + a separate trainable query embedding")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
    return lora, False


def build_bench(
    config: Qwen2_5_VLConfig,
    device: torch.device,
    dtype: torch.dtype,
    image_size: int,
    own_lora: bool = False,
) -> Bench:
    # Built straight on the device in the target dtype: no CPU copy, no download.
    with torch.device(device):
        base = Qwen2_5_VLForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype, attn_implementation="sdpa"
        )
    base.requires_grad_(False)
    text_config: Any = config.text_config
    hidden, vocab = int(text_config.hidden_size), int(text_config.vocab_size)
    query_token_id = QUERY_ID if vocab > QUERY_ID else vocab - 8
    lora, project_lora = relsim_lora(query_token_id, own_lora)
    model = get_peft_model(base, lora)
    query_embedding = None
    if not project_lora:
        embed_weight: Any = find_vlm_core(model).get_input_embeddings().weight
        query_embedding = nn.Parameter(embed_weight[query_token_id].detach().float().clone())
    head = nn.Linear(hidden, TEXT_DIM, device=device, dtype=torch.float32)
    return Bench(model, head, query_embedding, query_token_id, device, dtype, image_size)


def trainable_parameters(bench: Bench) -> list[nn.Parameter]:
    params = [p for p in bench.model.parameters() if p.requires_grad]
    if bench.query_embedding is not None:
        params.append(bench.query_embedding)
    return [*params, *bench.head.parameters()]


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    text_embeddings: torch.Tensor
    keys: list[str]


def make_batch(bench: Bench, size: int, seed: int) -> Batch:
    """One user turn per sample, as the chat template lays it out: text, the image, <|query|>."""
    config: Any = find_vlm_core(bench.model).config
    vision = config.vision_config
    patches_side = bench.image_size // int(vision.patch_size)
    merge = int(vision.spatial_merge_size)
    image_tokens = (patches_side // merge) ** 2
    vocab = int(config.text_config.vocab_size)
    gen = torch.Generator().manual_seed(seed)

    def text(n: int) -> list[int]:
        return torch.randint(10, min(vocab - 16, 150000), (n,), generator=gen).tolist()

    im_start = IM_START if vocab > IM_START else 3
    im_end = IM_END if vocab > IM_END else 4
    image = [config.vision_start_token_id, *[config.image_token_id] * image_tokens]
    image.append(config.vision_end_token_id)
    rows = [
        [
            im_start,
            *text(9),
            im_end,
            im_start,
            *text(2),
            *image,
            bench.query_token_id,
            im_end,
            *text(1),
        ]
        for _ in range(size)
    ]
    input_ids = torch.tensor(rows, device=bench.device)
    patch_dim = (
        int(vision.in_channels) * int(vision.temporal_patch_size) * int(vision.patch_size) ** 2
    )
    pixels = torch.randn(size * patches_side**2, patch_dim, generator=gen)
    text_embeddings = F.normalize(torch.randn(size, TEXT_DIM, generator=gen), dim=-1)
    return Batch(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=multimodal_token_types(input_ids, config),
        pixel_values=pixels.to(bench.device, bench.dtype),
        image_grid_thw=torch.tensor([[1, patches_side, patches_side]] * size, device=bench.device),
        text_embeddings=text_embeddings.to(bench.device),
        keys=[f"img{seed}-{i}" for i in range(size)],
    )


def embeds_with_query(bench: Bench, input_ids: torch.Tensor) -> torch.Tensor | None:
    if bench.query_embedding is None:
        return None  # the embedding layer itself holds the trainable row
    core = find_vlm_core(bench.model)
    embeds = core.get_input_embeddings()(input_ids)
    is_query = (input_ids == bench.query_token_id).unsqueeze(-1)
    return torch.where(is_query, bench.query_embedding.to(embeds.dtype), embeds)


def release_query_states(bench: Bench, batch: Batch) -> torch.Tensor:
    out = bench.model(
        input_ids=batch.input_ids,
        inputs_embeds=embeds_with_query(bench, batch.input_ids),
        attention_mask=batch.attention_mask,
        pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
        mm_token_type_ids=batch.mm_token_type_ids,
        output_hidden_states=True,
        use_cache=False,
    )
    hidden = out.hidden_states[-1]
    # The release's per-sample search: one device-to-host sync per sample.
    rows = []
    for i in range(hidden.shape[0]):
        position = int((batch.input_ids[i] == bench.query_token_id).nonzero()[0, 0])
        rows.append(hidden[i, position])
    return torch.stack(rows)


def plain_query_states(bench: Bench, batch: Batch) -> torch.Tensor:
    """What RelsimModel.forward does: the core model (no LM head) with pixel_values, one
    validated vectorised gather; the vision tower runs unpatched under grad mode."""
    try:
        from ml.relsim.model import query_positions

        positions = query_positions(batch.input_ids, bench.query_token_id)
    except ImportError:
        positions = (batch.input_ids == bench.query_token_id).int().argmax(dim=1)
    out = find_vlm_core(bench.model)(
        input_ids=batch.input_ids,
        inputs_embeds=embeds_with_query(bench, batch.input_ids),
        attention_mask=batch.attention_mask,
        pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
        mm_token_type_ids=batch.mm_token_type_ids,
        use_cache=False,
    )
    hidden: torch.Tensor = out.last_hidden_state
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]


def fast_query_states(bench: Bench, batch: Batch, cache: VisionFeatureCache | None) -> torch.Tensor:
    if cache is None:
        features = compute_image_features(bench.model, batch.pixel_values, batch.image_grid_thw)
    else:
        features = cache.get_or_compute(
            bench.model, batch.keys, batch.pixel_values, batch.image_grid_thw
        )
    hidden = language_hidden_states(
        bench.model,
        batch.input_ids,
        batch.attention_mask,
        batch.image_grid_thw,
        features,
        inputs_embeds=embeds_with_query(bench, batch.input_ids),
        mm_token_type_ids=batch.mm_token_type_ids,
    )
    return gather_token_states(hidden, batch.input_ids, bench.query_token_id, check=False)


def embed(bench: Bench, query_states: torch.Tensor) -> torch.Tensor:
    return F.normalize(bench.head(query_states.float()), dim=-1)


def info_nce(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    logits = image @ text.T / TEMPERATURE
    return F.cross_entropy(logits, torch.arange(image.shape[0], device=image.device))


@contextlib.contextmanager
def release_mode(bench: Bench) -> Iterator[None]:
    """Unpatched vision attention and the frozen vision tower recorded by autograd."""
    unpatch_vision_attention(bench.model)
    visual = find_vlm_core(bench.model).visual
    handle = visual.patch_embed.register_forward_hook(
        lambda _m, _i, out: out.requires_grad_(True) if torch.is_grad_enabled() else out
    )
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def plain_mode(bench: Bench) -> Iterator[None]:
    unpatch_vision_attention(bench.model)
    yield


@contextlib.contextmanager
def fast_mode(bench: Bench) -> Iterator[None]:
    patch_vision_attention(bench.model)
    try:
        yield
    finally:
        unpatch_vision_attention(bench.model)


METHODS = ("release-like", "project-plain", "ours", "ours+reuse")


def method_mode(bench: Bench, method: str) -> contextlib.AbstractContextManager[None]:
    if method == "release-like":
        return release_mode(bench)
    if method == "project-plain":
        return plain_mode(bench)
    return fast_mode(bench)


def query_states(
    bench: Bench, method: str, batch: Batch, cache: VisionFeatureCache | None
) -> torch.Tensor:
    if method == "release-like":
        return release_query_states(bench, batch)
    if method == "project-plain":
        return plain_query_states(bench, batch)
    return fast_query_states(bench, batch, cache)


def step_function(bench: Bench, method: str, batch: Batch) -> Callable[[], torch.Tensor]:
    params = trainable_parameters(bench)
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    cache = VisionFeatureCache(store_device=bench.device) if method == "ours+reuse" else None

    def step() -> torch.Tensor:
        states = query_states(bench, method, batch, cache)
        loss = info_nce(embed(bench, states), batch.text_embeddings)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


# ----------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def timed(
    fn: Callable[[], object], device: torch.device, warmup: int, steps: int
) -> tuple[float, float | None]:
    """Seconds per call after warm-up, and peak GiB allocated over warm-up and timed calls."""
    free_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps, peak_gib(device)


@dataclass
class Figure:
    section: str
    method: str
    batch: int
    samples_per_s: float | None = None
    step_ms: float | None = None
    peak_gib: float | None = None
    tflops: float | None = None
    mfu: float | None = None
    error: str | None = None


# Called with every figure as soon as it is measured (printing, saving the JSON).
FIGURE_LISTENERS: list[Callable[[Figure], None]] = []


def record(figure: Figure) -> Figure:
    log(f"  {describe(figure)}")
    for listener in FIGURE_LISTENERS:
        listener(figure)
    return figure


def short_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]


# ----------------------------------------------------------------------------- FLOPs


FLOP_FORMULA = (
    "useful FLOPs per sample; LM forward = 2*N_lm*T + 2*layers*T^2*d (N_lm: decoder-layer "
    "weights, T tokens, causal attention); training = 2 x LM forward (forward + activation-"
    "gradient backward of the frozen base; LoRA weight grads negligible) + vision forward "
    "(2*N_vis*patches + merger on patches/4 + 4*d_v*patches*window or image); vision not "
    "counted when its features are reused; embedding = LM forward + vision forward. Backward "
    "through the frozen vision tower and LM-head logits (release-like) are waste: not counted. "
    "MFU = FLOPs / step time / peak dense bf16 (989 TFLOP/s on H100/H200 SXM)."
)


@dataclass(frozen=True)
class FlopModel:
    """Useful FLOPs per sample: 2 per multiply-add of each weight matrix, plus attention."""

    lm_forward: float
    vision_forward: float

    def training(self, vision: bool) -> float:
        # Frozen base with LoRA: forward 2N plus activation-gradient backward 2N per token;
        # no weight gradients, and the frozen vision tower needs its forward only.
        return 2 * self.lm_forward + (self.vision_forward if vision else 0.0)

    def inference(self) -> float:
        return self.lm_forward + self.vision_forward


def flop_model(bench: Bench, sequence: int) -> FlopModel:
    core = find_vlm_core(bench.model)
    config: Any = core.config
    text, vision = config.text_config, config.vision_config

    def weights(module: nn.Module) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)

    lm_weights = weights(core.language_model.layers)
    layers, hidden = int(text.num_hidden_layers), int(text.hidden_size)
    # Causal attention: QK^T and AV over half the pairs on average.
    lm_forward = 2 * lm_weights * sequence + 2 * layers * sequence**2 * hidden
    visual = core.visual
    patches = (bench.image_size // int(vision.patch_size)) ** 2
    merge_unit = int(vision.spatial_merge_size) ** 2
    window = (int(vision.window_size) // int(vision.patch_size)) ** 2
    full_layers = len(vision.fullatt_block_indexes)
    window_layers = int(vision.depth) - full_layers
    vision_hidden = int(vision.hidden_size)
    vision_forward = (
        2 * (weights(visual.blocks) + weights(visual.patch_embed)) * patches
        + 2 * weights(visual.merger) * patches / merge_unit
        + 4
        * vision_hidden
        * patches
        * (window_layers * min(window, patches) + full_layers * patches)
    )
    return FlopModel(lm_forward=float(lm_forward), vision_forward=float(vision_forward))


# ----------------------------------------------------------------------------- sections


def run_gpu_tests(timeout: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/ml", "-p", "no:django", "-q"]
    # Another module failing to import on that machine must not stop the GPU tests.
    command.append("--continue-on-collection-errors")
    log(f"$ {' '.join(command)}")
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        log(f"  GPU tests timed out after {timeout} s")
        return {"returncode": None, "summary": "timeout"}
    lines = (done.stdout + done.stderr).strip().splitlines()
    for line in lines[-25:]:
        log(f"  {line}")
    return {"returncode": done.returncode, "summary": lines[-1] if lines else ""}


def check_numerics(bench: Bench) -> dict[str, float]:
    """Full-size sanity checks: batched vs looped vision attention, fast vs plain embedding."""
    batch = make_batch(bench, 2, seed=99)
    core = find_vlm_core(bench.model)
    bench.model.eval()
    results: dict[str, float] = {}
    with torch.no_grad():
        unpatch_vision_attention(bench.model)
        looped = core.visual(batch.pixel_values, grid_thw=batch.image_grid_thw).pooler_output
        plain = embed(bench, release_query_states(bench, batch))
        patch_vision_attention(bench.model)
        batched = core.visual(batch.pixel_values, grid_thw=batch.image_grid_thw).pooler_output
        fast = embed(bench, fast_query_states(bench, batch, None))
        unpatch_vision_attention(bench.model)
    scale = float(looped.float().abs().max())
    results["vision_max_abs_diff"] = float((batched.float() - looped.float()).abs().max())
    results["vision_max_abs"] = scale
    results["embedding_min_cosine"] = float((plain * fast).sum(-1).min())
    bench.model.train()
    return results


def _measure_training(
    bench: Bench, method: str, batch: Batch, warmup: int, steps: int, figure: Figure
) -> float:
    # Its own function so that after an OOM every tensor of the failed step is unreachable.
    with method_mode(bench, method):
        step = step_function(bench, method, batch)
        # The feature cache fills during warm-up: timed steps are later epochs' cache hits.
        seconds, figure.peak_gib = timed(step, bench.device, max(warmup, 1), steps)
    return seconds


def training_figures(
    bench: Bench,
    batches: list[int],
    methods: list[str],
    warmup: int,
    steps: int,
    flops: FlopModel,
    peak: float | None,
) -> list[Figure]:
    figures: list[Figure] = []
    bench.model.train()
    for size in batches:
        batch = make_batch(bench, size, seed=size)
        for method in methods:
            figure = Figure("train", method, size)
            try:
                seconds = _measure_training(bench, method, batch, warmup, steps, figure)
                figure.step_ms = seconds * 1e3
                figure.samples_per_s = size / seconds
                work = flops.training(vision=method != "ours+reuse") * size
                figure.tflops = work / seconds / 1e12
                figure.mfu = None if peak is None else work / seconds / peak
            except Exception as caught:  # an OOM at one size must not stop the others
                figure.error = short_error(caught)
            for p in trainable_parameters(bench):
                p.grad = None
            free_memory(bench.device)
            figures.append(record(figure))
        del batch
        free_memory(bench.device)
    return figures


def embedding_figures(
    bench: Bench, size: int, warmup: int, steps: int, flops: FlopModel, peak: float | None
) -> list[Figure]:
    figures: list[Figure] = []
    bench.model.eval()
    batch = make_batch(bench, size, seed=1000 + size)
    for method in ("release-like", "project-plain", "ours"):
        figure = Figure("embed", method, size)
        try:

            def run(method: str = method) -> torch.Tensor:
                with torch.no_grad():
                    return embed(bench, query_states(bench, method, batch, None))

            with method_mode(bench, method):
                seconds, figure.peak_gib = timed(run, bench.device, warmup, steps)
            figure.step_ms = seconds * 1e3
            figure.samples_per_s = size / seconds
            figure.tflops = flops.inference() * size / seconds / 1e12
            figure.mfu = None if peak is None else flops.inference() * size / seconds / peak
        except Exception as caught:
            figure.error = short_error(caught)
        free_memory(bench.device)
        figures.append(record(figure))
    bench.model.train()
    return figures


def vision_tower_figures(bench: Bench, size: int, warmup: int, steps: int) -> list[Figure]:
    """The vision tower alone, no grad: where the batched attention shows most."""
    figures: list[Figure] = []
    batch = make_batch(bench, size, seed=2000 + size)
    core = find_vlm_core(bench.model)
    for method in ("looped windows", "batched windows"):
        figure = Figure("vision", method, size)
        try:
            if method.startswith("batched"):
                patch_vision_attention(bench.model)

            def run() -> object:
                with torch.no_grad():
                    return core.visual(batch.pixel_values, grid_thw=batch.image_grid_thw)

            seconds, figure.peak_gib = timed(run, bench.device, warmup, steps)
            figure.step_ms = seconds * 1e3
            figure.samples_per_s = size / seconds
        except Exception as caught:
            figure.error = short_error(caught)
        finally:
            unpatch_vision_attention(bench.model)
        free_memory(bench.device)
        figures.append(record(figure))
    return figures


def describe(figure: Figure) -> str:
    head = f"{figure.section:6s} {figure.method:16s} batch {figure.batch:3d}"
    if figure.error or figure.samples_per_s is None or figure.step_ms is None:
        return f"{head}  FAILED {figure.error}"
    parts = [f"{figure.samples_per_s:8.2f} samples/s", f"{figure.step_ms:9.1f} ms/step"]
    if figure.peak_gib is not None:
        parts.append(f"peak {figure.peak_gib:6.1f} GiB")
    if figure.mfu is not None:
        parts.append(f"MFU {100 * figure.mfu:5.1f}%")
    elif figure.tflops is not None:
        parts.append(f"{figure.tflops:.3f} TFLOP/s")
    return f"{head}  " + "  ".join(parts)


BASELINES = {"train": "release-like", "embed": "release-like", "vision": "looped windows"}


def speedups(
    figures: list[Figure], baseline: str | None = None
) -> dict[tuple[str, str, int], float]:
    """samples/s over the baseline's at the same section and batch (default: release-like)."""
    base = {
        (f.section, f.batch): f.samples_per_s
        for f in figures
        if f.method == (baseline or BASELINES.get(f.section)) and f.samples_per_s
    }
    out = {}
    for f in figures:
        reference = base.get((f.section, f.batch))
        if reference and f.samples_per_s:
            out[(f.section, f.method, f.batch)] = f.samples_per_s / reference
    return out


def print_table(figures: list[Figure]) -> None:
    release = speedups(figures)
    plain = speedups(figures, "project-plain")
    log("")
    log(
        f"{'section':7s} {'method':16s} {'batch':>5s} {'samples/s':>10s} {'step ms':>9s} "
        f"{'peak GiB':>8s} {'MFU %':>6s} {'vs release':>10s} {'vs plain':>9s}"
    )
    for f in figures:
        if f.error or f.samples_per_s is None or f.step_ms is None:
            log(f"{f.section:7s} {f.method:16s} {f.batch:5d}  failed: {(f.error or '')[:70]}")
            continue
        key = (f.section, f.method, f.batch)
        peak = "-" if f.peak_gib is None else f"{f.peak_gib:.1f}"
        mfu = "-" if f.mfu is None else f"{100 * f.mfu:.1f}"
        vs_release = f"{release[key]:.2f}x" if key in release else "-"
        vs_plain = f"{plain[key]:.2f}x" if key in plain else "-"
        log(
            f"{f.section:7s} {f.method:16s} {f.batch:5d} {f.samples_per_s:10.2f} "
            f"{f.step_ms:9.1f} {peak:>8s} {mfu:>6s} {vs_release:>10s} {vs_plain:>9s}"
        )


def verdicts(figures: list[Figure]) -> dict[str, Any]:
    """The targets: training >= 1.5x and embedding >= 2x the release-like figures."""
    ratios = speedups(figures)

    def pick(section: str, method: str) -> list[float]:
        return [r for (s, m, _), r in ratios.items() if s == section and m == method]

    train, reuse, embed_ratio = (
        pick("train", "ours"),
        pick("train", "ours+reuse"),
        pick("embed", "ours"),
    )
    return {
        "train_speedup_min": min(train, default=None),
        "train_speedup_max": max(train, default=None),
        "train_reuse_speedup_max": max(reuse, default=None),
        "embed_speedup": max(embed_ratio, default=None),
        "train_target_1_5x_met": bool(train) and min(train) >= 1.5,
        "embed_target_2x_met": bool(embed_ratio) and max(embed_ratio) >= 2.0,
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="relsim GPU benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="tiny config on CPU, end to end")
    parser.add_argument("--batches", default=None, help="training micro-batches, e.g. 8,16,32")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per figure")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure")
    parser.add_argument("--embed-batch", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None, help="square side in pixels")
    parser.add_argument("--methods", default=",".join(METHODS), help="training methods to time")
    parser.add_argument("--own-lora", action="store_true", help="ignore ml.relsim.model's LoRA")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    parser.add_argument("--tests-timeout", type=int, default=240)
    parser.add_argument("--json", type=Path, default=None, help="default: $OUT/gpu_relsim.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = bool(args.quick)
    cuda = torch.cuda.is_available() and not quick
    if not cuda and not quick:
        log("no CUDA device: the full-size model does not fit here; use --quick on a CPU")
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    batches = [int(b) for b in (args.batches or ("2,4" if quick else "8,16,32")).split(",")]
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    steps = args.steps if args.steps is not None else (1 if quick else 3)
    embed_batch = args.embed_batch or (4 if quick else 32)
    image_size = args.image_size or (224 if quick else 448)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        log(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        return 2
    started = time.perf_counter()
    if not cuda:
        torch.set_num_threads(2)
    torch.manual_seed(0)

    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "dtype": str(dtype),
        "image_size": image_size,
        "batches": batches,
        "embed_batch": embed_batch,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "quick": quick,
    }
    with contextlib.suppress(Exception):
        import peft

        meta["peft"] = peft.__version__
    peak = None
    if cuda:
        peak = next((v for k, v in PEAK_BF16_DENSE.items() if k in meta["device"]), None)
        meta["peak_bf16_dense_flops"] = peak
    figures: list[Figure] = []
    report: dict[str, Any] = {"meta": meta, "sections": {}, "figures": []}
    json_path = args.json
    if json_path is None and os.environ.get("OUT"):
        json_path = Path(os.environ["OUT"]) / "gpu_relsim.json"

    def save() -> None:
        if json_path is None:
            return
        report["figures"] = [asdict(f) for f in figures]
        report["elapsed_s"] = time.perf_counter() - started
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str))

    def keep(figure: Figure) -> None:
        figures.append(figure)
        save()

    FIGURE_LISTENERS[:] = [keep]

    log("== relsim GPU benchmark")
    for key, value in meta.items():
        log(f"  {key}: {value}")
    if cuda and peak is None:
        log("  (unknown card: MFU not computed)")

    def section(name: str, fn: Callable[[], Any]) -> Any:
        log(f"\n== {name}  (t={time.perf_counter() - started:.0f} s)")
        try:
            result = fn()
            report["sections"][name] = "ok"
            return result
        except Exception as error:
            report["sections"][name] = short_error(error)
            log(f"  FAILED {short_error(error)}")
            traceback.print_exc(limit=8)
            return None
        finally:
            free_memory(device)
            save()

    if not args.skip_tests:
        report["gpu_tests"] = section("GPU tests", lambda: run_gpu_tests(args.tests_timeout))

    def build() -> Bench:
        config, source = tiny_config() if quick else full_config()
        log(f"  config: {source}")
        t0 = time.perf_counter()
        bench = build_bench(config, device, dtype, image_size, own_lora=args.own_lora)
        synchronize(device)
        total = sum(p.numel() for p in bench.model.parameters())
        trainable = sum(p.numel() for p in trainable_parameters(bench))
        log(
            f"  built in {time.perf_counter() - t0:.1f} s: {total / 1e9:.3f} B parameters, "
            f"{trainable / 1e6:.2f} M trainable"
        )
        meta.update(parameters=total, trainable_parameters=trainable, config_source=source)
        return bench

    bench: Bench | None = section("build model", build)
    if bench is None:
        return 1
    ready: Bench = bench

    def describe_work() -> FlopModel:
        probe = make_batch(ready, 1, seed=0)
        sequence = int(probe.input_ids.shape[1])
        flops = flop_model(ready, sequence)
        image_token_id = find_vlm_core(ready.model).config.image_token_id
        meta.update(
            sequence_tokens=sequence,
            image_tokens=int((probe.input_ids == image_token_id).sum()),
            flops_per_sample_lm_forward=flops.lm_forward,
            flops_per_sample_vision_forward=flops.vision_forward,
            flop_formula=FLOP_FORMULA,
        )
        log(f"  FLOPs: {FLOP_FORMULA}")
        log(
            f"  sequence {sequence} tokens; useful GFLOP/sample: LM fwd "
            f"{flops.lm_forward / 1e9:.1f}, vision fwd {flops.vision_forward / 1e9:.1f}"
        )
        return flops

    flops: FlopModel | None = section("work per sample", describe_work)
    if flops is None:
        return 1
    work: FlopModel = flops

    numerics = section("numerics on this architecture", lambda: check_numerics(ready))
    if numerics:
        report["numerics"] = numerics
        for key, value in numerics.items():
            log(f"  {key}: {value:.6g}")
    section(
        "vision tower alone (no grad)",
        lambda: vision_tower_figures(ready, embed_batch, warmup, steps),
    )
    section(
        "training steps",
        lambda: training_figures(ready, batches, methods, warmup, steps, work, peak),
    )
    section(
        "embedding (inference)",
        lambda: embedding_figures(ready, embed_batch, warmup, steps, work, peak),
    )
    print_table(figures)
    report["verdicts"] = verdicts(figures)
    log("")
    for key, value in report["verdicts"].items():
        log(f"  {key}: {value}")
    log(f"\nfinished in {time.perf_counter() - started:.0f} s")
    save()
    # A figure that failed alone (an OOM at the largest batch, say) is a result, not a crash.
    failed = [name for name, state in report["sections"].items() if state != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
