"""Forms of the curation pages; each says what was wrong."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from core.ids import parse_ids
from core.splits import Split
from curation.models import Group

MAX_IDS = 500


class GroupForm(forms.Form):
    title = forms.CharField(max_length=200)
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, instance_group: Group | None = None, **kwargs: Any) -> None:
        if instance_group is not None:
            kwargs.setdefault(
                "initial",
                {
                    "title": instance_group.title,
                    "split": instance_group.split,
                    "notes": instance_group.notes,
                },
            )
        super().__init__(*args, **kwargs)


def _int_list(raw: str, what: str) -> list[int]:
    values = [part.strip() for part in raw.replace(" ", ",").split(",") if part.strip()]
    if not values:
        raise forms.ValidationError(f"Give at least one {what}.")
    if len(values) > MAX_IDS:
        raise forms.ValidationError(f"At most {MAX_IDS} {what}s at a time.")
    ids = parse_ids(values)
    if ids is None:
        raise forms.ValidationError(f"{what.capitalize()}s are whole numbers separated by commas.")
    return ids


class ImageIdsForm(forms.Form):
    """Image ids as `images=1,2,3` and/or repeated `image=` fields."""

    images = forms.CharField(required=False, max_length=8000)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        repeated = self.data.getlist("image") if isinstance(self.data, QueryDict) else []
        raw = ",".join([data.get("images") or "", *repeated])
        data["ids"] = list(dict.fromkeys(_int_list(raw, "image id")))
        return data

    def ids(self) -> list[int]:
        return list(self.cleaned_data.get("ids", []))


class ReorderForm(forms.Form):
    order = forms.CharField(max_length=8000)

    def clean_order(self) -> list[int]:
        ids = _int_list(self.cleaned_data["order"], "image id")
        if len(set(ids)) != len(ids):
            raise forms.ValidationError("An image appears twice in the new order.")
        return ids


class LabelForm(forms.Form):
    interesting = forms.ChoiceField(choices=[("yes", "yes"), ("no", "no")])

    def clean_interesting(self) -> bool:
        answer: str = self.cleaned_data["interesting"]
        return answer == "yes"
