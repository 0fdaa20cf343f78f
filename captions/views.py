"""Caption editor (live lint, autosave, version checks, presence) and the review queue."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from captions import selectors, services
from captions.forms import (
    ApproveForm,
    BulkApproveForm,
    CaptionSaveForm,
    RejectForm,
    reject_reasons,
)
from captions.lint import lint_caption
from captions.merge import merge_words
from captions.models import REJECT_COMMENT_MAX_CHARS, Caption, CaptionRevision
from captions.text import CaptionTextError
from core.access import ANNOTATE, REVIEW, permission_required
from core.http import AuthedRequest
from core.ids import parse_id
from core.splits import Split
from curation.models import Group, Image

# --- editor ------------------------------------------------------------------------------


def _editor(request: AuthedRequest, group: Group | None, image: Image | None) -> HttpResponse:
    caption = selectors.editable_caption(group, image)
    if caption is not None:
        services.presence_touch(caption=caption, user=request.user)
    text = caption.text if caption else ""
    members = [m.image for m in group.members.select_related("image")] if group else [image]
    context = {
        "group": group,
        "image": image,
        "members": members,
        "caption": caption,
        "lint": lint_caption(text) if text else None,
        "others": selectors.other_editors(caption, request.user) if caption else [],
        "history": caption.revisions.select_related("actor").order_by("-version")[:20]
        if caption
        else [],
    }
    return render(request, "captions/editor.html", context)


@require_GET
@permission_required(*ANNOTATE)
def edit_group_caption(request: AuthedRequest, group_id: int) -> HttpResponse:
    return _editor(request, get_object_or_404(Group, pk=group_id), None)


@require_GET
@permission_required(*ANNOTATE)
def edit_image_caption(request: AuthedRequest, image_id: int) -> HttpResponse:
    return _editor(request, None, get_object_or_404(Image, pk=image_id))


@require_POST
@permission_required(*ANNOTATE)
def lint(request: AuthedRequest) -> HttpResponse:
    text = request.POST.get("text", "")[:2000]
    return render(request, "captions/editor.html#lint", {"lint": lint_caption(text)})


@require_POST
@permission_required("captions.add_caption")
def create_caption(request: AuthedRequest) -> HttpResponse:
    """The first draft of a group's or an image's caption."""
    form = CaptionSaveForm(request.POST)
    group = Group.objects.filter(pk=parse_id(request.POST.get("group")) or 0).first()
    image = Image.objects.filter(pk=parse_id(request.POST.get("image")) or 0).first()
    if not form.is_valid() or (group is None) == (image is None):
        return HttpResponseBadRequest("Send the text and exactly one of group or image.")
    try:
        caption = services.caption_create(
            text=form.cleaned_data["text"],
            group=group,
            image=image,
            split=Split.TRAIN if image else "",
            author=request.user,
        )
    except CaptionTextError as exc:
        return _save_error(request, str(exc))
    return _saved(request, caption)


@require_POST
@permission_required("captions.change_caption")
def save_caption(request: AuthedRequest, caption_id: int) -> HttpResponse:
    """Autosave and explicit save: refused with 409 when the caption moved on."""
    caption = get_object_or_404(Caption, pk=caption_id)
    form = CaptionSaveForm(request.POST)
    if not form.is_valid() or form.cleaned_data.get("version") is None:
        return HttpResponseBadRequest("Send the text and the version it was based on.")
    mine = form.cleaned_data["text"]
    was_rejected = caption.status == Caption.Status.REJECTED
    try:
        caption = services.caption_edit(
            caption=caption,
            text=mine,
            based_on_version=form.cleaned_data["version"],
            editor=request.user,
        )
    except services.StaleCaption as exc:
        # The text at the version this save started from is what both edits branched off.
        started_from = CaptionRevision.objects.filter(
            caption_id=caption_id, version=form.cleaned_data["version"]
        )
        base = started_from.values_list("text_after", flat=True).first()
        return _conflict(request, exc.current, mine, base=base)
    except CaptionTextError as exc:
        return _save_error(request, str(exc))
    services.presence_touch(caption=caption, user=request.user)
    if caption.pk != caption_id:
        # An approved caption was revised: the text lives on in a new draft under review.
        return _revision_started(request, caption)
    if was_rejected and not request.htmx:
        messages.success(request, "Revised and sent back to review.")
        return redirect(_editor_url(caption))
    return _saved(request, caption)


@require_GET
@permission_required(*ANNOTATE)
def returned_captions(request: AuthedRequest) -> HttpResponse:
    """The signed-in author's rejected captions that are waiting for a revision."""
    captions = selectors.returned_to(request.user)[:200]
    return render(request, "captions/returned.html", {"captions": captions})


