"""Forms of the caption editor and review pages."""

from __future__ import annotations

from django import forms
from django.conf import settings

from captions.models import REJECT_COMMENT_MAX_CHARS
from core.ids import parse_ids


class CaptionSaveForm(forms.Form):
    text = forms.CharField(max_length=2000, strip=False)
    version = forms.IntegerField(min_value=0, required=False)


def reject_reasons() -> list[tuple[str, str]]:
    # Read when a form is made, so a changed setting (or a test's) shows at once.
    return [(reason, reason) for reason in settings.RELSIM_REJECT_REASONS]


class RejectForm(forms.Form):
    reason = forms.ChoiceField(choices=reject_reasons)
    comment = forms.CharField(max_length=REJECT_COMMENT_MAX_CHARS, required=False)
    version = forms.IntegerField(min_value=1)


class ApproveForm(forms.Form):
    version = forms.IntegerField(min_value=1)
    text = forms.CharField(max_length=2000, required=False, strip=False)


class BulkApproveForm(forms.Form):
    captions = forms.CharField(max_length=8000)
    confirmed = forms.BooleanField(required=False)

    def clean_captions(self) -> list[int]:
        raw = [p.strip() for p in self.cleaned_data["captions"].split(",") if p.strip()]
        ids = parse_ids(raw)
        if not ids:
            raise forms.ValidationError("Choose at least one caption.")
        if len(ids) > 500:
            raise forms.ValidationError("At most 500 captions at a time.")
        return ids
