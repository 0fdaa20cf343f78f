"""Curation pages: overview, image pool, image detail, labelling queue, agreement, groups."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from core.access import ANNOTATE, permission_required, safe_next
from core.http import AuthedRequest
from core.ids import parse_id
from core.roles import role_of
from core.splits import Split
from curation import labelling, selectors, services
from curation.forms import GroupForm, ImageIdsForm, LabelForm, ReorderForm
from curation.models import CurrentGroup, Group, GroupMember, Image, InterestLabel
from curation.near_duplicates import near_duplicates
from curation.pool import PoolFilterForm, filter_choices, pool_page
from curation.similarity import best_source, rank

GROUPS_PER_PAGE = 60
GROUP_ROW_THUMBNAILS = 6


def _current_group(request: AuthedRequest) -> Group | None:
    return selectors.current_group(request.user)


def _make_current(request: AuthedRequest, group: Group) -> None:
    # Kept per user, not per session: a second device or a new login adds to the same group.
    CurrentGroup.objects.update_or_create(user=request.user, defaults={"group": group})


@login_required
def home(request: AuthedRequest) -> HttpResponse:
    context = {"stats": selectors.dataset_stats(), "role": role_of(request.user)}
    return render(request, "curation/home.html", context)


# --- pool --------------------------------------------------------------------------------


@require_GET
@permission_required(*ANNOTATE)
def pool(request: AuthedRequest) -> HttpResponse:
    form = PoolFilterForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "choices": filter_choices(), "page": None}
        return render(request, "curation/pool.html", context, status=400)
    page = pool_page(form.cleaned_data, request.user)
    params = request.GET.copy()
    for key in ("after", "before"):
        params.pop(key, None)
    context = {
        "form": form,
        "page": page,
        "choices": filter_choices(),
        "current_group": _current_group(request),
        "base_query": params.urlencode(),
    }
    template = "curation/pool.html#grid" if request.htmx else "curation/pool.html"
    return render(request, template, context)


@require_GET
@permission_required(*ANNOTATE)
def image_detail(request: AuthedRequest, image_id: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.select_related("batch", "created_by"), pk=image_id)
    context = {
        "image": image,
        "labels": image.interest_labels.select_related("annotator").order_by("annotator__username"),
        "memberships": image.memberships.select_related("group"),
        "near": near_duplicates(image),
        "my_label": image.interest_labels.filter(annotator=request.user).first(),
        "current_group": _current_group(request),
    }
    return render(request, "curation/image_detail.html", context)


@require_POST
@permission_required(*ANNOTATE)
def image_label(request: AuthedRequest, image_id: int) -> HttpResponse:
    """Label one image from the pool or its page (y / n)."""
    image = get_object_or_404(Image, pk=image_id)
    form = LabelForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Send interesting=yes or interesting=no.")
    label = services.interest_label_set(
        image=image, annotator=request.user, interesting=form.cleaned_data["interesting"]
    )
    if request.htmx:
        return render(request, "curation/pool.html#label-badge", {"label": label, "image": image})
    return redirect(safe_next(request, reverse("image_detail", args=[image.pk])))


# --- labelling queue ---------------------------------------------------------------------


@require_GET
@permission_required(*ANNOTATE)
def label_queue(request: AuthedRequest) -> HttpResponse:
    image = labelling.lease_next_image(
        annotator=request.user, skip=request.session.get("skipped", [])
    )
    context = {
        "image": image,
        "counts": labelling.queue_counts(request.user),
        "last": _last_label(request),
    }
    return render(request, "curation/label_queue.html", context)


def _last_label(request: AuthedRequest) -> InterestLabel | None:
    label_id = request.session.get("last_label_id")
    if not label_id:
        return None
    return (
        InterestLabel.objects.filter(pk=label_id, annotator=request.user)
        .select_related("image")
        .first()
    )


@require_POST
@permission_required(*ANNOTATE)
def label_submit(request: AuthedRequest) -> HttpResponse:
    """y / n labels the leased image; s skips it (the lease is given up for someone else)."""
    image = get_object_or_404(Image, pk=parse_id(request.POST.get("image")) or 0)
    answer = request.POST.get("answer")
    if answer not in ("yes", "no", "skip"):
        return HttpResponseBadRequest("answer must be yes, no or skip")
    if answer == "skip":
        labelling.release_lease(annotator=request.user, image=image)
        request.session["skipped"] = [*request.session.get("skipped", []), image.pk][-500:]
    else:
        label = services.interest_label_set(
            image=image, annotator=request.user, interesting=answer == "yes"
        )
        previous = request.session.get("undo_stack", [])
        request.session["undo_stack"] = [*previous, label.pk][-20:]
        request.session["last_label_id"] = label.pk
        labelling.release_lease(annotator=request.user, image=image)
    return redirect("label_queue")


@require_POST
@permission_required(*ANNOTATE)
def label_undo(request: AuthedRequest) -> HttpResponse:
    """Take back this session's last label and put its image in front of the queue again."""
    stack = request.session.get("undo_stack", [])
    if not stack:
        messages.info(request, "Nothing to undo.")
        return redirect("label_queue")
    label_id = stack.pop()
    request.session["undo_stack"] = stack
    request.session["last_label_id"] = stack[-1] if stack else None
    label = InterestLabel.objects.filter(pk=label_id, annotator=request.user).first()
    if label is not None:
        image = label.image
        label.delete()
        labelling.lease_image(annotator=request.user, image=image)
        messages.success(request, "Last label undone.")
    return redirect("label_queue")


