"""Writes for the interest filter: start a filter job, store a model's scores, and make a
filter the active one, which copies its scores into the pool's Image.filter_score (the pool
page sorts and filters by that column)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, OuterRef, Subquery

from curation.models import Image
from training import services
from training.model_jobs import model_activate
from training.models import FilterScore, Job, TrainedModel

BATCH = 2000


def filter_job_start(
    *,
    name: str,
    config: dict[str, Any],
    balance: str,
    score: str,
    model_id: int | None,
    activate: bool,
    user: User | None,
) -> Job:
    """Queue a filter job: train on the interest labels and score, or (with `model_id`) only
    score with an existing filter. `config` holds only options that differ from the recipe."""
    params: dict[str, Any] = {"score": score, "activate": activate}
    if model_id is not None:
        params["model"] = model_id
    else:
        params.update(name=name, config=config, balance=balance)
    return services.job_create(kind=Job.Kind.FILTER, params=params, user=user)


def read_scores(path: Path) -> Iterator[tuple[int, float]]:
    """(image id, score) from a scores file; a line cut short by a killed child is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
                yield int(row["id"]), float(row["score"])
            except (ValueError, KeyError, TypeError):
                continue


def filter_scores_store(*, model: TrainedModel, scores: Iterable[tuple[int, float]]) -> int:
    """Store (image id, score) pairs as the model's scores (a later score replaces an earlier
    one); pairs of images deleted meanwhile are dropped. Returns how many were stored."""
    stored = 0
    rows = iter(scores)
    while chunk := dict(islice(rows, BATCH)):
        existing = set(Image.objects.filter(pk__in=chunk).values_list("pk", flat=True))
        records = [
            FilterScore(image_id=pk, model=model, score=score)
            for pk, score in chunk.items()
            if pk in existing
        ]
        with transaction.atomic():
            FilterScore.objects.bulk_create(
                records,
                update_conflicts=True,
                unique_fields=["image", "model"],
                update_fields=["score"],
            )
        stored += len(records)
    return stored


def filter_scores_publish(*, model: TrainedModel) -> None:
    """Copy the model's scores into Image.filter_score, in id ranges of BATCH images so no
    single statement locks the whole pool; images it did not score get none."""
    own = FilterScore.objects.filter(image=OuterRef("pk"), model=model).values("score")[:1]
    last = Image.objects.aggregate(last=Max("pk"))["last"] or 0
    for start in range(0, last + 1, BATCH):
        Image.objects.filter(pk__gte=start, pk__lt=start + BATCH).update(filter_score=Subquery(own))


def filter_activate(*, model: TrainedModel) -> None:
    """Make `model` the active filter and the pool's scores its scores."""
    if model.kind != TrainedModel.Kind.FILTER:
        raise ValueError(f"{model} is not an interest filter")
    model_activate(model=model)
    filter_scores_publish(model=model)
