"""Forms of the model pages: import a checkpoint folder, train relsim, build an index of a
relsim model or of a baseline.

The training form's option fields are generated from ml's TrainConfig, so a new option
appears in the form without touching it."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from django import forms

from core.errors import JobInputError
from training.model_jobs import MIN_TRAIN_IMAGES, RESERVED_OPTIONS, TINY_RECIPE
from training.model_selectors import (
    BaselineChoice,
    NotARelsimCheckpoint,
    Recipe,
    approved_train_images,
    gpu_worker_missing,
    gpus_unavailable,
    relsim_checkpoint,
    snapshot_train_images,
    train_config_defaults,
)
from training.models import Job, TrainedModel
from training.runners import import_roots


def _under_import_root(value: str) -> Path:
    """The resolved path, which must lie under an import root and exist."""
    path = Path(value).expanduser().resolve()
    if not any(path.is_relative_to(root) for root in import_roots()):
        roots = ", ".join(str(r) for r in import_roots())
        raise forms.ValidationError(f"The path must be under an import root: {roots}.")
    if not path.exists():
        raise forms.ValidationError(f"{path} does not exist.")
    return path


class ImportModelForm(forms.Form):
    path = forms.CharField(
        max_length=1000,
        label="Checkpoint folder",
        help_text="A relsim checkpoint folder on the server, under an import root.",
    )
    name = forms.CharField(max_length=200, required=False, help_text="Empty: the folder's name.")
    activate = forms.BooleanField(required=False, label="Make it the active relsim model")

    def clean_path(self) -> Path:
        path = _under_import_root(self.cleaned_data["path"].strip())
        known = TrainedModel.objects.filter(folder=str(path)).first()
        if known is not None:
            raise forms.ValidationError(f"This folder is already model #{known.pk} ({known.name}).")
        try:
            info = relsim_checkpoint(path)
        except NotARelsimCheckpoint as exc:
            raise forms.ValidationError(str(exc)) from None
        # The backbone the checkpoint names (ours record it; the release's adapter config too).
        self.base_vlm = info.config.backbone
        return path


class EmbedIndexForm(forms.Form):
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=1024,
        initial=16,
        required=False,
        help_text="Images per forward pass.",
    )

    def clean_batch_size(self) -> int:
        return self.cleaned_data.get("batch_size") or 16

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problem = gpu_worker_missing()
        if problem:
            raise forms.ValidationError(problem)
        return data


class BaselineIndexForm(forms.Form):
    baseline = forms.ChoiceField(label="Baseline")
    full = forms.BooleanField(
        required=False,
        label="Embed every image again",
        help_text="Otherwise only images new since its last index are embedded.",
    )
    batch_size = forms.IntegerField(
        min_value=1, max_value=1024, initial=32, required=False, help_text="Images per batch."
    )

    def __init__(self, *args: Any, choices: list[BaselineChoice], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = {choice.name: choice for choice in choices}
        field = self.fields["baseline"]
        assert isinstance(field, forms.ChoiceField)
        # Every baseline is a choice, so that one not available here gets its reason back.
        field.choices = [(choice.name, choice.label) for choice in choices]
        available = [choice.name for choice in choices if not choice.problem]
        field.initial = "histogram" if "histogram" in available else next(iter(available), None)

    def clean_baseline(self) -> str:
        name: str = self.cleaned_data["baseline"]
        problem = self.choices[name].problem
        if problem:
            raise forms.ValidationError(f"{problem[:1].upper()}{problem[1:]}.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        choice = self.choices.get(data.get("baseline") or "")
        if choice is not None and not choice.weight_free:
            problem = gpu_worker_missing()
            if problem:
                raise forms.ValidationError(problem)
        return data


# --- Training ------------------------------------------------------------------------------


class WordListField(forms.CharField):
    """A list of words, typed as one line separated by commas or spaces."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [word for word in re.split(r"[,\s]+", text) if word]


# The options most runs change; the rest go under "Advanced".
BASIC_OPTIONS = ("epochs", "max_steps", "batch_size", "lr", "image_size", "finetune", "seed")

_HELP = {
    "batch_size": "Images per GPU and micro-step.",
    "max_steps": "Empty: as many steps as the epochs give.",
    "schedule_over_epochs": (
        "Keep the cosine of all the epochs when max_steps stops sooner (as the release's "
        "step-2000 weights were)."
    ),
    "lr": "Peak learning rate (AdamW, cosine schedule).",
    "image_size": "Square side in pixels; a multiple of 28.",
    "finetune": "lora, or full (tiny backbones only).",
    "mixed_precision": "auto (bf16 on a GPU), no or bf16.",
    "keep_checkpoints": "Newest N periodic checkpoints kept; empty keeps all.",
    "lora_targets": "Module names, separated by commas.",
    "train_file": "A caption jsonl under an import root, instead of the snapshot's train split.",
    "synthetic_train_images": "More than 0: train on synthetic images instead of captions.",
    "freeze_vision": "LoRA keeps the vision tower frozen; unfreeze only with full fine-tuning.",
    "text_cache_dir": "Where the text tower may cache files.",
    "text_dim": "The text encoder's dimension (384 for all-MiniLM-L6-v2).",
}


