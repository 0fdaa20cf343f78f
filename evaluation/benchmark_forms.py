"""The form that starts a benchmark run: its methods and the sizes of its database, with
the paper's sizes as defaults, capped by what the pool holds."""

from __future__ import annotations

from typing import Any

from django import forms

from evaluation.benchmark_selectors import (
    DEFAULT_K,
    MAX_K,
    PAPER_DISTRACTORS,
    PAPER_QUERIES,
    PAPER_TEST,
    TEST_HELP,
    Method,
)


class BenchmarkForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Shown in lists and studies.")
    methods = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        label="Methods to compare",
        error_messages={"required": "Choose at least one method."},
    )
    n_test = forms.IntegerField(min_value=1, label="Test images (at most)")
    n_distractors = forms.IntegerField(min_value=0, label="Distractors (at most)")
    n_queries = forms.IntegerField(
        min_value=1, label="Queries", help_text="Drawn from the test images of the database."
    )
    k = forms.IntegerField(
        min_value=1,
        max_value=MAX_K,
        initial=DEFAULT_K,
        label="k (top-k)",
        help_text="Hits stored per query and method; the query itself never counts.",
    )
    seed = forms.IntegerField(
        min_value=0, initial=0, help_text="The same seed and pool draw the same run."
    )

    def __init__(
        self,
        *args: Any,
        methods: list[Method],
        test_available: int,
        distractors_available: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method_by_key = {method.key: method for method in methods}
        self.test_available = test_available
        self.distractors_available = distractors_available
        field = self.fields["methods"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(method.key, method.choice_label) for method in methods]
        field.initial = [method.key for method in methods]
        n_test = min(PAPER_TEST, test_available) or 1
        self.fields["n_test"].initial = n_test
        self.fields[
            "n_test"
        ].help_text = (
            f"{TEST_HELP} {test_available} test image(s) exist; the paper uses {PAPER_TEST:,}."
        )
        self.fields["n_distractors"].initial = min(PAPER_DISTRACTORS, distractors_available)
        self.fields[
            "n_distractors"
        ].help_text = (
            f"{distractors_available} distractor(s) exist; the paper uses {PAPER_DISTRACTORS:,}."
        )
        self.fields["n_queries"].initial = min(PAPER_QUERIES, n_test)
        self.fields["n_queries"].help_text += f" The paper draws {PAPER_QUERIES:,}."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.test_available == 0:
            self.add_error(
                None,
                "There are no test images: put groups in the test split first "
                "(a group's page sets its split).",
            )
            return data
        n_test, n_queries = data.get("n_test"), data.get("n_queries")
        if n_test is not None and n_queries is not None:
            used = min(n_test, self.test_available)
            if n_queries > used:
                self.add_error(
                    "n_queries",
                    f"Only {used} test image(s) go into the database "
                    f"({self.test_available} exist), too few for {n_queries} queries.",
                )
        n_distractors, k = data.get("n_distractors"), data.get("k")
        if n_test is not None and n_distractors is not None and k is not None:
            size = min(n_test, self.test_available) + min(n_distractors, self.distractors_available)
            if k > size - 1:
                self.add_error(
                    "k",
                    f"The database holds {size} image(s), so a query has at most "
                    f"{max(size - 1, 0)} others to rank; choose a smaller k.",
                )
        return data

    def chosen_methods(self) -> list[Method]:
        return [self.method_by_key[key] for key in self.cleaned_data["methods"]]
