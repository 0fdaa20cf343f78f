"""Writes for captions: create, edit (optimistic locking), approve, reject, and sending a
caption back to review when its group changes - each one recorded as a revision."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from captions.lint import lint_caption
from captions.models import REJECT_COMMENT_MAX_CHARS, Caption, CaptionRevision, EditPresence
from captions.selectors import members_in_order
from captions.text import CaptionTextError, clean_caption_text, word_edit_distance
from curation.models import Group, Image


class StaleCaption(Exception):
    """The caption changed since the version the edit was based on."""

    def __init__(self, caption: Caption) -> None:
        super().__init__(f"caption {caption.pk} is at version {caption.version}")
        self.current = caption


def caption_create(
    *,
    text: str,
    group: Group | None = None,
    image: Image | None = None,
    split: str = "",
    status: str = Caption.Status.DRAFT,
    source: str = Caption.Source.HUMAN,
    author: User | None = None,
    model_name: str = "",
    prompt_version: str = "",
    draft_job_id: int | None = None,
) -> Caption:
    cleaned = clean_caption_text(text)
    if image is not None and not split:
        split = "train"
    with transaction.atomic():
        caption = Caption.objects.create(
            group=group,
            image=image,
            text=cleaned,
            split=split if image is not None else "",
            status=status,
            source=source,
            author=author,
            model_name=model_name,
            prompt_version=prompt_version,
            draft_job_id=draft_job_id,
            reviewed_at=timezone.now() if status != Caption.Status.DRAFT else None,
        )
        action = (
            CaptionRevision.Action.IMPORT
            if source == Caption.Source.IMPORT
            else CaptionRevision.Action.CREATE
        )
        _record(caption, actor=author, action=action, before="")
    return caption


def caption_edit(
    *, caption: Caption, text: str, based_on_version: int, editor: User | None
) -> Caption:
    """Change the text if nobody changed the caption since `based_on_version`.

    An approved caption is never changed in place: the edit becomes a new draft (returned)
    that goes to review, and the approved text is what exports until a reviewer approves
    the draft. A rejected caption whose text is revised goes back to review as a draft."""
    cleaned = clean_caption_text(text)
    with transaction.atomic():
        before = Caption.objects.select_for_update().get(pk=caption.pk)
        if before.status == Caption.Status.APPROVED:
            return _draft_from_approved(before, cleaned, based_on_version, editor)
        if before.status == Caption.Status.REJECTED:
            return _revise_rejected(before, cleaned, based_on_version, editor)
        updated = Caption.objects.filter(pk=caption.pk, version=based_on_version).update(
            text=cleaned, version=F("version") + 1, updated_at=timezone.now()
        )
        if updated != 1:
            raise StaleCaption(before)
        caption.refresh_from_db()
        _record(caption, actor=editor, action=CaptionRevision.Action.EDIT, before=before.text)
    return caption


def _draft_from_approved(
    approved: Caption, text: str, based_on_version: int, editor: User | None
) -> Caption:
    if approved.version != based_on_version:
        raise StaleCaption(approved)
    # Someone already started revising it: edit that draft (the 409 page merges) rather
    # than put two competing drafts in the review queue.
    pending = _same_target(approved).filter(status=Caption.Status.DRAFT).first()
    if pending is not None:
        raise StaleCaption(pending)
    if text == approved.text:
        return approved
    draft = Caption.objects.create(
        group=approved.group,
        image=approved.image,
        text=text,
        split=approved.split,
        status=Caption.Status.DRAFT,
        source=Caption.Source.HUMAN,
        author=editor,
    )
    _record(
        draft,
        actor=editor,
        action=CaptionRevision.Action.CREATE,
        before=approved.text,
        reason=f"revises approved caption #{approved.pk} (v{approved.version})",
        details={"revises": approved.pk},
    )
    return draft


def _revise_rejected(
    rejected: Caption, text: str, based_on_version: int, editor: User | None
) -> Caption:
    if rejected.version != based_on_version:
        raise StaleCaption(rejected)
    pending = _same_target(rejected).filter(status=Caption.Status.DRAFT).first()
    if pending is not None:
        raise StaleCaption(pending)
    if text == rejected.text:
        # Sending the very text back would only bounce between author and reviewer.
        raise CaptionTextError("change the text before sending it back to review")
    rejected_version, rejected_text = rejected.version, rejected.text
    rejected.text = text
    rejected.status = Caption.Status.DRAFT
    rejected.version += 1
    # The rejection itself stays in the history; the draft is a fresh one to review.
    rejected.reviewer = None
    rejected.reviewed_at = None
    rejected.reject_reason = ""
    rejected.reject_comment = ""
    rejected.save()
    _record(
        rejected,
        actor=editor,
        action=CaptionRevision.Action.EDIT,
        before=rejected_text,
        reason="revised after rejection",
        details={"after_rejection": rejected_version},
    )
    return rejected


def _same_target(caption: Caption) -> QuerySet[Caption]:
    """The other captions of the same group, or of the same image."""
    others = Caption.objects.exclude(pk=caption.pk)
    if caption.group_id:
        return others.filter(group=caption.group_id).order_by("-updated_at", "-id")
    return others.filter(image=caption.image_id).order_by("-updated_at", "-id")


class ReviewNotAllowed(Exception):
    """The reviewer may not review this caption (e.g. text they wrote themselves)."""


class EditSavedForReview(ReviewNotAllowed):
    """The reviewer's edit was saved, but approving it is left to another reviewer."""

    def __init__(self, caption: Caption, message: str) -> None:
        super().__init__(message)
        self.caption = caption