def _revision_started(request: AuthedRequest, draft: Caption) -> HttpResponse:
    note = "Saved as a new draft for review; the approved caption stays until it is approved."
    messages.success(request, note)
    if request.htmx:
        response = HttpResponse(note)
        response["HX-Redirect"] = _editor_url(draft)
        return response
    return redirect(_editor_url(draft))


def _saved(request: AuthedRequest, caption: Caption) -> HttpResponse:
    if request.htmx:
        return render(request, "captions/editor.html#saved", {"caption": caption})
    messages.success(request, "Caption saved.")
    return redirect(_editor_url(caption))


def _save_error(request: AuthedRequest, message: str) -> HttpResponse:
    return render(request, "captions/editor.html#save-error", {"message": message}, status=422)


def _conflict(
    request: AuthedRequest, current: Caption, mine: str, *, base: str | None = None
) -> HttpResponse:
    """Base, theirs and yours side by side with a three-way merge pre-filled: nothing typed
    is lost, nothing is silently overwritten. Without a known base, yours is pre-filled."""
    theirs = current.text
    merge = merge_words(theirs if base is None else base, theirs, mine)
    context = {
        "caption": current,
        "base": base,
        "mine": mine,
        "theirs": theirs,
        "merge": merge,
        "diff": selectors.word_diff(theirs, mine),
        "last_editor": current.revisions.order_by("-version").select_related("actor").first(),
        "editor_url": _editor_url(current),
    }
    template = "captions/conflict.html#conflict" if request.htmx else "captions/conflict.html"
    response = render(request, template, context, status=409)
    if request.htmx:
        # The panel goes below the editor's form (a form may not hold another form), and
        # the event tells the page to stop the editor's autosave: the merge is the save now.
        response["HX-Retarget"] = "#caption-form"
        response["HX-Reswap"] = "afterend"
        response["HX-Trigger-After-Swap"] = "caption-conflict"
    return response


def _editor_url(caption: Caption) -> str:
    if caption.group_id:
        return reverse("edit_group_caption", args=[caption.group_id])
    return reverse("edit_image_caption", args=[caption.image_id])


@require_POST
@permission_required(*ANNOTATE)
def presence(request: AuthedRequest, caption_id: int) -> HttpResponse:
    caption = get_object_or_404(Caption, pk=caption_id)
    services.presence_touch(caption=caption, user=request.user)
    context = {"others": selectors.other_editors(caption, request.user), "caption": caption}
    return render(request, "captions/editor.html#presence", context)


# --- review ------------------------------------------------------------------------------


@require_GET
@permission_required(*REVIEW)
def review_queue(request: AuthedRequest) -> HttpResponse:
    source = request.GET.get("source", "")
    queue = selectors.review_queue_page()
    if source in Caption.Source.values:
        queue = queue.filter(source=source)
    # One row more than shown says whether more wait, without counting a long queue.
    picked = list(queue[: _QUEUE_ROWS + 1])
    shown = picked[:_QUEUE_ROWS]
    members = selectors.group_thumbnails(
        (caption.group_id for caption in shown if caption.group_id),
        per_group=_QUEUE_THUMBNAILS,
    )
    rows = [
        {
            "caption": caption,
            "lint": lint_caption(caption.text),
            "images": _queue_images(caption, members),
        }
        for caption in shown
    ]
    return render(
        request,
        "captions/review_queue.html",
        {
            "rows": rows,
            "more_waiting": len(picked) > _QUEUE_ROWS,
            "source": source,
            "sources": Caption.Source.choices,
        },
    )


def _queue_images(
    caption: Caption, members: dict[int, list[selectors.Thumbnail]]
) -> list[selectors.Thumbnail]:
    if caption.group_id:
        return members.get(caption.group_id, [])
    image = caption.image
    return [selectors.thumbnail(image.pk, image.thumbnail.name)] if image else []


# Enough thumbnails to recognise a group at a glance without loading whole groups, and
# enough rows for a sitting: the page stays fast however long the queue grows.
_QUEUE_THUMBNAILS = 4
_QUEUE_ROWS = 100


@require_GET
@permission_required(*REVIEW)
def review_detail(request: AuthedRequest, caption_id: int) -> HttpResponse:
    caption = get_object_or_404(
        Caption.objects.select_related("group", "image", "author"), pk=caption_id
    )
    return render(request, "captions/review_detail.html", _review_context(request, caption))


