"""Searching by a pool image: the relsim index and the perceptual hash side by side, then a
result added to the current group, which the group's page then lists."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curation.models import CurrentGroup
from curation.services import group_create
from curation.similarity import PerceptualHashSimilarity
from ml.search import write_index
from tests.e2e.support import expect, screenshot, store_images
from training import search
from training.models import EmbeddingIndex, TrainedModel

pytestmark = pytest.mark.e2e

# Cosine of each image (by position) with image 0: image 2 is its nearest neighbour.
COSINES = [1.0, 0.4, 0.9, 0.2, 0.6]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None
    yield
    search.clear_index_caches()
    PerceptualHashSimilarity._cache = None


def test_an_annotator_searches_by_image_and_adds_a_result_to_the_current_group(
    open_page: Any, annotator: Any, png_factory: Any, tmp_path: Path
) -> None:
    images = store_images(png_factory, len(COSINES))
    rows = np.zeros((len(images), 384), dtype=np.float32)
    for i, cosine in enumerate(COSINES):
        rows[i, 0] = cosine
        if i:
            rows[i, i] = math.sqrt(1 - cosine**2)
    folder = write_index(tmp_path / "index", [str(image.pk) for image in images], rows)
    model = TrainedModel.objects.create(
        kind=TrainedModel.Kind.RELSIM, name="demo", folder=str(tmp_path), is_active=True
    )
    EmbeddingIndex.objects.create(model=model, folder=str(folder), count=len(images), dim=384)
    group = group_create(title="Peeking out", images=[images[0]], user=annotator)
    CurrentGroup.objects.create(user=annotator, group=group)
    page = open_page(annotator.username)

    page.get_by_role("link", name="Search", exact=True).click()
    expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()
    page.get_by_label("Pool image id").fill(str(images[0].pk))
    page.get_by_role("button", name="Search by image").click()

    relsim = page.locator('section[data-source="relsim"]')
    phash = page.locator('section[data-source="phash"]')
    expect(relsim.get_by_role("heading", name="relsim: demo")).to_be_visible()
    expect(phash.get_by_role("heading", name="perceptual hash")).to_be_visible()
    expect(relsim.locator(".tile")).to_have_count(4)
    expect(phash.locator(".tile")).to_have_count(4)
    best = relsim.locator(".tile").first
    expect(best).to_have_attribute("data-id", str(images[2].pk))
    expect(best.locator(".score")).to_have_text("0.900")

    best.get_by_role("button", name="Add to current group").click()
    expect(page.locator("#search-status")).to_have_text("Added 1 to “Peeking out”.")
    screenshot(page, "search-by-image")

    page.get_by_role("link", name="Peeking out").click()
    expect(page.get_by_role("heading", name="Members (2 of at most 10)")).to_be_visible()
    members = page.locator("#members .member")
    expect(members.nth(1)).to_have_attribute("data-id", str(images[2].pk))
    assert list(group.members.order_by("position").values_list("image_id", flat=True)) == [
        images[0].pk,
        images[2].pk,
    ]


def test_search_like_this_makes_a_result_the_query(
    open_page: Any, annotator: Any, png_factory: Any
) -> None:
    images = store_images(png_factory, 3)
    page = open_page(annotator.username)
    page.goto(f"/search/?image={images[0].pk}")
    expect(page.locator("#no-relsim-index")).to_contain_text("There is no relsim index yet")
    phash = page.locator('section[data-source="phash"]')
    first = phash.locator(".tile").first
    chosen = first.get_attribute("data-id")
    first.get_by_role("link", name="Search like this").click()
    expect(page.get_by_text(f"Images like image {chosen}")).to_be_visible()
    expect(phash.locator(f'.tile[data-id="{chosen}"]')).to_have_count(0)
