"""What the captioner's and the filter's training share: the settings of a tuned Qwen2.5-VL run
and the training-loop task around a TunedVLM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ml.train.loop import LoopConfig, StepOutput, Task
from ml.vlm.tuned import TunedVLM, VLMTuneConfig

# A sample is addressed by (epoch, index) so that random choices inside it (which images of a
# group) are drawn from a stream fixed by the seed: an interrupted run resumes exactly.
SampleKey = tuple[int, int]


@dataclass(kw_only=True)
class TunedLoopConfig(LoopConfig):
    """A loop that tunes a Qwen2.5-VL: which backbone, and how it is adapted."""

    backbone: str  # Qwen2.5-VL folder (tiny or real) or hub name
    image_size: int = 448
    finetune: str = "lora"  # "lora" or "full" (tiny backbones)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    freeze_vision: bool = True
    gradient_checkpointing: bool = False  # language model only

    def tune_settings(self) -> dict[str, Any]:
        """The VLMTuneConfig fields these settings fill (not the prompt version)."""
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "finetune": self.finetune,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "lora_targets": list(self.lora_targets),
            "freeze_vision": self.freeze_vision,
        }

    def model_config(self) -> VLMTuneConfig:
        return VLMTuneConfig(**self.tune_settings())

    def validate(self) -> None:
        super().validate()
        self.model_config().validate()


def _epoch_and_index(epoch: int, index: int) -> SampleKey:
    return (epoch, index)


def tuned_task(
    config: TunedLoopConfig,
    model: TunedVLM,
    *,
    dataset: Dataset[Any],
    n_samples: int,
    collate: Callable[[list[Any]], Any],
    step: Callable[[nn.Module, Any], StepOutput],
    save: Callable[[Path, int, int], None],
    epoch_order: Callable[[int], list[int]] | None = None,
) -> Task:
    """A training-loop task that tunes `model`'s trainable parameters on `dataset`."""
    if config.gradient_checkpointing:
        model.core.language_model.activation_checkpointing_enable({"use_reentrant": False})
    return Task(
        module=model,
        parameters=model.trainable_named_parameters(),
        dataset=dataset,
        n_samples=n_samples,
        collate=collate,
        step=step,
        save=save,
        sample_key=_epoch_and_index,
        epoch_order=epoch_order,
    )
