"""Train the relational-interest filter on yes/no labels through the training loop; class
imbalance (the paper's labels run about 1 yes to 8 no) is met with a weighted loss or balanced
sampling.

Data: a JSONL file, one object a line: an image (`image` / `image_path`, relative to the file,
or `image_hash` / `md5` of a <md5>.png beside it or in images/) and `label` "yes" or "no".
One process: `python -m ml.captioning.filter_training --config FILE`."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.captioning.interest_filter import (
    FILTER_PROMPT_VERSION,
    NO,
    YES,
    FilterConfig,
    InterestFilter,
    build_filter,
    get_filter_prompt,
    interest_loss,
    save_filter,
)
from ml.captioning.synthetic_samples import SyntheticFilterSamples
from ml.captioning.tuning import SampleKey, TunedLoopConfig, tuned_task
from ml.data.captions import DataFormatError
from ml.data.images import load_image
from ml.train.cli import training_command
from ml.train.loop import LoopContext, StepOutput, Task, TrainResult, run_training
from ml.vlm.tuned import ChatSample

IMBALANCE_MODES = ("weighted", "balanced", "none")
_YES_WORDS = {"yes", "y", "true", "1", "interesting"}
_NO_WORDS = {"no", "n", "false", "0", "not interesting"}


@dataclass(kw_only=True)
class FilterTrainConfig(TunedLoopConfig):
    """One filter training run; loadable from a JSON file."""

    data_file: str = ""  # the labels JSONL
    # > 0: train on that many freshly drawn synthetic images (ml.captioning.synthetic_samples)
    # instead: relational ones (yes) and clutter (no) at 1 : synthetic_clutter_per_relational.
    synthetic_train_images: int = 0
    synthetic_clutter_per_relational: int = 4
    image_dir: str | None = None  # where <md5>.png live; default: beside data_file (or images/)
    imbalance: str = "weighted"  # "weighted" loss, "balanced" sampling, or "none"
    prompt_version: str = FILTER_PROMPT_VERSION
    lr: float = 1e-4
    warmup_steps: int = 10
    batch_size: int = 16

    def model_config(self) -> FilterConfig:
        return FilterConfig(**self.tune_settings(), prompt_version=self.prompt_version)

    def validate(self) -> None:
        super().validate()
        if self.synthetic_train_images < 0:
            raise ValueError("synthetic_train_images must not be negative")
        if self.synthetic_clutter_per_relational < 1:
            raise ValueError("synthetic_clutter_per_relational must be at least 1")
        if not self.synthetic_train_images and not self.data_file:
            raise ValueError("data_file is needed unless synthetic_train_images is set")
        if self.imbalance not in IMBALANCE_MODES:
            raise ValueError(f"imbalance must be one of {IMBALANCE_MODES}")


@dataclass(frozen=True)
class LabelledImage:
    image_path: Path
    label: int  # YES or NO


def _parse_label(value: object, where: str) -> int:
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, int) and value in (0, 1):
        return YES if value else NO
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _YES_WORDS:
            return YES
        if word in _NO_WORDS:
            return NO
    raise DataFormatError(f"{where}: label must be yes or no, got {value!r}")


def read_filter_labels(
    jsonl_path: str | Path, *, image_dir: str | Path | None = None
) -> list[LabelledImage]:
    """Parse the labels JSONL; every problem is reported with its line number."""
    path = Path(jsonl_path)
    folder = path.parent
    hash_dirs = [Path(image_dir)] if image_dir is not None else [folder, folder / "images"]
    items: list[LabelledImage] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{where}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise DataFormatError(f"{where}: expected a JSON object")
            label = _parse_label(row.get("label"), where)
            named = row.get("image") or row.get("image_path")
            digest = row.get("image_hash") or row.get("md5")
            if isinstance(named, str) and named:
                candidate = Path(named)
                candidates = [candidate if candidate.is_absolute() else folder / candidate]
            elif isinstance(digest, str) and digest:
                candidates = [d / f"{digest.strip()}.png" for d in hash_dirs]
            else:
                raise DataFormatError(f"{where}: needs image/image_path or image_hash/md5")
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DataFormatError(f"{where}: image not found ({candidates[0]})")
            items.append(LabelledImage(found, label))
    if not items:
        raise DataFormatError(f"{path}: no labelled images")
    return items


def class_weights(labels: list[int]) -> torch.Tensor:
    """Inverse-frequency weights (no, yes) that give both classes equal total weight."""
    counts = torch.tensor([labels.count(NO), labels.count(YES)], dtype=torch.float32)
    if bool((counts == 0).any()):
        raise DataFormatError("the labels need both yes and no examples")
    return counts.sum() / (2.0 * counts)


class FilterSamples(Dataset[tuple[ChatSample, int]]):
    def __init__(self, items: list[LabelledImage], prompt: str, image_size: int) -> None:
        self.items = items
        self.prompt = prompt
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: SampleKey) -> tuple[ChatSample, int]:
        item = self.items[key[1]]
        try:
            image = load_image(item.image_path, self.image_size)
        except OSError as error:
            raise DataFormatError(f"cannot read image {item.image_path}: {error}") from error
        return ChatSample([image], self.prompt), item.label


class _Collate:
    def __init__(self, model: InterestFilter) -> None:
        self.builder = model.inputs

    def __call__(self, items: list[tuple[ChatSample, int]]) -> dict[str, torch.Tensor]:
        batch = self.builder([s for s, _ in items], padding_side="left", preprocessed=True)
        batch["interest"] = torch.tensor([label for _, label in items], dtype=torch.long)
        return batch


class _Step:
    """Weighted (or plain) cross-entropy of the yes/no logits."""

    def __init__(self, weights: torch.Tensor | None, device: torch.device) -> None:
        self.weights = weights
        self.device = device

    def __call__(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k != "interest"}
        logits: torch.Tensor = module(**inputs)
        weights = None if self.weights is None else self.weights.to(logits.device)
        loss = interest_loss(logits, batch["interest"].to(self.device), weights)
        return StepOutput(loss, int(inputs["input_ids"].shape[0]))


class _BalancedOrder:
    """Each epoch draws as many samples as there are images, half yes and half no (with
    replacement), from a stream fixed by seed and epoch."""

    def __init__(self, labels: list[int], seed: int) -> None:
        self.yes = [i for i, label in enumerate(labels) if label == YES]
        self.no = [i for i, label in enumerate(labels) if label == NO]
        self.total = len(labels)
        self.seed = seed

    def __call__(self, epoch: int) -> list[int]:
        rng = random.Random(f"balanced/{self.seed}/{epoch}")
        half = self.total // 2
        order = rng.choices(self.yes, k=self.total - half) + rng.choices(self.no, k=half)
        rng.shuffle(order)
        return order


def filter_task(config: FilterTrainConfig, context: LoopContext) -> Task:
    """The filter's model, labelled images and step for the training loop."""
    context.report("reading labels")
    prompt = get_filter_prompt(config.prompt_version).text
    dataset: Dataset[tuple[ChatSample, int]]
    if config.synthetic_train_images:
        stream = SyntheticFilterSamples(
            config.synthetic_train_images,
            prompt=prompt,
            image_size=config.image_size,
            clutter_per_relational=config.synthetic_clutter_per_relational,
            seed=config.seed,
        )
        dataset, labels = stream, stream.labels
    else:
        items = read_filter_labels(config.data_file, image_dir=config.image_dir)
        dataset, labels = FilterSamples(items, prompt, config.image_size), [i.label for i in items]
    weights = class_weights(labels)  # also checks that both classes are present
    context.report("loading model")
    torch.manual_seed(config.seed)
    model = build_filter(
        config.model_config(), dtype=context.dtype, device=context.device, seed=config.seed
    )
    extra: dict[str, Any] = {
        "train_config": config.to_dict(),
        "n_yes": labels.count(YES),
        "n_no": labels.count(NO),
    }

    def save(folder: Path, step: int, epoch: int) -> None:
        save_filter(model, folder, global_step=step, extra=extra)

    return tuned_task(
        config,
        model,
        dataset=dataset,
        n_samples=len(labels),
        collate=_Collate(model),
        step=_Step(weights if config.imbalance == "weighted" else None, context.device),
        save=save,
        epoch_order=_BalancedOrder(labels, config.seed) if config.imbalance == "balanced" else None,
    )


def train_filter(
    config: FilterTrainConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) a filter; checkpoints load with `ml.captioning.load_filter`."""
    return run_training(config, filter_task, progress=progress, should_stop=should_stop)


def _main(argv: list[str] | None = None) -> int:
    return training_command(
        argv, "Train the relational-interest filter.", FilterTrainConfig.from_json, train_filter
    )


if __name__ == "__main__":
    raise SystemExit(_main())