_WRITES_TEXT = {CaptionRevision.Action.CREATE, CaptionRevision.Action.IMPORT}


def own_words(caption: Caption, reviewer: User, text: str | None = None) -> int | None:
    """How many words of `text` (default: the caption's) the reviewer wrote: the word edit
    distance from the last text someone else wrote. None when they wrote it from scratch."""
    candidate = caption.text if text is None else text
    for revision in caption.revisions.order_by("-version", "-id"):
        changed_text = revision.action in _WRITES_TEXT or (
            revision.action == CaptionRevision.Action.EDIT
            and revision.text_before != revision.text_after
        )
        if not changed_text:
            continue  # approvals, rejections and member changes write no words
        if revision.action == CaptionRevision.Action.IMPORT or revision.actor_id != reviewer.pk:
            return word_edit_distance(revision.text_after, candidate)
        if revision.action == CaptionRevision.Action.CREATE:
            # Their own draft: only a revision of an approved caption has others' words.
            if revision.details.get("revises"):
                return word_edit_distance(revision.text_before, candidate)
            return None
    return None


def approval_blocker(caption: Caption, reviewer: User, text: str | None = None) -> str | None:
    """Why the reviewer may not approve this text, or None when they may."""
    if not reviewer.has_perm("captions.review_caption"):
        return "You may not review captions."
    if settings.RELSIM_ALLOW_SELF_APPROVAL:
        return None
    written = own_words(caption, reviewer, text)
    if written is None:
        return "You wrote this caption; another reviewer approves it."
    limit = settings.RELSIM_REVIEW_EDIT_WORDS
    if written > limit:
        return (
            f"You changed {written} words of this caption, more than the {limit} a reviewer "
            "may approve of their own; another reviewer approves it."
        )
    return None


def check_may_review(caption: Caption, reviewer: User) -> None:
    """Rejecting needs the permission, and authors do not reject their own drafts."""
    if not reviewer.has_perm("captions.review_caption"):
        raise ReviewNotAllowed("You may not review captions.")
    own = caption.author_id is not None and caption.author_id == reviewer.pk
    if own and not settings.RELSIM_ALLOW_SELF_APPROVAL:
        raise ReviewNotAllowed("Authors do not review their own captions.")


def caption_approve(
    *,
    caption: Caption,
    reviewer: User,
    text: str | None = None,
    based_on_version: int | None = None,
) -> Caption:
    """Approve, optionally after the reviewer's own edit (one action).

    A reviewer may not approve words they wrote themselves beyond a small edit
    (RELSIM_REVIEW_EDIT_WORDS); a larger edit is kept as a draft for another reviewer and
    EditSavedForReview says so. Returns the approved caption (a new row when the caption
    was already approved and the reviewer changed its text)."""
    if not reviewer.has_perm("captions.review_caption"):
        raise ReviewNotAllowed("You may not review captions.")
    version = caption.version if based_on_version is None else based_on_version
    candidate = caption.text if text is None else clean_caption_text(text)
    check_lint_allows_approval(candidate)
    edits = candidate != caption.text
    if not edits:
        blocker = approval_blocker(caption, reviewer)
        if blocker:
            raise ReviewNotAllowed(blocker)
        return _review(
            caption, reviewer, Caption.Status.APPROVED, CaptionRevision.Action.APPROVE, "", version
        )
    assert text is not None
    with transaction.atomic():
        edited = caption_edit(caption=caption, text=text, based_on_version=version, editor=reviewer)
        blocker = approval_blocker(edited, reviewer)
        if blocker is None:
            return _review(
                edited,
                reviewer,
                Caption.Status.APPROVED,
                CaptionRevision.Action.APPROVE,
                "",
                edited.version,
            )
    raise EditSavedForReview(edited, f"Your edit was saved as a draft. {blocker}")


class LintBlocksApproval(CaptionTextError):
    """The caption lint found errors (e.g. leaks, with RELSIM_LEAK_LEVEL=error): not approved."""


