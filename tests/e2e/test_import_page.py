"""An admin uploads a small archive on the import page, the job runs, and its report shows
what was accepted, what was already here and what was rejected."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from curation.models import Image
from tests.e2e.support import expect, store_images
from training.execution import execute_job
from training.models import Job

pytestmark = pytest.mark.e2e


def test_an_admin_imports_an_archive_and_reads_its_report(
    open_page: Any,
    admin_user_role: Any,
    png_factory: Any,
    enqueued: list[tuple[int, str]],
    data_dir: Path,
) -> None:
    (existing,) = store_images(png_factory, 1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good.png", png_factory(101))
        archive.writestr("again.png", existing.file.read())
        archive.writestr("broken.png", b"\x89PNG\r\n\x1a\n cut short")
    page = open_page(admin_user_role.username)

    page.get_by_role("link", name="Imports", exact=True).click()
    expect(page.get_by_role("heading", name="Import", exact=True)).to_be_visible()
    page.get_by_label("Upload").set_input_files(
        {"name": "batch.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()}
    )
    page.get_by_role("button", name="Start the import").click()

    job = Job.objects.get(kind=Job.Kind.IMPORT_IMAGES)
    assert enqueued == [(job.pk, "cpu")]
    expect(page.get_by_role("heading", name=f"Import images #{job.pk}")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("pending")
    job_url = page.url

    # The worker's part, in this process; the page polls and shows the outcome by itself.
    assert execute_job(job.pk, worker="e2e") == "succeeded"
    expect(page.get_by_test_id("job-status")).to_have_text(
        "succeeded with warnings", timeout=10_000
    )
    expect(page.get_by_test_id("report-accepted")).to_have_text("1")
    expect(page.get_by_test_id("report-duplicates")).to_have_text("1")
    expect(page.get_by_test_id("report-rejected")).to_have_text("1")
    duplicates = page.locator("#report-duplicates")
    expect(duplicates.get_by_role("row").filter(has_text="again.png")).to_be_visible()
    expect(duplicates.get_by_role("link", name=f"image #{existing.pk}")).to_be_visible()
    expect(
        page.locator("#report-rejected").get_by_role("row").filter(has_text="broken.png")
    ).to_be_visible()
    assert Image.objects.count() == 2

    duplicates.get_by_role("link", name=f"image #{existing.pk}").click()
    page.wait_for_url(f"**/images/{existing.pk}/")
    page.goto(job_url)
    page.get_by_role("link", name="This import's images in the pool").click()
    page.wait_for_url("**/pool/?batch=*")
    page.goto(job_url)
    page.get_by_role("link", name="← Imports").click()
    expect(
        page.get_by_role("listitem")
        .filter(has_text=f"#{job.pk}")
        .filter(has_text="succeeded with warnings")
    ).to_be_visible()
