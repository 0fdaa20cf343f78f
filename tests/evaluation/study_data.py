"""A finished benchmark run with stored top-k for three methods, and a curated group, made
directly in the database: what a study is built from."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from curation.models import Image
from curation.services import group_add_images, group_create, image_store
from evaluation.models import BenchmarkQuery, BenchmarkRun, Retrieval, Study

METHODS = {
    "relsim:1": {"label": "relsim"},
    "phash": {"label": "perceptual hash"},
    "clip-i": {"label": "CLIP-I"},
}


def stored_images(png_factory: Any, count: int, user: Any = None) -> list[Image]:
    from curation.intake import normalise_image

    images = []
    for seed in range(count):
        stored = image_store(normalised=normalise_image(png_factory(1000 + seed)), user=user)
        images.append(stored.image)
    return images


def finished_benchmark(png_factory: Any, *, queries: int = 6, user: Any = None) -> BenchmarkRun:
    """Queries 0..n-1; relsim's top-1 differs from phash's everywhere, and from clip-i's
    except on query 0 (both found the same image there)."""
    images = stored_images(png_factory, queries + 3 * queries, user)
    run = BenchmarkRun.objects.create(
        name="bench",
        methods=METHODS,
        params={"k": 3},
        database=[image.pk for image in images],
        finished_at=timezone.now(),
    )
    pool = images[queries:]
    for i in range(queries):
        query = BenchmarkQuery.objects.create(run=run, image=images[i], position=i)
        ours, phash, clip = pool[3 * i], pool[3 * i + 1], pool[3 * i + 2]
        clip_top = ours if i == 0 else clip
        for method, top in (("relsim:1", ours), ("phash", phash), ("clip-i", clip_top)):
            others = [image.pk for image in pool if image.pk != top.pk][:2]
            Retrieval.objects.create(
                query=query, method=method, hits=[top.pk, *others], scores=[0.9, 0.5, 0.4]
            )
    group = group_create(title="curated", user=user)
    group_add_images(group=group, images=images[:3], user=user)
    return run


def open_study(png_factory: Any, **options: Any) -> Study:
    """An open study over a finished benchmark: relsim against phash and clip-i."""
    from evaluation.study_services import study_create

    settings = {
        "name": "s",
        "benchmark": finished_benchmark(png_factory),
        "reference_method": "relsim:1",
        "baselines": ["phash", "clip-i"],
        "trials_per_participant": 6,
        "catch_per_participant": 1,
        **options,
    }
    study = study_create(**settings).study
    study.is_open = True
    study.save()
    return study