@require_GET
@permission_required(*ANNOTATE)
def agreement(request: AuthedRequest) -> HttpResponse:
    result = labelling.agreement()
    rows = [_disagreement_row(row) for row in result.disagreements]
    return render(request, "curation/agreement.html", {"agreement": result, "rows": rows})


def _disagreement_row(row: labelling.Disagreement) -> dict[str, object]:
    # Links, thumbnail and names made here: a table of hundreds of rows renders in a fraction
    # of the time that the same work takes as template tags and filters.
    image = row.image
    return {
        "pk": image.pk,
        "url": reverse("image_detail", args=[image.pk]),
        "thumbnail": image.thumbnail.url if image.thumbnail else "",
        "yes": ", ".join(row.yes),
        "no": ", ".join(row.no),
    }


# --- groups ------------------------------------------------------------------------------


@require_GET
@permission_required(*ANNOTATE)
def group_list(request: AuthedRequest) -> HttpResponse:
    groups = Group.objects.order_by("-updated_at")
    state, split = request.GET.get("state", ""), request.GET.get("split", "")
    if state in Group.State.values:
        groups = groups.filter(state=state)
    if split in Split.values:
        groups = groups.filter(split=split)
    query = request.GET.get("q", "").strip()
    if query:
        groups = groups.filter(title__icontains=query)
    # The row shows a count and six thumbnails: a large group's other members are neither
    # loaded nor turned into objects (a sliced prefetch is one window query).
    members = GroupMember.objects.filter(group_id=OuterRef("pk")).order_by().values("group_id")
    groups = groups.annotate(
        member_count=Subquery(members.annotate(n=Count("id")).values("n")[:1])
    ).prefetch_related(
        Prefetch(
            "members",
            queryset=GroupMember.objects.select_related("image")
            .only("id", "group_id", "position", "image__id", "image__thumbnail")
            .order_by("position")[:GROUP_ROW_THUMBNAILS],
            to_attr="first_members",
        ),
    )[:GROUPS_PER_PAGE]
    context = {
        "groups": groups,
        "states": Group.State.choices,
        "splits": Split.choices,
        "state": state,
        "split": split,
        "q": query,
        "form": GroupForm(),
    }
    return render(request, "curation/group_list.html", context)


@require_POST
@permission_required(*ANNOTATE)
def group_create(request: AuthedRequest) -> HttpResponse:
    form = GroupForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The group needs a title: " + form.errors.as_text())
        return redirect("group_list")
    ids = ImageIdsForm(request.POST)
    images = list(Image.objects.filter(pk__in=ids.ids())) if ids.is_valid() else []
    group = services.group_create(
        title=form.cleaned_data["title"],
        split=form.cleaned_data["split"],
        notes=form.cleaned_data.get("notes", ""),
        images=images,
        user=request.user,
    )
    _make_current(request, group)
    return redirect("group_detail", group_id=group.pk)


def _group_context(request: AuthedRequest, group: Group) -> dict[str, object]:
    members = [m.image for m in group.members.select_related("image")]
    return {
        "group": group,
        "members": members,
        "member_rows": _member_rows(members),
        "negatives": list(group.negatives.select_related("image")),
        "warnings": selectors.group_warnings(members),
        "form": GroupForm(instance_group=group),
        "max_size": settings.RELSIM_GROUP_MAX_SIZE,
        "is_current": _current_group(request) == group,
        "states": Group.State.choices,
    }


def _member_rows(members: list[Image]) -> list[tuple[Image, str, str]]:
    """Each member with the full order that moves it one place up or down (no JS needed)."""
    ids = [image.pk for image in members]
    rows = []
    for index, image in enumerate(members):
        up = down = ""
        if index > 0:
            order = ids.copy()
            order[index - 1], order[index] = order[index], order[index - 1]
            up = ",".join(map(str, order))
        if index < len(ids) - 1:
            order = ids.copy()
            order[index + 1], order[index] = order[index], order[index + 1]
            down = ",".join(map(str, order))
        rows.append((image, up, down))
    return rows


