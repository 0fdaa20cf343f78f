"""Train the anonymous captioner through the training loop on our export format: single images
from anonymous_captions_train.jsonl and, from seed_group.json, each group image alone and k
sampled images of a group -> the group's caption.

One process: `python -m ml.captioning.captioner_training --config FILE`.
Several GPUs (DDP): `accelerate launch -m ml.captioning.captioner_training --config FILE`.
`batch_size` is per process and micro-step."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.captioning.captioner import Captioner, CaptionerConfig, build_captioner, save_captioner
from ml.captioning.postprocess import unwrap_caption
from ml.captioning.prompts import PROMPT_VERSION, get_prompt
from ml.captioning.synthetic_samples import SyntheticCaptionSamples
from ml.captioning.tuning import SampleKey, TunedLoopConfig, tuned_task
from ml.data.captions import DataFormatError, read_caption_file
from ml.data.images import load_image
from ml.train.cli import training_command
from ml.train.loop import LoopContext, StepOutput, Task, TrainResult, run_training
from ml.train.run_state import seed_everything
from ml.vlm.tuned import ChatSample

TRAIN_CAPTIONS = "anonymous_captions_train.jsonl"
SEED_GROUPS = "seed_group.json"


@dataclass(kw_only=True)
class CaptionerTrainConfig(TunedLoopConfig):
    """One captioner training run; loadable from a JSON file."""

    data_dir: str = ""  # export folder: anonymous_captions_train.jsonl, seed_group.json, images/
    # > 0: train on that many freshly drawn synthetic samples (ml.captioning.synthetic_samples)
    # instead of data_dir, a share `synthetic_group_share` of them groups of the
    # group_*_images sizes.
    synthetic_train_samples: int = 0
    synthetic_group_share: float = 0.5
    train_file: str | None = None  # default: data_dir/anonymous_captions_train.jsonl
    groups_file: str | None = None  # default: data_dir/seed_group.json when present
    use_single_images: bool = True  # (image, caption) pairs of the train jsonl
    use_groups: bool = True  # (k images of a group, group caption) samples
    # (one group image, group caption) samples for every image of every seed group, as the
    # release trains its captioner; pairs the train jsonl already holds are not repeated.
    # Export data only: synthetic samples show single images anyway.
    group_images_alone: bool = True
    group_min_images: int = 2
    group_max_images: int = 4
    group_draws_per_epoch: int = 1  # samples drawn from each group per epoch
    prompt_version: str = PROMPT_VERSION

    def model_config(self) -> CaptionerConfig:
        return CaptionerConfig(**self.tune_settings(), prompt_version=self.prompt_version)

    def validate(self) -> None:
        super().validate()
        if self.synthetic_train_samples < 0:
            raise ValueError("synthetic_train_samples must not be negative")
        if not 0.0 <= self.synthetic_group_share <= 1.0:
            raise ValueError("synthetic_group_share must be within [0, 1]")
        if not self.synthetic_train_samples and not self.data_dir:
            raise ValueError("data_dir is needed unless synthetic_train_samples is set")
        if not (self.use_single_images or self.use_groups or self.group_images_alone):
            raise ValueError(
                "use_single_images, use_groups and group_images_alone are all off: nothing to train"
            )
        if not 1 <= self.group_min_images <= self.group_max_images:
            raise ValueError("need 1 <= group_min_images <= group_max_images")
        if self.group_draws_per_epoch < 1:
            raise ValueError("group_draws_per_epoch must be at least 1")


@dataclass(frozen=True)
class CaptionedGroup:
    """Images that share one caption (a single image is a group of one)."""

    image_paths: tuple[Path, ...]
    caption: str


def read_seed_groups(
    groups_file: str | Path, *, data_dir: str | Path | None = None
) -> list[CaptionedGroup]:
    """Groups of seed_group.json with their images resolved to local files.

    An entry of `image_urls` may be a path relative to the data folder (our exports write
    images/<md5>.png) or the URL of a released image, looked up through the `url_link` of the
    caption files beside it."""
    path = Path(groups_file)
    folder = Path(data_dir) if data_dir is not None else path.parent
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise DataFormatError(f"{path}: expected a JSON list of groups")
    by_url: dict[str, Path] = {}
    for jsonl in sorted(folder.glob("anonymous_captions_*.jsonl")):
        for record in read_caption_file(jsonl):
            if record.url_link:
                by_url[record.url_link] = record.image_path
    groups: list[CaptionedGroup] = []
    missing: list[str] = []
    for number, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise DataFormatError(f"{path}: group {number} is not an object")
        caption = entry.get("anonymous_caption")
        urls = entry.get("image_urls")
        if not isinstance(caption, str) or not isinstance(urls, list):
            raise DataFormatError(f"{path}: group {number} lacks anonymous_caption/image_urls")
        caption = unwrap_caption(caption)
        if not caption:
            raise DataFormatError(f"{path}: group {number} has an empty caption")
        paths: list[Path] = []
        for url in urls:
            local = folder / str(url)
            found = local if local.is_file() else by_url.get(str(url))
            if found is None:
                missing.append(f"group {number}: {url}")
            else:
                paths.append(found)
        if paths:
            groups.append(CaptionedGroup(tuple(paths), caption))
    if missing:
        shown = "; ".join(missing[:5])
        raise DataFormatError(
            f"{len(missing)} group image(s) of {path} not found: {shown}"
            f"{' ...' if len(missing) > 5 else ''}"
        )
    return groups


class CaptionSamples(Dataset[ChatSample]):
    """Single images first, then `draws` samples per group; a group sample takes k random
    images of its group (k in [min_images, max_images], at most the group's size)."""

    def __init__(
        self,
        singles: Sequence[CaptionedGroup],
        groups: Sequence[CaptionedGroup],
        *,
        prompt_version: str,
        image_size: int,
        min_images: int,
        max_images: int,
        draws: int,
        seed: int,
    ) -> None:
        self.singles = list(singles)
        self.groups = list(groups)
        self.prompt = get_prompt(prompt_version)
        self.image_size = image_size
        self.min_images = min_images
        self.max_images = max_images
        self.draws = draws
        self.seed = seed

    def __len__(self) -> int:
        return len(self.singles) + len(self.groups) * self.draws

    def pick(self, key: SampleKey) -> CaptionedGroup:
        """Which images and caption the sample `key` uses (no image is read)."""
        epoch, index = key
        if index < len(self.singles):
            return self.singles[index]
        draw, group_index = divmod(index - len(self.singles), len(self.groups))
        group = self.groups[group_index]
        rng = random.Random(f"{self.seed}/{epoch}/{index}/{draw}")
        high = min(self.max_images, len(group.image_paths))
        k = rng.randint(min(self.min_images, high), high)
        return CaptionedGroup(tuple(rng.sample(group.image_paths, k)), group.caption)

    def __getitem__(self, key: SampleKey) -> ChatSample:
        chosen = self.pick(key)
        images = []
        for image_path in chosen.image_paths:
            try:
                images.append(load_image(image_path, self.image_size))
            except OSError as error:
                raise DataFormatError(f"cannot read image {image_path}: {error}") from error
        return ChatSample(images, self.prompt.text(len(images)), chosen.caption)


def group_member_samples(
    groups: Sequence[CaptionedGroup], *, known: Sequence[CaptionedGroup] = ()
) -> list[CaptionedGroup]:
    """Every image of every group as a sample of its own with the group's caption, in group
    order, leaving out (image, caption) pairs among `known` or already listed: our exports
    write group images into the train jsonl too, and a pair twice would weigh double."""
    seen = {
        (sample.image_paths[0].resolve(), sample.caption)
        for sample in known
        if len(sample.image_paths) == 1
    }
    alone: list[CaptionedGroup] = []
    for group in groups:
        for path in group.image_paths:
            pair = (path.resolve(), group.caption)
            if pair not in seen:
                seen.add(pair)
                alone.append(CaptionedGroup((path,), group.caption))
    return alone


def caption_samples(config: CaptionerTrainConfig) -> CaptionSamples | SyntheticCaptionSamples:
    """The training samples a config asks for, read from its export folder or drawn."""
    if config.synthetic_train_samples:
        return SyntheticCaptionSamples(
            config.synthetic_train_samples,
            prompt=get_prompt(config.prompt_version),
            image_size=config.image_size,
            group_share=config.synthetic_group_share,
            min_images=config.group_min_images,
            max_images=config.group_max_images,
            seed=config.seed,
        )
    data_dir = Path(config.data_dir)
    singles: list[CaptionedGroup] = []
    if config.use_single_images:
        jsonl = Path(config.train_file) if config.train_file else data_dir / TRAIN_CAPTIONS
        if not jsonl.is_file():
            raise FileNotFoundError(f"{jsonl} not found")
        singles = [
            CaptionedGroup((r.image_path,), unwrap_caption(r.caption))
            for r in read_caption_file(jsonl)
        ]
    seed_groups: list[CaptionedGroup] = []
    if config.use_groups or config.group_images_alone:
        groups_path = Path(config.groups_file) if config.groups_file else data_dir / SEED_GROUPS
        if groups_path.is_file():
            seed_groups = read_seed_groups(groups_path, data_dir=data_dir)
        elif config.groups_file:
            raise FileNotFoundError(f"{groups_path} not found")
    if config.group_images_alone:
        singles += group_member_samples(seed_groups, known=singles)
    groups = seed_groups if config.use_groups else []
    if not singles and not groups:
        raise DataFormatError(f"no captioned images or groups to train on in {data_dir}")
    return CaptionSamples(
        singles,
        groups,
        prompt_version=config.prompt_version,
        image_size=config.image_size,
        min_images=config.group_min_images,
        max_images=config.group_max_images,
        draws=config.group_draws_per_epoch,
        seed=config.seed,
    )


class _Collate:
    """Right-padded training inputs with labels; a class so DataLoader workers can pickle it."""

    def __init__(self, captioner: Captioner) -> None:
        self.builder = captioner.inputs

    def __call__(self, samples: list[ChatSample]) -> dict[str, torch.Tensor]:
        return self.builder(samples, padding_side="right", preprocessed=True)


class _Step:
    """Next-token cross-entropy on the caption's tokens."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        loss: torch.Tensor = module(**inputs)
        return StepOutput(loss, int(inputs["input_ids"].shape[0]))


def captioner_task(config: CaptionerTrainConfig, context: LoopContext) -> Task:
    """The captioner's model, data and step for the training loop."""
    context.report("reading data")
    samples = caption_samples(config)
    context.report("loading model")
    seed_everything(config.seed)
    captioner = build_captioner(
        config.model_config(), dtype=context.dtype, device=context.device, seed=config.seed
    )
    counts = (
        {"n_synthetic_samples": len(samples)}
        if isinstance(samples, SyntheticCaptionSamples)
        else {"n_single_images": len(samples.singles), "n_groups": len(samples.groups)}
    )

    def save(folder: Path, step: int, epoch: int) -> None:
        save_captioner(
            captioner,
            folder,
            global_step=step,
            extra={"train_config": config.to_dict(), **counts},
        )

    return tuned_task(
        config,
        captioner,
        dataset=samples,
        n_samples=len(samples),
        collate=_Collate(captioner),
        step=_Step(context.device),
        save=save,
    )


def train_captioner(
    config: CaptionerTrainConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainResult:
    """Train (or resume) a captioner; checkpoints load with `ml.captioning.load_captioner`."""
    return run_training(config, captioner_task, progress=progress, should_stop=should_stop)


def _main(argv: list[str] | None = None) -> int:
    return training_command(
        argv, "Train the anonymous captioner.", CaptionerTrainConfig.from_json, train_captioner
    )


if __name__ == "__main__":
    raise SystemExit(_main())
