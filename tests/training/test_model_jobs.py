"""Model jobs end to end in the test process's executor (the worker tests run them through
Celery): relsim training on an export snapshot, then an index that find-similar switches to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from captions.importers import dataset_import
from curation.intake import normalise_image
from curation.models import Image
from curation.services import image_store
from curation.similarity import best_source
from ml import synthetic
from training.execution import execute_job
from training.models import EmbeddingIndex, Job, JobMetric, TrainedModel
from training.similarity import IndexVectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_set(tmp_path: Path) -> Path:
    folder = tmp_path / "synthetic"
    synthetic.generate_dataset(folder, seed=0, per_relation=4, size=112)
    dataset_import(folder=folder)
    return folder


def _run(kind: str, params: dict[str, Any], user: Any = None) -> Job:
    job = Job.objects.create(kind=kind, params=params, created_by=user)
    execute_job(job.pk, worker="test")
    job.refresh_from_db()
    return job


def test_training_then_embedding_makes_the_active_model_and_find_similar_uses_it(
    demo_set: Path, png_factory: Any
) -> None:
    train = _run(
        Job.Kind.TRAIN_RELSIM, {"name": "demo", "config": {"max_steps": 4, "log_every": 1}}
    )
    assert train.status == Job.Status.SUCCEEDED, (train.error, train.log_tail)
    model = TrainedModel.objects.get(pk=train.artifacts["model_id"])
    assert model.is_active and Path(model.folder).is_dir()
    assert Path(model.snapshot).is_file()
    assert list(JobMetric.objects.filter(job=train).values_list("step", flat=True)) == [1, 2, 3, 4]
    assert best_source().name == "perceptual hash"  # no index yet

    # Training queued the index build of its model; the worker would run it next.
    embed = Job.objects.get(pk=train.artifacts["index_job_id"])
    assert embed.kind == Job.Kind.EMBED and embed.params == {"model": model.pk}
    execute_job(embed.pk, worker="test")
    embed.refresh_from_db()
    assert embed.status == Job.Status.SUCCEEDED, (embed.error, embed.log_tail)
    index = EmbeddingIndex.objects.get(pk=embed.artifacts["index_id"])
    assert index.model == model and index.count == Image.objects.count()
    assert best_source().name == "relsim (demo)"

    # The pool changes: the next index embeds only the new image and drops the removed one.
    added = image_store(normalised=normalise_image(png_factory(7, size=112))).image
    removed = Image.objects.order_by("id").first()
    assert removed is not None
    removed.delete()
    again = _run(Job.Kind.EMBED, {})
    assert again.status == Job.Status.SUCCEEDED, (again.error, again.log_tail)
    assert (again.artifacts["embedded"], again.artifacts["kept"]) == (1, index.count - 1)
    ids, vectors = IndexVectors.of(EmbeddingIndex.objects.get(pk=again.artifacts["index_id"]))
    assert list(ids) == list(Image.objects.order_by("id").values_list("id", flat=True))
    assert added.pk in ids and removed.pk not in ids
    old_ids, old_vectors = IndexVectors.of(index)
    kept = old_ids[1:]
    assert np.allclose(vectors[np.searchsorted(ids, kept)], old_vectors[1:], atol=1e-3)
