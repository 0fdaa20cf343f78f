"""Forms of the caption editor and review pages."""

from __future__ import annotations

from django import forms
from django.conf import settings


class CaptionSaveForm(forms.Form):
    text = forms.CharField(max_length=2000, strip=False)
    version = forms.IntegerField(min_value=0, required=False)


class RejectForm(forms.Form):
    reason = forms.ChoiceField(choices=())
    version = forms.IntegerField(min_value=1)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["reason"].choices = [(r, r) for r in settings.RELSIM_REJECT_REASONS]


class ApproveForm(forms.Form):
    version = forms.IntegerField(min_value=1)
    text = forms.CharField(max_length=2000, required=False, strip=False)


class BulkApproveForm(forms.Form):
    captions = forms.CharField(max_length=8000)
    confirmed = forms.BooleanField(required=False)

    def clean_captions(self) -> list[int]:
        raw = [p.strip() for p in self.cleaned_data["captions"].split(",") if p.strip()]
        if not raw or not all(p.isdigit() for p in raw):
            raise forms.ValidationError("Choose at least one caption.")
        if len(raw) > 500:
            raise forms.ValidationError("At most 500 captions at a time.")
        return [int(p) for p in raw]
