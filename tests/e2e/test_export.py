"""An admin starts an export, watches the job page turn to succeeded, and downloads a zip
in the released format."""

from __future__ import annotations

import json
import zipfile
from typing import Any

import pytest

from captions.models import Caption
from captions.services import caption_create
from curation.services import group_create
from tests.e2e.support import expect, store_images
from training.execution import execute_job
from training.models import Job

pytestmark = pytest.mark.e2e

CAPTION = "A {Animal} peering out from behind a {Object}."


def test_an_admin_exports_the_data_set_and_downloads_the_archive(
    open_page: Any,
    admin_user_role: Any,
    annotator: Any,
    png_factory: Any,
    enqueued: list[tuple[int, str]],
    tmp_path: Any,
) -> None:
    images = store_images(png_factory, 3)
    group = group_create(title="Peeking out", images=images, user=annotator)
    caption_create(text=CAPTION, group=group, author=annotator, status=Caption.Status.APPROVED)
    page = open_page(admin_user_role.username)

    page.get_by_role("link", name="Export", exact=True).click()
    expect(page.get_by_role("heading", name="Export the data set")).to_be_visible()
    expect(page.get_by_label("Include drafts (approved only otherwise)")).not_to_be_checked()
    page.get_by_role("button", name="Start the export").click()

    job = Job.objects.get(kind=Job.Kind.EXPORT_DATASET)
    assert enqueued == [(job.pk, "cpu")]
    assert job.created_by == admin_user_role
    expect(page.get_by_role("heading", name=f"Export data set #{job.pk}")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("pending")
    expect(page.get_by_text("Waiting for a worker on the cpu queue.")).to_be_visible()

    # The worker's part, in this process; the page polls and shows the outcome by itself.
    assert execute_job(job.pk, worker="e2e") == "succeeded"
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=10_000)
    expect(page.get_by_text("Waiting for a worker")).to_be_hidden()
    manifest = page.locator(".manifest")
    expect(manifest).to_be_visible()
    download_link = page.get_by_role("link", name="Download the archive")

    with page.expect_download() as info:
        download_link.click()
    download = info.value
    assert download.suggested_filename.endswith(".zip")
    archive = tmp_path / download.suggested_filename
    download.save_as(archive)
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        seed_groups = json.loads(zipped.read("seed_group.json"))
    assert {"seed_group.json", "manifest.json", "anonymous_captions_train.jsonl"} <= names
    assert {f"images/{image.md5}.png" for image in images} <= names
    assert [g["anonymous_caption"] for g in seed_groups] == [CAPTION]
    assert seed_groups[0]["image_urls"] == [f"images/{image.md5}.png" for image in images]

    # The export page lists it, with its own download link.
    page.get_by_role("link", name="← Export").click()
    recent = page.get_by_role("listitem").filter(has_text=f"#{job.pk} succeeded")
    expect(recent.get_by_role("link", name="download")).to_be_visible()
