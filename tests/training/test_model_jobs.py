"""Model jobs end to end in the test process's executor (the worker tests run them through
Celery): relsim training on an export snapshot, then an index that find-similar switches to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from captions.importers import dataset_import
from curation.models import Image
from curation.similarity import best_source
from ml import synthetic
from training.execution import execute_job
from training.models import EmbeddingIndex, Job, JobMetric, TrainedModel

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
    demo_set: Path,
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

    embed = _run(Job.Kind.EMBED, {})
    assert embed.status == Job.Status.SUCCEEDED, (embed.error, embed.log_tail)
    index = EmbeddingIndex.objects.get(pk=embed.artifacts["index_id"])
    assert index.model == model and index.count == Image.objects.count()
    assert best_source().name == "relsim (demo)"
