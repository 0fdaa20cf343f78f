"""Forms of the captioner page: train a captioner on the approved captions, and draft
captions for groups or images with one."""

from __future__ import annotations

from typing import Any

from django import forms

from training.caption_jobs import RESERVED_CAPTIONER_OPTIONS
from training.caption_selectors import DEFAULT_THRESHOLD, TARGETS, too_few_captions
from training.model_selectors import gpu_worker_missing
from training.models import TrainedModel

# The options most runs change; the rest may be set in a job's params (command line, API).
CAPTIONER_OPTIONS = ("epochs", "max_steps", "batch_size", "lr", "image_size", "finetune", "seed")

_TARGET_HELP = {
    "groups": "groups of 2 or more images with no approved or pending caption (one prompt each)",
    "images": "single images with no caption of their own, above the filter threshold",
}


class TrainCaptionerForm(forms.Form):
    form = forms.CharField(widget=forms.HiddenInput, initial="train")
    name = forms.CharField(
        max_length=200, initial="captioner", required=False, help_text="The new model's name."
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000)
    max_steps = forms.IntegerField(
        min_value=1, required=False, help_text="Empty: as many steps as the epochs give."
    )
    batch_size = forms.IntegerField(min_value=1, max_value=1024, help_text="Samples per step.")
    lr = forms.FloatField(min_value=0.0, help_text="Peak learning rate.")
    image_size = forms.IntegerField(min_value=56, help_text="Square side; a multiple of 28.")
    finetune = forms.ChoiceField(choices=[("lora", "lora"), ("full", "full (tiny backbones)")])
    seed = forms.IntegerField(min_value=0)
    activate = forms.BooleanField(
        required=False, initial=True, label="Make it the active captioner (drafting uses it)"
    )

    def __init__(
        self, *args: Any, recipe: dict[str, Any], vlm: str, approved: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.vlm = vlm
        self.approved = approved
        for name in CAPTIONER_OPTIONS:
            self.fields[name].label = name  # the option's own name, as in a config file
            self.fields[name].initial = recipe.get(name)
        self.config: dict[str, Any] = {}

    def options(self) -> list[forms.BoundField]:
        return [self[name] for name in CAPTIONER_OPTIONS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problem = gpu_worker_missing()
        if problem:
            self.add_error(None, problem)
        too_few = too_few_captions(self.approved)
        if too_few:
            self.add_error(None, f"{too_few[:1].upper()}{too_few[1:]}.")
        options = {name: data[name] for name in CAPTIONER_OPTIONS if name in data}
        if len(options) == len(CAPTIONER_OPTIONS):
            self._check_options(options)
        return data

    def _check_options(self, options: dict[str, Any]) -> None:
        """Let the config the job would build validate itself; keep only what differs from
        the recipe the job applies anyway."""
        from ml.captioning.captioner_training import CaptionerTrainConfig

        recipe = {k: v for k, v in self.recipe.items() if k not in RESERVED_CAPTIONER_OPTIONS}
        config = {**recipe, **options, "data_dir": "data", "output_dir": "run"}
        config["backbone"] = self.vlm
        try:
            CaptionerTrainConfig.from_dict(config).validate()
        except (TypeError, ValueError) as exc:
            self.add_error(None, f"The training options are not valid: {exc}.")
            return
        self.config = {
            name: value for name, value in options.items() if value != self.recipe.get(name)
        }


class DraftCaptionsForm(forms.Form):
    form = forms.CharField(widget=forms.HiddenInput, initial="draft")
    model = forms.ChoiceField(label="Captioner", required=False)
    target = forms.ChoiceField(
        choices=[(t, f"{t}: {_TARGET_HELP[t]}") for t in TARGETS], initial="groups"
    )
    limit = forms.IntegerField(
        min_value=1, initial=100, required=False, help_text="At most this many; empty: all."
    )
    threshold = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=DEFAULT_THRESHOLD,
        required=False,
        help_text="Images: the least filter score drafted for (ignored while no image has one).",
    )

    def __init__(self, *args: Any, models: list[TrainedModel], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = {str(model.pk): model for model in models}
        active = next((m for m in models if m.is_active), None)
        choice = self.fields["model"]
        assert isinstance(choice, forms.ChoiceField)
        choice.choices = [
            ("", f"the active captioner{f' (#{active.pk} {active.name})' if active else ''}"),
            *((key, f"#{m.pk} {m.name}") for key, m in self.models.items()),
        ]

    def chosen_model(self) -> TrainedModel | None:
        return self.models.get(self.cleaned_data.get("model") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problem = gpu_worker_missing()
        if problem:
            self.add_error(None, problem)
        if not data.get("model") and not any(m.is_active for m in self.models.values()):
            self.add_error(
                None, "There is no active captioner: train one, or make one active, first."
            )
        return data
