"""An import that makes accounts for the annotators it names says so: the report lists the
user names, and the job page shows them to the admin who decides who may sign in."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from captions.importers import interest_labels_import
from core.reports import ImportReport
from curation.intake import normalise_image
from curation.models import Image, InterestLabel
from curation.services import image_store
from training.models import Job

pytestmark = pytest.mark.django_db

LABELLED_AT = "2025-01-02T03:04:05+00:00"


def _labels_file(folder: Path, rows: list[tuple[Image, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "interest_labels.jsonl"
    lines = [
        {
            "image_hash": image.md5,
            "annotator": name,
            "interesting": True,
            "labelled_at": LABELLED_AT,
        }
        for image, name in rows
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_labels_import_names_the_annotator_accounts_it_created_once_each(
    annotator: Any, png_factory: Any, tmp_path: Path, django_user_model: Any
) -> None:
    first, second = (image_store(normalised=normalise_image(png_factory(n))).image for n in (1, 2))
    file = _labels_file(
        tmp_path / "labels",
        [(first, annotator.username), (first, "newbie"), (second, "newbie"), (second, "zed")],
    )

    report = interest_labels_import(file=file, images_dir=file.parent)

    assert report.users_created == ["newbie", "zed"]
    assert report.as_dict()["users_created"] == ["newbie", "zed"]
    assert "2 inactive annotator accounts created: newbie, zed" in report.summary()
    assert not django_user_model.objects.get(username="zed").is_active
    assert InterestLabel.objects.count() == 4
    again = interest_labels_import(file=file, images_dir=file.parent)
    assert again.users_created == [] and "account" not in again.summary()


def test_the_dataset_import_report_file_lists_the_accounts_created(
    png_factory: Any, tmp_path: Path
) -> None:
    image = image_store(normalised=normalise_image(png_factory(3))).image
    folder = _labels_file(tmp_path / "release", [(image, "from-elsewhere")]).parent
    report = tmp_path / "report.json"
    out = StringIO()
    call_command("import_dataset", str(folder), "--report", str(report), stdout=out)
    assert json.loads(report.read_text())["users_created"] == ["from-elsewhere"]
    assert "1 inactive annotator account created: from-elsewhere" in out.getvalue()


def test_the_summary_names_at_most_ten_created_accounts() -> None:
    report = ImportReport(users_created=[f"user{n}" for n in range(12)])
    assert report.summary().endswith(
        "created: " + ", ".join(f"user{n}" for n in range(10)) + " and 2 more"
    )


def test_the_job_page_shows_the_accounts_an_import_created(admin_user_role: Any) -> None:
    report = ImportReport(accepted=2, users_created=["newbie", "zed"])
    job = Job.objects.create(
        kind=Job.Kind.IMPORT_CAPTIONS,
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        artifacts={"report": report.as_dict()},
    )
    client = Client()
    client.force_login(admin_user_role)
    page = client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert 'data-testid="report-users-created">2<' in page
    assert 'id="report-users-created"' in page
    for name in ("newbie", "zed"):
        assert f'{reverse("admin:auth_user_changelist")}?q={name}"' in page


def test_a_report_that_created_no_accounts_shows_no_such_table(admin_user_role: Any) -> None:
    job = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES,
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        artifacts={"report": ImportReport(accepted=1).as_dict()},
    )
    client = Client()
    client.force_login(admin_user_role)
    page = client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "report-users-created" not in page
