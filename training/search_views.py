"""The search page (query by a pool image, an upload or a caption's text; every index side by
side) and the relsim-score JSON endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from core.access import ANNOTATE, permission_required
from core.http import AuthedRequest
from core.ids import parse_id
from core.uploads import upload_refusal
from curation.intake import ImageRejected, normalise_image
from curation.models import Image
from curation.selectors import current_group
from curation.services import intake_limits
from training import search
from training.search import MAX_K, MAX_PAIRS, NoRelsimIndex, NotInIndex, Query
from training.similarity import active_relsim_index


class SearchForm(forms.Form):
    """A GET query: ?image=ID or ?text=..., and ?k."""

    image = forms.IntegerField(required=False, min_value=1, label="Pool image id")
    text = forms.CharField(required=False, label="Anonymous caption")
    k = forms.IntegerField(required=False, min_value=1, max_value=MAX_K, label="Results")

    def clean_text(self) -> str:
        text: str = self.cleaned_data.get("text") or ""
        limit = settings.RELSIM_CAPTION_MAX_CHARS
        if "text" in self.data and not text:
            raise forms.ValidationError("Write the caption to search with.")
        if len(text) > limit:
            raise forms.ValidationError(
                f"A caption has at most {limit} characters; this one has {len(text)}."
            )
        return text

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("image") and data.get("text"):
            raise forms.ValidationError("Search by an image or by a caption, not both.")
        return data


class UploadSearchForm(forms.Form):
    """A POST query: an image file, checked like any imported image."""

    upload = forms.FileField(label="Image file")
    k = forms.IntegerField(required=False, min_value=1, max_value=MAX_K, label="Results")

    def __init__(self, *args: Any, upload_refused: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set when the upload was stopped at the size limit while it streamed in.
        self.upload_refused = upload_refused

    def clean_upload(self) -> Any:
        upload: UploadedFile[bytes] = self.cleaned_data["upload"]
        limits = intake_limits()
        if upload.size and upload.size > limits.max_bytes:
            raise forms.ValidationError(
                f"The file is over the {settings.RELSIM_MAX_IMAGE_MB} MB limit for an image."
            )
        try:
            return normalise_image(upload.read(), limits=limits)
        except ImageRejected as exc:
            raise forms.ValidationError(f"This file was not accepted: {exc.reason}.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.upload_refused:
            # The file never arrived: why is the one thing worth saying.
            self.errors.pop("upload", None)
            self.add_error("upload", self.upload_refused)
        return data


def _models_url() -> str:
    """The models page, once there is one."""
    try:
        return reverse("model_list")
    except NoReverseMatch:
        return ""


def _context(request: AuthedRequest, **extra: Any) -> dict[str, Any]:
    context = {
        "form": SearchForm(),
        "upload_form": UploadSearchForm(),
        "current_group": current_group(request.user),
        "models_url": _models_url(),
        "max_k": MAX_K,
        "default_k": search.DEFAULT_K,
        "caption_max": settings.RELSIM_CAPTION_MAX_CHARS,
        **extra,
    }
    if "relsim_index" not in context:
        context["relsim_index"] = active_relsim_index()
    return context


@dataclass(frozen=True)
class Tile:
    """One result as the page shows it. Its strings are made here, once: a page holds up to
    100 results per column, and template tags per result (url, floatformat, localised ids)
    cost more than the search itself."""

    image_id: int
    score: float
    pk: str
    score_text: str
    detail_url: str
    thumb_url: str
    like_url: str


_SENTINEL_ID = 2_147_483_647


def _url_maker(name: str) -> Callable[[int], str]:
    """reverse() of a one-id URL for many ids at the cost of one call."""
    head, _, tail = reverse(name, args=[_SENTINEL_ID]).partition(str(_SENTINEL_ID))
    return lambda pk: f"{head}{pk}{tail}"


def _columns(results: search.SearchResults, k: int) -> list[dict[str, Any]]:
    """Each column with its results' tiles (one query for all their images); results whose
    image was deleted since the index was built are left out."""
    wanted = {hit.image_id for column in results.columns for hit in column.hits}
    storage = Image._meta.get_field("thumbnail").storage
    thumbs = {
        pk: storage.url(name) if name else ""
        for pk, name in Image.objects.filter(pk__in=wanted).values_list("id", "thumbnail")
    }
    detail = _url_maker("image_detail")
    search_url = reverse("search")
    return [
        {
            "column": column,
            "tiles": [
                Tile(
                    image_id=hit.image_id,
                    score=hit.score,
                    pk=str(hit.image_id),
                    score_text=f"{hit.score:.3f}",
                    detail_url=detail(hit.image_id),
                    thumb_url=thumbs[hit.image_id],
                    like_url=f"{search_url}?image={hit.image_id}&k={k}",
                )
                for hit in column.hits
                if hit.image_id in thumbs
            ],
        }
        for column in results.columns
    ]


def _render_results(request: AuthedRequest, query: Query, k: int, **extra: Any) -> HttpResponse:
    results = search.search(query, k=k)
    context = _context(
        request,
        query=query,
        k=k,
        results=results,
        columns=_columns(results, k),
        relsim_index=results.relsim_index,
        next_url=request.get_full_path(),
        **extra,
    )
    group = context["current_group"]
    context["add_url"] = reverse("group_add", args=[group.pk]) if group is not None else ""
    return render(request, "training/search.html", context)


@require_http_methods(["GET", "POST"])
@permission_required(*ANNOTATE)
def search_page(request: AuthedRequest) -> HttpResponse:
    if request.method == "POST":
        upload_form = UploadSearchForm(
            request.POST, request.FILES, upload_refused=upload_refusal(request)
        )
        if not upload_form.is_valid():
            context = _context(request, upload_form=upload_form)
            return render(request, "training/search.html", context, status=400)
        k = upload_form.cleaned_data.get("k") or search.DEFAULT_K
        query = Query(upload=upload_form.cleaned_data["upload"])
        return _render_results(request, query, k, upload_form=upload_form)

    form = SearchForm(request.GET or None)
    if not form.is_bound:
        return render(request, "training/search.html", _context(request))
    if not form.is_valid():
        return render(request, "training/search.html", _context(request, form=form), status=400)
    k = form.cleaned_data.get("k") or search.DEFAULT_K
    image_id, text = form.cleaned_data.get("image"), form.cleaned_data.get("text")
    if image_id:
        image = Image.objects.filter(pk=image_id).first()
        if image is None:
            context = _context(request, form=form, unknown_image=image_id)
            return render(request, "training/search.html", context, status=404)
        return _render_results(request, Query(image=image), k, form=form)
    if text:
        return _render_results(request, Query(text=text), k, form=form)
    # Only ?k: nothing to search with yet.
    return render(request, "training/search.html", _context(request, form=form))


# --- relsim as a metric: JSON ------------------------------------------------------------------


def _error(message: str, status: int = 400, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _pairs_from_get(request: AuthedRequest) -> list[tuple[int, int]] | JsonResponse:
    a, b = parse_id(request.GET.get("a")), parse_id(request.GET.get("b"))
    if a is None or b is None:
        return _error('Give two pool image ids: ?a=ID&b=ID (or POST {"pairs": [[a, b], ...]}).')
    return [(a, b)]


def _pairs_from_post(request: AuthedRequest) -> list[tuple[int, int]] | JsonResponse:
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return _error('The body must be JSON: {"pairs": [[a, b], ...]}.')
    pairs = body.get("pairs") if isinstance(body, dict) else None
    if not isinstance(pairs, list) or not pairs:
        return _error('The body must be a JSON object with a non-empty list "pairs".')
    if len(pairs) > MAX_PAIRS:
        return _error(f"At most {MAX_PAIRS} pairs at a time; this request has {len(pairs)}.")
    out = []
    for number, pair in enumerate(pairs):
        ids = [parse_id(v) for v in pair] if isinstance(pair, list) and len(pair) == 2 else []
        if len(ids) != 2 or ids[0] is None or ids[1] is None:
            return _error(f"pairs[{number}] must be two positive image ids, like [12, 34].")
        out.append((ids[0], ids[1]))
    return out


# POST only carries a list too long for a URL: the endpoint reads and changes nothing, so
# there is nothing to forge, and a script need not fetch a CSRF token first.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@permission_required(*ANNOTATE)
def relsim_score_api(request: AuthedRequest) -> JsonResponse:
    """relsim similarity of pool image pairs, from the active relsim index's vectors."""
    pairs = _pairs_from_post(request) if request.method == "POST" else _pairs_from_get(request)
    if isinstance(pairs, JsonResponse):
        return pairs
    try:
        record, scores = search.pair_scores(pairs)
    except NoRelsimIndex as exc:
        return _error(f"{exc} Train a relsim model and embed the pool first.", status=409)
    except NotInIndex as exc:
        return _error(
            f"Not in the active relsim index: image(s) {', '.join(map(str, exc.missing))}.",
            missing=exc.missing,
        )
    model = record.model
    assert model is not None
    return JsonResponse(
        {
            "model": {"id": model.pk, "name": model.name},
            "index": record.pk,
            "scores": [
                {"a": a, "b": b, "score": score}
                for (a, b), score in zip(pairs, scores, strict=True)
            ],
        }
    )