def check_lint_allows_approval(text: str) -> None:
    errors = lint_caption(text).errors
    if errors:
        raise LintBlocksApproval(" ".join(finding.message for finding in errors))


def caption_reject(
    *,
    caption: Caption,
    reviewer: User,
    reason: str,
    comment: str = "",
    based_on_version: int | None = None,
) -> Caption:
    """Return the caption to its author with a reason code and an optional comment."""
    check_may_review(caption, reviewer)
    if reason not in settings.RELSIM_REJECT_REASONS:
        raise ValueError(f"choose a reason from: {', '.join(settings.RELSIM_REJECT_REASONS)}")
    comment = " ".join(comment.split())
    if len(comment) > REJECT_COMMENT_MAX_CHARS:
        raise ValueError(f"keep the comment under {REJECT_COMMENT_MAX_CHARS} characters")
    version = caption.version if based_on_version is None else based_on_version
    return _review(
        caption,
        reviewer,
        Caption.Status.REJECTED,
        CaptionRevision.Action.REJECT,
        reason,
        version,
        comment=comment,
    )


def captions_bulk_approve(*, captions: list[Caption], reviewer: User) -> dict[str, int]:
    done = skipped = 0
    for caption in captions:
        try:
            caption_approve(caption=caption, reviewer=reviewer)
        except (ReviewNotAllowed, LintBlocksApproval):
            skipped += 1
        else:
            done += 1
    return {"approved": done, "skipped": skipped}


def presence_touch(*, caption: Caption, user: User) -> None:
    EditPresence.objects.update_or_create(
        caption=caption, user=user, defaults={"last_seen": timezone.now()}
    )


def _review(
    caption: Caption,
    reviewer: User,
    status: str,
    action: str,
    reason: str,
    based_on_version: int,
    *,
    comment: str = "",
) -> Caption:
    with transaction.atomic():
        current = Caption.objects.select_for_update().get(pk=caption.pk)
        if current.version != based_on_version:
            raise StaleCaption(current)
        if status == Caption.Status.APPROVED:
            # One approved caption per group or image: the one it replaces is kept, superseded.
            others = _same_target(current).filter(status=Caption.Status.APPROVED)
            for other in others.select_for_update():
                _move_to(
                    other,
                    Caption.Status.SUPERSEDED,
                    actor=reviewer,
                    action=CaptionRevision.Action.EDIT,
                    reason=f"replaced by caption #{current.pk}",
                )
        Caption.objects.filter(pk=current.pk).update(
            status=status,
            reviewer=reviewer,
            reviewed_at=timezone.now(),
            reject_reason=reason,
            reject_comment=comment,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        caption.refresh_from_db()
        details: dict[str, Any] = {"comment": comment} if comment else {}
        if status == Caption.Status.APPROVED and caption.group_id:
            # The images the approved text describes, to show what changed if they change.
            details["members"] = members_in_order([caption.group_id])[caption.group_id]
        _record(
            caption,
            actor=reviewer,
            action=action,
            before=caption.text,
            reason=reason,
            details=details,
        )
    return caption


def captions_members_changed(
    *, group: Group, added: list[int], removed: list[int], actor: User | None
) -> int:
    """A group whose members changed under its approved caption goes back to review: the
    caption described other images. Returns how many captions were sent back."""
    if not added and not removed:
        return 0
    parts = []
    if added:
        parts.append("added image " + ", ".join(f"#{pk}" for pk in added))
    if removed:
        parts.append("removed image " + ", ".join(f"#{pk}" for pk in removed))
    note = "members changed: " + "; ".join(parts)
    sent_back = 0
    with transaction.atomic():
        approved = Caption.objects.select_for_update().filter(
            group=group, status=Caption.Status.APPROVED
        )
        for caption in approved:
            _move_to(
                caption,
                Caption.Status.DRAFT,
                actor=actor,
                action=CaptionRevision.Action.MEMBERS,
                reason=note[:500],
                details={"added": added, "removed": removed},
            )
            sent_back += 1
    return sent_back


def _move_to(
    caption: Caption,
    status: str,
    *,
    actor: User | None,
    action: str,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """A status change of a locked caption that keeps its text, as a new version."""
    caption.status = status
    caption.version += 1
    caption.save(update_fields=["status", "version", "updated_at"])
    _record(
        caption, actor=actor, action=action, before=caption.text, reason=reason, details=details
    )


def _record(
    caption: Caption,
    *,
    actor: User | None,
    action: str,
    before: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    CaptionRevision.objects.create(
        caption=caption,
        actor=actor,
        action=action,
        text_before=before,
        text_after=caption.text,
        status_after=caption.status,
        version=caption.version,
        reason=reason,
        details=details or {},
    )
