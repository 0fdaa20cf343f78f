"""Which model folders each retrieval baseline of ml.baselines.registry loads, known without
importing any model code, so that command lines and callers can check them first."""

from __future__ import annotations

__all__ = ["BASELINE_MODELS", "CHECKPOINT_MODELS", "MODEL_KEYS", "baseline_models"]

# Baseline name -> the BaselineFactory arguments (model folders) it loads. relsim is not
# here: an index of it is embedded from its checkpoint (`--checkpoint`).
BASELINE_MODELS: dict[str, tuple[str, ...]] = {
    "clip-i": ("clip",),
    "clip-t": ("vlm", "clip"),
    "dino": ("dino",),
    "qwen-t": ("vlm", "clip"),
    "qwen-t-minilm": ("vlm", "text_model"),
    "tuned-clip": ("tuned_clip",),
    "tuned-dino": ("tuned_dino",),
    "pixels": (),
    "histogram": (),
    "phash": (),
    "dhash": (),
}

# Every folder argument, in the order a command line lists them.
MODEL_KEYS = ("clip", "dino", "vlm", "text_model", "tuned_clip", "tuned_dino")

# The paper's models have hub names to fall back on (a local cache); checkpoints have none.
CHECKPOINT_MODELS = frozenset({"tuned_clip", "tuned_dino"})


def baseline_models(name: str) -> tuple[str, ...]:
    """The folder arguments the baseline `name` loads (none for the weight-free ones)."""
    try:
        return BASELINE_MODELS[name]
    except KeyError:
        known = ", ".join(BASELINE_MODELS)
        hint = " (embed relsim from its checkpoint)" if name == "relsim" else ""
        raise ValueError(f"unknown baseline {name!r}{hint}; known: {known}") from None
