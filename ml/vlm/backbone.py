"""Qwen2.5-VL backbones: load a model folder (the real 7B or a tiny one) and build tiny, randomly
initialised Qwen2.5-VL folders on the fly for tests and CPU demos; no hub access needed."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import nn
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils import logging as hf_logging

# Qwen2's special tokens in Qwen's order, so that ids keep Qwen's relative layout.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen's added tokens that are not special; kept so the tiny vocabulary ends like the real one.
QWEN_PLAIN_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

# Our own chat template with the semantics of Qwen2.5-VL's: a default system turn, images as
# <|vision_start|><|image_pad|><|vision_end|>, turns closed by <|im_end|> and a newline.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Text the tiny tokenizer's merges are learnt from: chat words and anonymous-caption phrasing.
_TOKENIZER_CORPUS = (
    "You are a helpful assistant.",
    "system user assistant",
    "Curious {Animal} peering out from behind a {Object}.",
    "The layers of a {Object} seen in cross section, like the layers of a {Planet}.",
    "A {Character} made out of {Material}, arranged to spell the {Word}.",
    "Rows of {Object} sorted by size from smallest to largest.",
    "A {Color} {Shape} above a {Color} {Shape}; two {Shape} side by side.",
    "Is this image relationally interesting? Answer Yes or No.",
    "Write one reusable caption that captures the logic of the image.",
)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs (weights loading/saving) for a block."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


@dataclass
class LoadedVLM:
    """A Qwen2.5-VL model with the two parts of its processor that we use."""

    model: Qwen2_5_VLForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    image_processor: Qwen2VLImageProcessorPil


def _train_tiny_tokenizer(vocab_size: int) -> Qwen2Tokenizer:
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(_TOKENIZER_CORPUS) * 4, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges: Any = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]
    ]
    # Qwen2Tokenizer rebuilds the same pre-tokenizer, so the learnt merges stay consistent;
    # it also appends <|endoftext|> right after the learnt vocabulary, as Qwen's does.
    tokenizer = Qwen2Tokenizer(vocab=model_json["vocab"], merges=merges)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)},
        replace_extra_special_tokens=False,
    )
    tokenizer.add_tokens(list(QWEN_PLAIN_ADDED_TOKENS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.get_vocab().get(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token}")
    return int(token_id)


TINY_INITS = ("qwen", "fan-in")


def build_tiny_vlm(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    vision_heads: int = 2,
    vision_intermediate_size: int | None = None,
    max_image_size: int = 224,
    tokenizer_vocab_size: int = 400,
    init: str = "qwen",
) -> Path:
    """Write a randomly initialised Qwen2.5-VL (real architecture, tiny sizes) with a tiny BPE
    tokenizer carrying Qwen's special tokens, a chat template and the PIL image processor.
    The same seed gives the same weights. Returns the folder, loadable by `load_vlm`.

    `init`: "qwen" keeps the model's own normal(0, 0.02) weights; "fan-in" re-draws linear
    and convolution weights with PyTorch's fan-in scaled init. At widths near 100 Qwen's init
    leaves attention uniform and every block close to the identity, so a model trained from
    scratch sits for hundreds of steps at chance; use "fan-in" to train one from scratch."""
    # MLPs twice as wide as their blocks unless told otherwise.
    intermediate_size = intermediate_size or 2 * hidden_size
    vision_intermediate_size = vision_intermediate_size or 2 * vision_hidden_size
    if init not in TINY_INITS:
        raise ValueError(f"init must be one of {TINY_INITS}, not {init!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tiny_tokenizer(tokenizer_vocab_size)
    head_dim = hidden_size // num_heads
    if head_dim % 2 or hidden_size % num_heads:
        raise ValueError("hidden_size / num_heads must be an even integer")
    # mrope splits the rotary half-dimension into (temporal, height, width) sections.
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": _token_id(tokenizer, "<|endoftext|>"),
            "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
            "pad_token_id": _token_id(tokenizer, "<|endoftext|>"),
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_intermediate_size,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=_token_id(tokenizer, "<|image_pad|>"),
        video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        if init == "fan-in":
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv3d)):
                    module.reset_parameters()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=max_image_size * max_image_size
    )
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


def _read_chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = folder / "chat_template.json"
    if as_json.is_file():
        template = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Tokenizer of a model or checkpoint folder, with its chat template attached."""
    local = Path(path).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local)
    if not tokenizer.chat_template:
        # Qwen's processor keeps the template beside the tokenizer rather than inside it.
        tokenizer.chat_template = (_read_chat_template(Path(path)) if local else None) or (
            CHAT_TEMPLATE
        )
    return tokenizer


def load_image_processor(path: str | Path) -> Qwen2VLImageProcessorPil:
    """The PIL image processor from a folder's preprocessor_config.json (no torchvision)."""
    local = Path(path).is_dir()
    return Qwen2VLImageProcessorPil.from_pretrained(str(path), local_files_only=local)


def load_qwen_model(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Qwen2_5_VLForConditionalGeneration:
    """Just the Qwen2.5-VL weights of a folder or hub name."""
    local = Path(path).is_dir()
    with quiet_transformers():
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(path), dtype=dtype, local_files_only=local
        )
    return cast(Qwen2_5_VLForConditionalGeneration, model.to(device))  # type: ignore[arg-type]


def load_vlm(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> LoadedVLM:
    """Load a Qwen2.5-VL folder (tiny or the real Qwen2.5-VL-7B-Instruct) or a hub name.

    The processor is rebuilt from its parts because Qwen2_5_VLProcessor needs a video
    processor that cannot be built without torchvision."""
    return LoadedVLM(
        model=load_qwen_model(path, dtype=dtype, device=device),
        tokenizer=load_tokenizer(path),
        image_processor=load_image_processor(path),
    )


def qwen25vl_7b_config() -> Qwen2_5_VLConfig:
    """The Qwen2.5-VL-7B-Instruct architecture, written out so benchmarks need no download."""
    text: dict[str, Any] = {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 28,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    }
    vision: dict[str, Any] = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "hidden_act": "silu",
        "in_channels": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=False,
    )


def lora_target_pattern(targets: Sequence[str]) -> str:
    """Regex that PEFT full-matches: the named linears of the language model only (the vision
    tower has its own gate/up/down projections that must stay untouched)."""
    alternatives = "|".join(sorted(targets))
    return rf".*\.language_model\..*\.({alternatives})"
