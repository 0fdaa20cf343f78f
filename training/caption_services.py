"""Writes for the anonymous captioner: start a training or drafting job, and store a drafting
pass's captions as model drafts for review - never over a caption a person wrote."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from captions.models import Caption
from captions.services import caption_create
from captions.text import CaptionTextError
from curation.models import Group, Image
from training import services
from training.caption_selectors import model_label
from training.models import Job, TrainedModel


def captioner_train_start(
    *, name: str, config: dict[str, Any], activate: bool, user: User | None
) -> Job:
    """Queue a captioner training job; `config` holds only options that differ from the
    recipe."""
    params = {"name": name, "config": config, "activate": activate}
    return services.job_create(kind=Job.Kind.TRAIN_CAPTIONER, params=params, user=user)


def caption_draft_start(
    *,
    target: str,
    limit: int | None,
    threshold: float | None,
    model_id: int | None,
    user: User | None,
) -> Job:
    """Queue a drafting job over groups or images, with a model (default: the active one)."""
    params: dict[str, Any] = {"target": target, "limit": limit}
    if target == "images" and threshold is not None:
        params["threshold"] = threshold
    if model_id is not None:
        params["model"] = model_id
    return services.job_create(kind=Job.Kind.CAPTION, params=params, user=user)


@dataclass(frozen=True)
class DraftLine:
    target_id: int
    caption: str
    prompt_version: str


def read_drafts(path: Path) -> Iterator[DraftLine]:
    """The lines of a drafts file; a line cut short by a killed child is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
                yield DraftLine(int(row["id"]), str(row["caption"]), str(row["prompt_version"]))
            except (ValueError, KeyError, TypeError):
                continue


@dataclass
class StoredDrafts:
    created: int = 0
    unusable: int = 0  # texts a caption cannot hold (empty, broken braces)
    taken: int = 0  # someone captioned the target while the model drafted
    gone: int = 0  # the target was deleted meanwhile


def caption_drafts_store(
    *, model: TrainedModel, target: str, drafts: Iterable[DraftLine], job: Job | None = None
) -> StoredDrafts:
    """Create a model draft per line, for review, in the batch of the drafting `job`. A
    target that meanwhile got an approved or pending caption (a person's or a model's) is
    left alone: a draft never competes with or supersedes text already there."""
    result = StoredDrafts()
    label = model_label(model)
    live = Q(status__in=[Caption.Status.APPROVED, Caption.Status.DRAFT])
    for line in drafts:
        with transaction.atomic():
            group: Group | None = None
            image: Image | None = None
            if target == "groups":
                group = Group.objects.select_for_update().filter(pk=line.target_id).first()
                taken = group is not None and group.captions.filter(live).exists()
            else:
                image = Image.objects.select_for_update().filter(pk=line.target_id).first()
                taken = image is not None and image.captions.filter(live).exists()
            if group is None and image is None:
                result.gone += 1
                continue
            if taken:
                result.taken += 1
                continue
            try:
                caption_create(
                    text=line.caption,
                    group=group,
                    image=image,
                    source=Caption.Source.MODEL,
                    model_name=label,
                    prompt_version=line.prompt_version,
                    draft_job_id=job.pk if job is not None else None,
                )
            except CaptionTextError:
                result.unusable += 1
                continue
            result.created += 1
    return result
