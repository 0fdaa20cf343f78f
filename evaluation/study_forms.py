"""Forms of the study builder (admins) and of the participant flow (no account)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from core.ids import parse_id
from evaluation.models import ANSWER_CHOICES, BenchmarkRun
from evaluation.study_services import (
    DEFAULT_ANSWERS_PER_BASELINE,
    DEFAULT_CONSENT,
    DEFAULT_INSTRUCTIONS,
)

_CODE = r"^[A-Za-z0-9_-]*$"


def _method_choices(run: BenchmarkRun | None) -> list[tuple[str, str]]:
    if run is None:
        return []
    return [
        (key, str(info.get("label", key)) if isinstance(info, dict) else key)
        for key, info in run.methods.items()
    ]


def default_reference(run: BenchmarkRun | None) -> str:
    """The run's relsim method when it has one (the study asks whether relsim wins), else
    its first method, so that the form starts out valid with the others as baselines."""
    choices = _method_choices(run)
    for key, _ in choices:
        if key.startswith("relsim"):
            return key
    return choices[0][0] if choices else ""


class StudyForm(forms.Form):
    name = forms.CharField(max_length=200)
    # Chosen above the form (the methods below depend on it), so carried here unseen.
    benchmark = forms.ModelChoiceField(
        queryset=BenchmarkRun.objects.filter(finished_at__isnull=False),
        widget=forms.HiddenInput,
        error_messages={"required": "Choose a finished benchmark run first."},
    )
    reference_method = forms.ChoiceField(help_text="The method under study (relsim).")
    baselines = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Each trial pits the reference against one of these.",
    )
    trials_per_participant = forms.IntegerField(min_value=1, max_value=500, initial=20)
    catch_per_participant = forms.IntegerField(
        min_value=0,
        max_value=20,
        initial=2,
        help_text="Attention checks from curated groups; they flag, never reject.",
    )
    completion_code = forms.RegexField(
        regex=_CODE,
        max_length=64,
        required=False,
        help_text="Prolific's completion code; participants are sent back with it at the end.",
    )
    screenout_code = forms.RegexField(
        regex=_CODE,
        max_length=64,
        required=False,
        help_text="Prolific's code for those who decline consent.",
    )
    resume_hours = forms.IntegerField(
        min_value=1, max_value=24 * 14, initial=24, help_text="How long a reload may resume."
    )
    answers_per_baseline = forms.IntegerField(
        min_value=1,
        max_value=100_000,
        initial=DEFAULT_ANSWERS_PER_BASELINE,
        help_text="Answers wanted for each baseline (the paper: 800-880); the study page "
        "says how many participants that takes.",
    )
    consent = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), initial=DEFAULT_CONSENT)
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}), initial=DEFAULT_INSTRUCTIONS
    )

    def __init__(self, *args: Any, run: BenchmarkRun | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if run is None and self.is_bound:
            wanted = parse_id(self.data.get("benchmark", ""))
            if wanted is not None:
                run = BenchmarkRun.objects.filter(pk=wanted, finished_at__isnull=False).first()
        choices = _method_choices(run)
        for name in ("reference_method", "baselines"):
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = choices
        if run is not None:
            self.fields["benchmark"].initial = run.pk
            reference = default_reference(run)
            self.fields["reference_method"].initial = reference
            self.fields["baselines"].initial = [key for key, _ in choices if key != reference]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        reference, baselines = data.get("reference_method"), data.get("baselines") or []
        if reference and reference in baselines:
            self.add_error("baselines", "The reference method cannot also be a baseline.")
        return data


class StudyTextForm(forms.Form):
    consent = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=20000)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=20000)


class ConsentForm(forms.Form):
    agree = forms.ChoiceField(choices=[("yes", "I agree"), ("no", "I do not agree")])
    # Prolific's URL parameters, carried through the consent form.
    PROLIFIC_PID = forms.RegexField(regex=r"^[A-Za-z0-9]{1,64}$", required=False)
    STUDY_ID = forms.RegexField(regex=r"^[A-Za-z0-9]{1,64}$", required=False)
    SESSION_ID = forms.RegexField(regex=r"^[A-Za-z0-9]{1,64}$", required=False)
    viewport = forms.RegexField(regex=r"^\d{1,5}x\d{1,5}$", required=False)

    def platform(self) -> dict[str, str]:
        data = self.cleaned_data
        return {
            "pid": data.get("PROLIFIC_PID") or "",
            "study_id": data.get("STUDY_ID") or "",
            "session_id": data.get("SESSION_ID") or "",
        }


@dataclass(frozen=True)
class AnswerInput:
    position: int
    choice: str
    # Milliseconds from the images being shown to the answer; None when the browser ran no JS.
    response_ms: int | None
    viewport: str


_MAX_RESPONSE_MS = 24 * 3600 * 1000
_VIEWPORT = re.compile(r"\d{1,5}x\d{1,5}")


def _whole_number(text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError("enter a whole number")
    # Longer than the highest allowed cannot be in range; int() also refuses very long text.
    if len(text.lstrip("0")) > len(str(high)):
        raise ValueError(f"must be from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"must be from {low} to {high}")
    return value


def read_answer(data: Mapping[str, str]) -> AnswerInput:
    """An answer as posted, checked field by field (the study's hottest request: a form
    class cost more than the rest of the checking). Raises AnswerInvalid naming every
    field that is wrong."""
    problems: dict[str, str] = {}
    position = 0
    response_ms: int | None = None
    try:
        position = _whole_number(data.get("position", ""), 0, 100_000)
    except ValueError as error:
        problems["position"] = "This field is required." if not data.get("position") else str(error)
    choice = data.get("choice", "")
    if choice not in ANSWER_CHOICES:
        problems["choice"] = f"{choice!r} is not one of left, right or same."
    if raw_ms := data.get("response_ms", ""):
        try:
            response_ms = _whole_number(raw_ms, 0, _MAX_RESPONSE_MS)
        except ValueError as error:
            problems["response_ms"] = str(error)
    viewport = data.get("viewport", "")
    if viewport and not _VIEWPORT.fullmatch(viewport):
        problems["viewport"] = "expected width x height, such as 390x844."
    if problems:
        raise AnswerInvalid(problems)
    return AnswerInput(position, choice, response_ms, viewport)


class AnswerInvalid(ValueError):
    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {text}" for name, text in problems.items()))
        self.problems = problems
