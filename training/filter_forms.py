"""Forms of the filter page: start a filter job (train and score, or only score with an
existing filter) and the keep-rate a threshold is shown for."""

from __future__ import annotations

from typing import Any

from django import forms

from training.filter_jobs import BALANCE_MODES, SCORE_MODES
from training.filter_selectors import LabelledSet
from training.model_selectors import gpu_worker_missing
from training.models import TrainedModel

# The options most runs change; the rest may be set in a job's params (command line, API).
FILTER_OPTIONS = ("epochs", "max_steps", "batch_size", "lr", "image_size", "finetune", "seed")

_SCORE_HELP = {
    "all": "every image in the pool",
    "new": "only images this model has no score for yet",
    "none": "only the labelled images (for the precision and recall figures)",
}


class FilterJobForm(forms.Form):
    model = forms.ChoiceField(
        required=False,
        label="Filter",
        help_text="Train a new filter on the interest labels, or only score with one.",
    )
    name = forms.CharField(
        max_length=200, initial="interest filter", required=False, help_text="A new model's name."
    )
    balance = forms.ChoiceField(
        choices=[
            ("weighted", "weighted loss (each class weighs the same in total)"),
            ("balanced", "balanced sampling (as many yes as no per epoch)"),
        ],
        initial="weighted",
        help_text="How training meets the labels' imbalance (about 1 yes to 8 no in the paper).",
    )
    score = forms.ChoiceField(
        choices=[(mode, f"{mode}: {_SCORE_HELP[mode]}") for mode in SCORE_MODES],
        initial="all",
        label="Score",
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000)
    max_steps = forms.IntegerField(
        min_value=1, required=False, help_text="Empty: as many steps as the epochs give."
    )
    batch_size = forms.IntegerField(min_value=1, max_value=1024, help_text="Images per step.")
    lr = forms.FloatField(min_value=0.0, help_text="Peak learning rate.")
    image_size = forms.IntegerField(min_value=56, help_text="Square side; a multiple of 28.")
    finetune = forms.ChoiceField(choices=[("lora", "lora"), ("full", "full (tiny backbones)")])
    seed = forms.IntegerField(min_value=0)
    activate = forms.BooleanField(
        required=False, initial=True, label="Make it the active filter (the pool shows its scores)"
    )

    def __init__(
        self,
        *args: Any,
        recipe: dict[str, Any],
        vlm: str,
        labels: LabelledSet,
        models: list[TrainedModel],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.vlm = vlm
        self.labels = labels
        self.models = {str(model.pk): model for model in models}
        choice = self.fields["model"]
        assert isinstance(choice, forms.ChoiceField)
        choice.choices = [
            ("", "Train a new filter"),
            *((key, f"Score with #{m.pk} {m.name}") for key, m in self.models.items()),
        ]
        for name in FILTER_OPTIONS:
            self.fields[name].label = name  # the option's own name, as in a config file
            self.fields[name].initial = recipe.get(name)
        self.config: dict[str, Any] = {}

    def options(self) -> list[forms.BoundField]:
        return [self[name] for name in FILTER_OPTIONS]

    def chosen_model(self) -> TrainedModel | None:
        return self.models.get(self.cleaned_data.get("model") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problem = gpu_worker_missing()
        if problem:
            self.add_error(None, problem)
        if data.get("model"):
            if data.get("score") == "none":
                self.add_error("score", "Scoring with an existing filter needs all or new.")
            return data
        too_few = self.labels.too_few()
        if too_few:
            self.add_error(None, f"{too_few[:1].upper()}{too_few[1:]}.")
        options = {name: data[name] for name in FILTER_OPTIONS if name in data}
        if len(options) == len(FILTER_OPTIONS) and data.get("balance") in BALANCE_MODES:
            self._check_options(options, data["balance"])
        return data

    def _check_options(self, options: dict[str, Any], balance: str) -> None:
        """Let the config the job would build validate itself; keep only what differs from
        the recipe the job applies anyway."""
        from ml.captioning.filter_training import FilterTrainConfig

        config = {
            **self.recipe,
            **options,
            "data_file": "labels.jsonl",
            "output_dir": "run",
            "backbone": self.vlm,
            "imbalance": BALANCE_MODES[balance],
        }
        try:
            FilterTrainConfig.from_dict(config).validate()
        except (TypeError, ValueError) as exc:
            self.add_error(None, f"The training options are not valid: {exc}.")
            return
        self.config = {
            name: value for name, value in options.items() if value != self.recipe.get(name)
        }


class KeepRateForm(forms.Form):
    keep = forms.FloatField(
        label="Keep rate",
        initial=0.1,
        help_text="The share of scored images to keep, more than 0 and at most 1.",
    )

    def clean_keep(self) -> float:
        keep = float(self.cleaned_data["keep"])
        if not 0.0 < keep <= 1.0:
            raise forms.ValidationError("The keep rate must be more than 0 and at most 1.")
        return keep