def _review_context(
    request: AuthedRequest, caption: Caption, edit_text: str | None = None, edit_error: str = ""
) -> dict[str, Any]:
    """What the review page shows; `edit_text` refills the edit box after a refused approval."""
    original = selectors.original_text(caption)
    replaces = selectors.approved_sibling(caption)
    members = (
        [m.image for m in caption.group.members.select_related("image")]
        if caption.group
        else [caption.image]
    )
    next_caption = selectors.review_queue().exclude(pk=caption.pk).first()
    context: dict[str, Any] = {
        "caption": caption,
        "members": members,
        "original": original,
        "diff": selectors.word_diff(original, caption.text),
        "history": caption.revisions.select_related("actor").order_by("-version"),
        "lint": lint_caption(caption.text),
        "reasons": reject_reasons(),
        "comment_max": REJECT_COMMENT_MAX_CHARS,
        "next_caption": next_caption,
        "blocker": services.approval_blocker(caption, request.user),
        "replaces": replaces,
        "replaces_diff": selectors.word_diff(replaces.text, caption.text) if replaces else [],
        "members_change": selectors.members_change(caption),
        "edit_text": caption.text if edit_text is None else edit_text,
        "edit_error": edit_error,
    }
    return context


def _approval_refused(
    request: AuthedRequest, caption: Caption, text: str, message: str
) -> HttpResponse:
    """The review page again, with the reviewer's text kept in the edit box and the error."""
    caption = Caption.objects.select_related("group", "image", "author").get(pk=caption.pk)
    context = _review_context(request, caption, edit_text=text, edit_error=message)
    return render(request, "captions/review_detail.html", context, status=422)


def _after_review(caption: Caption) -> HttpResponse:
    following = selectors.review_queue().exclude(pk=caption.pk).first()
    return (
        redirect("review_detail", caption_id=following.pk)
        if following
        else redirect("review_queue")
    )


@require_POST
@permission_required(*REVIEW)
def review_approve(request: AuthedRequest, caption_id: int) -> HttpResponse:
    caption = get_object_or_404(Caption, pk=caption_id)
    form = ApproveForm(request.POST)
    if not form.is_valid():
        if "text" in form.errors:
            message = "; ".join(str(e) for e in form.errors["text"])
            return _approval_refused(request, caption, request.POST.get("text", ""), message)
        return HttpResponseBadRequest(form.errors.as_text())
    text = form.cleaned_data.get("text") or None
    try:
        caption = services.caption_approve(
            caption=caption,
            reviewer=request.user,
            text=text,
            based_on_version=form.cleaned_data["version"],
        )
    except services.EditSavedForReview as exc:
        messages.warning(request, str(exc))
        return redirect("review_detail", caption_id=exc.caption.pk)
    except services.ReviewNotAllowed as exc:
        messages.error(request, str(exc))
        return redirect("review_detail", caption_id=caption.pk)
    except services.StaleCaption as exc:
        return _conflict(request, exc.current, text or caption.text)
    except CaptionTextError as exc:
        return _approval_refused(request, caption, text or caption.text, f"Not approved: {exc}.")
    messages.success(request, "Approved.")
    return _after_review(caption)


@require_POST
@permission_required(*REVIEW)
def review_reject(request: AuthedRequest, caption_id: int) -> HttpResponse:
    caption = get_object_or_404(Caption, pk=caption_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        if "comment" in form.errors:
            messages.error(
                request, "Not rejected: " + "; ".join(str(e) for e in form.errors["comment"])
            )
        else:
            messages.error(request, "Choose a reason code to reject.")
        return redirect("review_detail", caption_id=caption.pk)
    try:
        services.caption_reject(
            caption=caption,
            reviewer=request.user,
            reason=form.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
            based_on_version=form.cleaned_data["version"],
        )
    except services.StaleCaption as exc:
        return _conflict(request, exc.current, exc.current.text)
    except services.ReviewNotAllowed as exc:
        messages.error(request, str(exc))
        return redirect("review_detail", caption_id=caption.pk)
    messages.success(request, "Rejected.")
    return _after_review(caption)


@require_POST
@permission_required(*REVIEW)
def review_bulk_approve(request: AuthedRequest) -> HttpResponse:
    """Approve several drafts: first a confirmation page, then the approval."""
    form = BulkApproveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the captions to approve.")
        return redirect("review_queue")
    captions = list(selectors.review_queue().filter(pk__in=form.cleaned_data["captions"]))
    if not form.cleaned_data["confirmed"]:
        return render(
            request,
            "captions/bulk_confirm.html",
            {"captions": captions, "ids": ",".join(str(c.pk) for c in captions)},
        )
    with transaction.atomic():
        result = services.captions_bulk_approve(captions=captions, reviewer=request.user)
    messages.success(
        request,
        f"Approved {result['approved']}; skipped {result['skipped']} (text you wrote, lint errors, "
        "or not yours to review).",
    )
    return redirect("review_queue")
