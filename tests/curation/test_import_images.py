"""manage.py import_images on awkward folders and archives: every file gets an outcome."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.models import Image, ImportBatch
from tests.curation.awkward_files import (
    ACCEPT,
    write_awkward_folder,
    write_awkward_tar,
    write_awkward_zip,
)

pytestmark = pytest.mark.django_db


def _import(source: Path, report: Path, *extra: str) -> dict[str, Any]:
    call_command("import_images", str(source), "--report", str(report), *extra, stdout=StringIO())
    return json.loads(report.read_text())


def _check_outcomes(expected: dict[str, str], report: dict[str, Any]) -> None:
    rejected = {row["name"]: row["reason"] for row in report["rejected"]}
    accepted = {name for name, outcome in expected.items() if outcome == ACCEPT}
    for name, outcome in expected.items():
        if outcome == ACCEPT:
            assert name not in rejected, f"{name} was refused: {rejected.get(name)}"
        else:
            assert name in rejected, f"{name} should be refused ({outcome})"
            assert outcome.lower() in rejected[name].lower(), (name, rejected[name])
    assert report["accepted"] + report["duplicates"] == len(accepted)


@pytest.mark.parametrize("writer", [write_awkward_folder, write_awkward_zip, write_awkward_tar])
def test_every_awkward_file_is_accepted_or_refused_with_a_reason(
    tmp_path: Path, writer: Any
) -> None:
    names = {
        write_awkward_folder: "awkward",
        write_awkward_zip: "awkward.zip",
        write_awkward_tar: "awkward.tar.gz",
    }
    source = tmp_path / names[writer]
    expected = writer(source)
    report = _import(source, tmp_path / "report.json")
    _check_outcomes(expected, report)
    for image in Image.objects.all():
        with default_storage.open(image.file.name, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert default_storage.exists(image.thumbnail.name)
    batch = ImportBatch.objects.get()
    assert batch.report["accepted"] == report["accepted"]


def test_normalisations_are_reported_and_re_import_changes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "awkward"
    write_awkward_folder(source)
    first = _import(source, tmp_path / "first.json")
    notes = {note for row in first["normalised"] for note in row["notes"]}
    assert any("EXIF" in note for note in notes)
    assert any("CMYK" in note for note in notes)
    assert any("first frame" in note for note in notes)
    files = sorted(p for p in Path(default_storage.location).rglob("*") if p.is_file())
    count = Image.objects.count()

    second = _import(source, tmp_path / "second.json")
    assert second["accepted"] == 0
    assert second["duplicates"] == first["accepted"] + first["duplicates"]
    assert Image.objects.count() == count
    assert sorted(p for p in Path(default_storage.location).rglob("*") if p.is_file()) == files


def test_nothing_is_written_outside_the_data_directory(tmp_path: Path, data_dir: Path) -> None:
    source = tmp_path / "hostile.zip"
    write_awkward_zip(source)
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir)}
    _import(source, data_dir / "report.json")
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir)}
    assert after == before


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("import_images", str(tmp_path / "nowhere"), stdout=StringIO())
    assert ImportBatch.objects.count() == 0


def test_a_user_without_the_permission_cannot_import(tmp_path: Path, make_user: Any) -> None:
    make_user("guest")
    with pytest.raises(CommandError, match="may not"):
        call_command("import_images", str(tmp_path), "--user", "guest", stdout=StringIO())
    with pytest.raises(CommandError, match="No active user"):
        call_command("import_images", str(tmp_path), "--user", "nobody", stdout=StringIO())


def test_an_annotator_import_is_recorded_as_theirs(
    tmp_path: Path, annotator: Any, png_factory: Any
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.png").write_bytes(png_factory(5))
    _import(tmp_path / "one", tmp_path / "r.json", "--user", annotator.username)
    assert Image.objects.get().created_by == annotator