@require_GET
@permission_required(*ANNOTATE)
def group_detail(request: AuthedRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    # htmx asks for the members alone after an add or a reorder elsewhere on the page.
    template = "curation/group_detail.html"
    if request.htmx and request.htmx.target == "members-panel":
        template += "#members"
    return render(request, template, _group_context(request, group))


@require_POST
@permission_required(*ANNOTATE)
def group_update(request: AuthedRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    form = GroupForm(request.POST)
    if form.is_valid():
        services.group_update(
            group=group,
            title=form.cleaned_data["title"],
            notes=form.cleaned_data.get("notes", ""),
            split=form.cleaned_data["split"],
        )
        messages.success(request, "Group saved.")
    else:
        messages.error(request, form.errors.as_text())
    return redirect("group_detail", group_id=group.pk)


@require_POST
@permission_required(*ANNOTATE)
def group_state(request: AuthedRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    try:
        services.group_set_state(group=group, state=request.POST.get("state", ""))
        messages.success(request, f"The group is now {group.state}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("group_detail", group_id=group.pk)


@require_POST
@permission_required(*ANNOTATE)
def group_add(request: AuthedRequest, group_id: int) -> HttpResponse:
    """Add images (ids from the pool selection, one image, or a page) to a group."""
    group = get_object_or_404(Group, pk=group_id)
    form = ImageIdsForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest(form.errors.as_text())
    images = list(Image.objects.filter(pk__in=form.ids()))
    order = {pk: n for n, pk in enumerate(form.ids())}
    images.sort(key=lambda image: order[image.pk])
    added = services.group_add_images(group=group, images=images, user=request.user)
    # Adding to a group is choosing it: the next `a` in the pool goes to the same place.
    _make_current(request, group)
    if request.htmx:
        response = HttpResponse(format_html("Added {} to “{}”.", added, group.title))
        response["HX-Trigger"] = "group-changed"
        return response
    messages.success(request, f"Added {added} image(s) to “{group.title}”.")
    return redirect(safe_next(request, reverse("group_detail", args=[group.pk])))


@require_POST
@permission_required(*ANNOTATE)
def group_remove(request: AuthedRequest, group_id: int, image_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    services.group_remove_image(
        group=group, image=get_object_or_404(Image, pk=image_id), user=request.user
    )
    return redirect("group_detail", group_id=group.pk)


@require_POST
@permission_required(*ANNOTATE)
def group_reorder(request: AuthedRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    form = ReorderForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest(form.errors.as_text())
    try:
        services.group_reorder(group=group, image_ids=form.cleaned_data["order"])
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    if request.htmx:
        return HttpResponse(status=204)
    return redirect("group_detail", group_id=group.pk)


@require_POST
@permission_required(*ANNOTATE)
def group_negative(request: AuthedRequest, group_id: int, image_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    image = get_object_or_404(Image, pk=image_id)
    negative = request.POST.get("negative", "1") == "1"
    services.group_mark_negative(group=group, image=image, user=request.user, negative=negative)
    if request.htmx:
        return _similar_panel(request, group)
    return redirect("group_detail", group_id=group.pk)


@require_GET
@permission_required(*ANNOTATE)
def group_similar(request: AuthedRequest, group_id: int) -> HttpResponse:
    return _similar_panel(request, get_object_or_404(Group, pk=group_id))


def _similar_panel(request: AuthedRequest, group: Group) -> HttpResponse:
    """The "find similar" panel: the whole group is the query, negatives push away."""
    source = best_source()
    members = list(group.members.values_list("image_id", flat=True))
    negatives = list(group.negatives.values_list("image_id", flat=True))
    matches = rank(source, positives=members, negatives=negatives, k=24)
    images = Image.objects.in_bulk([m.image_id for m in matches])
    context = {
        "group": group,
        "source": source,
        "matches": [(images[m.image_id], m.score) for m in matches if m.image_id in images],
    }
    return render(request, "curation/group_detail.html#similar", context)


@require_POST
@permission_required(*ANNOTATE)
def group_set_current(request: AuthedRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    _make_current(request, group)
    messages.success(request, f"“{group.title}” is now the current group (a adds to it).")
    return redirect(safe_next(request, reverse("group_detail", args=[group.pk])))


@require_POST
@permission_required(*ANNOTATE)
def group_pool(request: AuthedRequest, group_id: int) -> HttpResponse:
    """Add from the pool: make the group current, then show the images in no group."""
    # A form, not a link: it changes state, so another site must not trigger it.
    group = get_object_or_404(Group, pk=group_id)
    _make_current(request, group)
    return redirect(reverse("pool") + "?group=none")
