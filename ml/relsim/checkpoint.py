"""relsim checkpoints in the released layout (PEFT adapter + processor files +
projection_and_config.pt) plus our relsim_config.json; loads ours and the release's alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors import safe_open

from ml.relsim.inputs import QUERY_TOKEN
from ml.relsim.model import RelsimConfig, RelsimModel, assemble_relsim_model, embedding_rows
from ml.vlm.backbone import LoadedVLM, load_image_processor, load_qwen_model, load_tokenizer

PROJECTION_FILE = "projection_and_config.pt"
CONFIG_FILE = "relsim_config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
FULL_BACKBONE_DIR = "backbone"  # full fine-tuning keeps the whole backbone here
FORMAT = "relsim-studio/1"


@dataclass
class CheckpointInfo:
    path: Path
    config: RelsimConfig
    query_token_id: int
    global_step: int
    epoch: int
    released_layout: bool  # True when the folder has no relsim_config.json of ours


def save_checkpoint(
    model: RelsimModel,
    out_dir: str | Path,
    *,
    global_step: int = 0,
    epoch: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` to `out_dir`; the folder also loads with the released relsim code."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    if isinstance(backbone, PeftModel):
        # Only the adapter (LoRA + the query token's row); never the full embedding tables.
        backbone.save_pretrained(str(out), save_embedding_layers=False)
    else:
        from ml.vlm.backbone import quiet_transformers

        with quiet_transformers():
            backbone.save_pretrained(str(out / FULL_BACKBONE_DIR))
    model.tokenizer.save_pretrained(str(out))
    model.image_processor.save_pretrained(str(out))
    torch.save(
        {
            "projection": {k: v.detach().cpu() for k, v in model.projection.state_dict().items()},
            "query_token_id": model.query_token_id,
            "global_step": global_step,
            "epoch": epoch,
        },
        out / PROJECTION_FILE,
    )
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "hidden_size": model.hidden_size,
        "query_token_id": model.query_token_id,
        "global_step": global_step,
        "epoch": epoch,
        "extra": extra or {},
    }
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return out


def _config_from_release(path: Path, base_model: str | Path | None) -> RelsimConfig:
    adapter_config_path = path / ADAPTER_CONFIG_FILE
    if not adapter_config_path.is_file():
        raise FileNotFoundError(f"{path} has neither {CONFIG_FILE} nor {ADAPTER_CONFIG_FILE}")
    adapter = json.loads(adapter_config_path.read_text(encoding="utf-8"))
    backbone = base_model or adapter.get("base_model_name_or_path")
    if not backbone:
        raise ValueError(f"{adapter_config_path} names no base model; pass base_model")
    targets = adapter.get("target_modules") or ["q_proj", "v_proj"]
    if isinstance(targets, str):
        raise ValueError(f"cannot read LoRA targets from the pattern {targets!r}")
    return RelsimConfig(
        backbone=str(backbone),
        image_size=448,
        finetune="lora",
        lora_r=int(adapter.get("r", 16)),
        lora_alpha=int(adapter.get("lora_alpha", 32)),
        lora_dropout=float(adapter.get("lora_dropout", 0.05)),
        lora_targets=sorted(targets),
        train_query_token=adapter.get("trainable_token_indices") is not None,
    )


def read_checkpoint_info(
    path: str | Path, *, base_model: str | Path | None = None
) -> CheckpointInfo:
    """What a checkpoint folder holds, without loading any weights.
    `base_model` overrides the backbone location recorded in the folder."""
    folder = Path(path)
    projection_path = folder / PROJECTION_FILE
    if not projection_path.is_file():
        raise FileNotFoundError(f"not a relsim checkpoint (no {PROJECTION_FILE}): {folder}")
    state = torch.load(projection_path, map_location="cpu", weights_only=True)
    ours = folder / CONFIG_FILE
    if ours.is_file():
        payload = json.loads(ours.read_text(encoding="utf-8"))
        config = RelsimConfig.from_dict(payload["config"])
        if base_model is not None:
            config.backbone = str(base_model)
    else:
        config = _config_from_release(folder, base_model)
    return CheckpointInfo(
        path=folder,
        config=config,
        query_token_id=int(state["query_token_id"]),
        global_step=int(state.get("global_step", 0)),
        epoch=int(state.get("epoch", 0)),
        released_layout=not ours.is_file(),
    )


def _adapter_embedding_rows(folder: Path) -> int | None:
    """Rows of a full embedding table saved inside the adapter (the release may hold one)."""
    weights = folder / ADAPTER_WEIGHTS_FILE
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
            if key.endswith("embed_tokens.weight"):
                return int(handle.get_slice(key).get_shape()[0])
    return None


def load_checkpoint(
    path: str | Path,
    *,
    base_model: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    trainable: bool = False,
) -> RelsimModel:
    """Load a relsim checkpoint (ours or the release's) onto its backbone.

    The backbone comes from `base_model` when given, else from the folder's records."""
    info = read_checkpoint_info(path, base_model=base_model)
    folder = info.path
    config = info.config
    if config.finetune == "full":
        model = load_qwen_model(folder / FULL_BACKBONE_DIR, dtype=dtype, device=device)
    else:
        model = load_qwen_model(config.backbone, dtype=dtype, device=device)
        rows = _adapter_embedding_rows(folder)
        if rows is not None and rows != embedding_rows(model):
            # The release resized its tables to the tokenizer's length and may have saved them.
            model.resize_token_embeddings(rows, mean_resizing=False)
    tokenizer = load_tokenizer(folder)
    token_id = tokenizer.get_vocab().get(QUERY_TOKEN)
    if token_id != info.query_token_id:
        raise ValueError(
            f"checkpoint tokenizer maps {QUERY_TOKEN} to {token_id}, "
            f"{PROJECTION_FILE} says {info.query_token_id}"
        )
    vlm = LoadedVLM(model=model, tokenizer=tokenizer, image_processor=load_image_processor(folder))
    relsim = assemble_relsim_model(
        config,
        vlm,
        adapter_dir=folder if config.finetune == "lora" else None,
        trainable=trainable,
    )
    state = torch.load(folder / PROJECTION_FILE, map_location="cpu", weights_only=True)
    relsim.projection.load_state_dict(state["projection"])
    relsim.train(trainable)
    return relsim