def _bare_type(hint: Any) -> tuple[Any, bool]:
    """(type, optional) for `X` or `X | None`."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _option_field(name: str, hint: Any) -> forms.Field:
    """A form field for one TrainConfig option, from its annotation."""
    kind, optional = _bare_type(hint)
    field: forms.Field
    if kind is bool:
        field = forms.BooleanField(required=False)
    elif kind is int:
        field = forms.IntegerField(required=not optional)
    elif kind is float:
        field = forms.FloatField(required=not optional)
    elif kind is str:
        field = forms.CharField(
            required=not optional, max_length=1000, empty_value=None if optional else ""
        )
    elif typing.get_origin(kind) is list and typing.get_args(kind) == (str,):
        field = WordListField(required=not optional)
    else:
        raise TypeError(f"no form field for the training option {name} ({hint})")
    field.label = name  # the option's own name, as in a config file
    field.help_text = _HELP.get(name, "")
    return field


def relsim_option_hints() -> dict[str, Any]:
    """The options a person may set (TrainConfig's, less the ones the job sets), in the
    dataclass's order, with their annotations."""
    from ml.relsim import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig) if f.name not in RESERVED_OPTIONS}


class TrainRelsimForm(forms.Form):
    name = forms.CharField(max_length=200, initial="relsim", help_text="The model's name.")
    snapshot = forms.ChoiceField(
        required=False, help_text="The data set snapshot the model learns from."
    )
    gpus = forms.IntegerField(
        min_value=1,
        max_value=8,
        initial=1,
        label="GPUs",
        help_text="More than 1: one run over several GPUs of a worker (accelerate launch).",
    )
    activate = forms.BooleanField(
        required=False, initial=True, label="Make the trained model the active one"
    )

    def __init__(self, *args: Any, recipe: Recipe, exports: list[Job], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.exports = {str(job.pk): job for job in exports}
        snapshot = self.fields["snapshot"]
        assert isinstance(snapshot, forms.ChoiceField)
        snapshot.choices = [
            ("", "Export the approved captions now"),
            *((str(job.pk), _export_label(job)) for job in exports),
        ]
        paper = train_config_defaults()
        self.option_names: list[str] = []
        for name, hint in relsim_option_hints().items():
            if name in self.fields:
                raise TypeError(f"the training option {name} clashes with a form field")
            field = _option_field(name, hint)
            field.initial = recipe.defaults.get(name)
            if recipe.tiny and name in TINY_RECIPE and TINY_RECIPE[name] != paper.get(name):
                paper_value = paper.get(name)
                field.help_text = (
                    f"{field.help_text} Tiny recipe (the paper's: {paper_value}).".strip()
                )
            self.fields[name] = field
            self.option_names.append(name)
        self.config: dict[str, Any] = {}

    def basic_options(self) -> list[forms.BoundField]:
        return [self[name] for name in self.option_names if name in BASIC_OPTIONS]

    def advanced_options(self) -> list[forms.BoundField]:
        return [self[name] for name in self.option_names if name not in BASIC_OPTIONS]

    def clean_train_file(self) -> str | None:
        value = (self.cleaned_data.get("train_file") or "").strip()
        return str(_under_import_root(value)) if value else None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        options = {name: data[name] for name in self.option_names if name in data}
        if len(options) == len(self.option_names):
            self._check_options(options)
        problem = gpu_worker_missing()
        if problem:
            self.add_error(None, problem)
        elif problem := gpus_unavailable(data.get("gpus") or 1):
            self.add_error("gpus", problem)
        if "snapshot" in data:
            self._check_training_images(data["snapshot"])
        return data

    def _check_options(self, options: dict[str, Any]) -> None:
        """Build the config the job would build, as far as a form can, and let it validate
        itself; keep only what differs from the recipe the job applies anyway."""
        from ml.relsim import TrainConfig

        config = {
            **self.recipe.defaults,
            **options,
            "data_dir": "snapshot",
            "output_dir": "run",
            "backbone": self.recipe.vlm,
        }
        try:
            TrainConfig.from_dict(config).validate()
        except (TypeError, ValueError) as exc:
            self.add_error(None, f"The training options are not valid: {exc}.")
            return
        self.config = {
            name: value
            for name, value in options.items()
            if name not in self.recipe.defaults or value != self.recipe.defaults[name]
        }

    def _check_training_images(self, snapshot: str) -> None:
        if snapshot:
            job = self.exports[snapshot]
            try:
                count = snapshot_train_images(job)
            except JobInputError as exc:
                self.add_error("snapshot", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
                return
            where = f"Export #{job.pk} holds"
        else:
            count = approved_train_images()
            where = "The approved captions give"
        if count < MIN_TRAIN_IMAGES:
            self.add_error(
                "snapshot",
                f"{where} {count} captioned training image(s); relsim needs at least "
                f"{MIN_TRAIN_IMAGES} (approve captions of train-split groups).",
            )

    def snapshot_job(self) -> int | None:
        value = self.cleaned_data.get("snapshot")
        return int(value) if value else None


def _export_label(job: Job) -> str:
    counts = (job.artifacts.get("manifest") or {}).get("counts") or {}
    text = f"Export #{job.pk}, {job.created_at:%Y-%m-%d %H:%M}"
    if "train_lines" in counts:
        text += f": {counts['train_lines']} training images"
    if job.params.get("include_drafts"):
        text += " (drafts included)"
    return text
