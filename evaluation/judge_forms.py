"""Forms of judge runs: start one over a benchmark run, or resume one. The API key field
is a password field that never renders its value back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from evaluation.models import BenchmarkRun


def _key_help() -> str:
    if settings.RELSIM_JUDGE_API_KEY:
        return "Empty: the key set on the server (RELSIM_JUDGE_API_KEY). Never stored."
    return (
        "Used by this run's job only, then deleted; never stored. For a local server that "
        "needs none, type any word."
    )


class _KeyMixin(forms.Form):
    api_key = forms.CharField(
        required=False,
        label="API key",
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    def _setup_key(self, *, allow_key: bool) -> None:
        if not allow_key:
            # Command lines take the key from the environment only.
            del self.fields["api_key"]
            return
        self.fields["api_key"].help_text = _key_help()

    def clean_api_key(self) -> str | None:
        key = self.cleaned_data.get("api_key") or ""
        if not key and not settings.RELSIM_JUDGE_API_KEY:
            raise forms.ValidationError(
                "Type the endpoint's API key: none is set on the server (RELSIM_JUDGE_API_KEY)."
            )
        return key or None

    def typed_key(self) -> str | None:
        value = self.cleaned_data.get("api_key")
        return value if isinstance(value, str) and value else None


class JudgeForm(_KeyMixin):
    endpoint = forms.CharField(
        max_length=500,
        label="Endpoint URL",
        help_text="An OpenAI-compatible API root, e.g. https://api.openai.com/v1 "
        "(or a full …/chat/completions URL).",
    )
    model_name = forms.CharField(max_length=200, label="Model", help_text="The paper's: gpt-4o.")
    temperature = forms.FloatField(
        min_value=0.0, max_value=2.0, initial=0.7, help_text="The paper's: 0.7."
    )
    methods = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Methods to judge",
        help_text="Each query's top-1 under each chosen method is scored.",
        error_messages={"required": "Choose at least one method."},
    )
    both_orders = forms.BooleanField(
        required=False,
        label="Ask both orders",
        help_text="Each pair twice, query first and candidate first, to measure position bias.",
    )
    concurrency = forms.IntegerField(
        min_value=1, max_value=64, initial=4, help_text="Requests in flight at once."
    )
    price_input_per_m = forms.FloatField(
        required=False,
        min_value=0.0,
        label="Price per 1M input tokens",
        help_text="Optional, for a cost estimate.",
    )
    price_output_per_m = forms.FloatField(
        required=False,
        min_value=0.0,
        label="Price per 1M output tokens",
        help_text="Optional, for a cost estimate.",
    )

    field_order = [
        "endpoint",
        "model_name",
        "api_key",
        "temperature",
        "methods",
        "both_orders",
        "concurrency",
        "price_input_per_m",
        "price_output_per_m",
    ]

    def __init__(
        self, *args: Any, benchmark: BenchmarkRun, allow_key: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.benchmark = benchmark
        self._setup_key(allow_key=allow_key)
        methods = self.fields["methods"]
        assert isinstance(methods, forms.MultipleChoiceField)
        methods.choices = [
            (key, str(info.get("label") or key)) for key, info in benchmark.methods.items()
        ]
        methods.initial = list(benchmark.methods)
        self.fields["endpoint"].initial = settings.RELSIM_JUDGE_URL
        self.fields["model_name"].initial = settings.RELSIM_JUDGE_MODEL or "gpt-4o"

    def clean_endpoint(self) -> str:
        value = str(self.cleaned_data.get("endpoint") or "").strip()
        if not value.startswith(("http://", "https://")):
            raise forms.ValidationError("The endpoint must start with http:// or https://.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.benchmark.is_complete:
            self.add_error(None, "The benchmark run is not complete yet: wait for its job.")
        return data


class JudgeResumeForm(_KeyMixin):
    concurrency = forms.IntegerField(
        required=False, min_value=1, max_value=64, help_text="Empty: as before."
    )

    def __init__(self, *args: Any, allow_key: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_key(allow_key=allow_key)
