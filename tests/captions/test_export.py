"""Exporting the data set in the released formats, and the round trip through import."""

from __future__ import annotations

import hashlib
import json
import zipfile
from io import StringIO
from pathlib import Path
from typing import Any

import datasets
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from captions.models import Caption
from captions.services import caption_create
from curation.intake import normalise_image
from curation.models import Group, Image, ImportBatch, InterestLabel
from curation.services import group_create, image_store
from tests.captions.helpers import write_images, write_json, write_jsonl

pytestmark = pytest.mark.django_db
DATA_FILES = (
    "seed_group.json",
    "anonymous_captions_train.jsonl",
    "anonymous_captions_test.jsonl",
    "interest_labels.jsonl",
)


@pytest.fixture
def dataset(tmp_path: Path, png_factory: Any) -> None:
    """Two approved groups (train and test), one draft group, single-image captions."""
    root = tmp_path / "src"
    write_images(root, png_factory, {f"{n}.png": n for n in range(1, 8)})
    write_json(
        root / "seed_group.json",
        [
            {
                "anonymous_caption": "A {Object} inside a {Object}.",
                "image_urls": ["1.png", "2.png", "3.png"],
            },
            {"anonymous_caption": "A ring of {Object}s.", "image_urls": ["4.png", "5.png"]},
        ],
    )
    call_command("import_seed_groups", str(root / "seed_group.json"), stdout=StringIO())
    Group.objects.filter(captions__text="A ring of {Object}s.").update(split="test")
    single = root / "single"
    single.mkdir()
    lines = []
    for seed in (6, 7):
        data = png_factory(seed)
        md5 = hashlib.md5(data).hexdigest()
        (single / f"{md5}.png").write_bytes(data)
        lines.append(
            {
                "image_hash": md5,
                "url_link": f"https://example.org/{seed}.png",
                "caption": f"Single {{Object}} number {seed}.",
            }
        )
    write_jsonl(single / "anonymous_captions_train.jsonl", lines)
    call_command(
        "import_captions", str(single / "anonymous_captions_train.jsonl"), stdout=StringIO()
    )
    draft_group = group_create(title="draft", images=list(Image.objects.order_by("id")[:2]))
    caption_create(text="A draft about {Object}s.", group=draft_group)


@pytest.fixture
def labels(dataset: None, make_user: Any, png_factory: Any) -> Image:
    """Interest labels by two annotators: on a group's image, and on an image that is in no
    caption at all (returned)."""
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    in_group = Image.objects.get(source_name="1.png")
    loose = image_store(normalised=normalise_image(png_factory(40)), source_name="loose.png").image
    for image, annotator, interesting in [
        (in_group, alice, True),
        (in_group, bob, False),
        (loose, alice, False),
    ]:
        InterestLabel.objects.create(image=image, annotator=annotator, interesting=interesting)
    return loose


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _export(out: Path, *args: str) -> None:
    call_command("export_dataset", str(out), *args, stdout=StringIO())


def test_the_export_holds_the_released_files_and_a_truthful_manifest(
    dataset: None, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _export(out)
    seeds = json.loads((out / "seed_group.json").read_text())
    assert [g["anonymous_caption"] for g in seeds] == [
        "A {Object} inside a {Object}.",
        "A ring of {Object}s.",
    ]
    assert [g["index_group"] for g in seeds] == [0, 1]
    for group in seeds:
        for url in group["image_urls"]:
            data = (out / url).read_bytes()
            assert url == f"images/{hashlib.md5(data).hexdigest()}.png"
    train = [
        json.loads(line)
        for line in (out / "anonymous_captions_train.jsonl").read_text().splitlines()
    ]
    test = [
        json.loads(line)
        for line in (out / "anonymous_captions_test.jsonl").read_text().splitlines()
    ]
    assert len(train) == 3 + 2 and len(test) == 2
    assert {row["caption"] for row in test} == {"A ring of {Object}s."}
    assert all((out / "images" / f"{row['image_hash']}.png").is_file() for row in train + test)
    assert "https://example.org/6.png" in {row["url_link"] for row in train}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["groups"] == 2 and manifest["counts"]["images"] == 7
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert "A draft about" not in (out / "seed_group.json").read_text()


def test_drafts_and_splits_are_options(dataset: None, tmp_path: Path) -> None:
    _export(tmp_path / "with-drafts", "--include-drafts")
    assert "A draft about" in (tmp_path / "with-drafts" / "seed_group.json").read_text()
    _export(tmp_path / "test-only", "--split", "test")
    assert not (tmp_path / "test-only" / "anonymous_captions_train.jsonl").exists()
    assert len(json.loads((tmp_path / "test-only" / "seed_group.json").read_text())) == 1


def test_interest_labels_are_exported_with_who_what_when_and_the_image_they_link_to(
    labels: Image, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _export(out)
    rows = _read_jsonl(out / "interest_labels.jsonl")
    in_group = Image.objects.get(source_name="1.png")
    assert sorted((r["image_hash"], r["annotator"], r["interesting"]) for r in rows) == sorted(
        [
            (in_group.md5, "alice", True),
            (in_group.md5, "bob", False),
            (labels.md5, "alice", False),
        ]
    )
    label = InterestLabel.objects.get(image=labels)
    assert [r["labelled_at"] for r in rows if r["image_hash"] == labels.md5] == [
        label.updated_at.isoformat()
    ]
    # Each row links to an image in the export, even one that is in no caption.
    for row in rows:
        data = (out / "images" / f"{row['image_hash']}.png").read_bytes()
        assert hashlib.md5(data).hexdigest() == row["image_hash"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["interest_labels"] == 3
    assert manifest["counts"]["images"] == 8
    digest = hashlib.sha256((out / "interest_labels.jsonl").read_bytes()).hexdigest()
    assert manifest["files"]["interest_labels.jsonl"] == digest


def test_an_export_with_no_interest_labels_has_an_empty_labels_file(
    dataset: None, tmp_path: Path
) -> None:
    _export(tmp_path / "export")
    assert (tmp_path / "export" / "interest_labels.jsonl").read_text() == ""
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["counts"]["interest_labels"] == 0


def test_export_then_import_into_an_empty_database_then_export_gives_identical_files(
    labels: Image, tmp_path: Path, django_user_model: Any
) -> None:
    _export(tmp_path / "first")
    Caption.objects.all().delete()
    Group.objects.all().delete()
    Image.objects.all().delete()
    ImportBatch.objects.all().delete()
    django_user_model.objects.all().delete()
    assert not InterestLabel.objects.exists()
    call_command("import_dataset", str(tmp_path / "first"), stdout=StringIO())
    _export(tmp_path / "second")
    for name in DATA_FILES:
        assert (tmp_path / "first" / name).read_bytes() == (
            tmp_path / "second" / name
        ).read_bytes(), name
    first_images = sorted(p.name for p in (tmp_path / "first" / "images").iterdir())
    assert first_images == sorted(p.name for p in (tmp_path / "second" / "images").iterdir())
    # Importing the same folder again changes nothing.
    counts = (
        Image.objects.count(),
        Group.objects.count(),
        Caption.objects.count(),
        InterestLabel.objects.count(),
    )
    assert counts[3] == 3
    call_command("import_dataset", str(tmp_path / "first"), stdout=StringIO())
    assert (
        Image.objects.count(),
        Group.objects.count(),
        Caption.objects.count(),
        InterestLabel.objects.count(),
    ) == counts


def test_an_imported_label_by_an_unknown_annotator_creates_an_inactive_user_who_cannot_log_in(
    labels: Image, tmp_path: Path, django_user_model: Any
) -> None:
    _export(tmp_path / "first")
    InterestLabel.objects.all().delete()
    django_user_model.objects.filter(username="bob").delete()
    call_command("import_dataset", str(tmp_path / "first"), stdout=StringIO())
    bob = django_user_model.objects.get(username="bob")
    assert not bob.is_active and not bob.has_usable_password()
    assert django_user_model.objects.get(username="alice").is_active  # existing: untouched
    assert InterestLabel.objects.filter(annotator=bob, interesting=False).count() == 1
    assert InterestLabel.objects.count() == 3


def test_a_bad_label_line_is_rejected_and_the_good_ones_import(
    labels: Image, tmp_path: Path, png_factory: Any
) -> None:
    _export(tmp_path / "first")
    folder = tmp_path / "first"
    rows = _read_jsonl(folder / "interest_labels.jsonl")
    rows.append({**rows[0], "annotator": "no spaces allowed"})
    rows.append({**rows[0], "interesting": "yes"})
    rows.append({**rows[0], "labelled_at": "yesterday"})
    rows.append({**rows[0], "image_hash": hashlib.md5(png_factory(77)).hexdigest()})
    write_jsonl(folder / "interest_labels.jsonl", rows)
    InterestLabel.objects.all().delete()
    report = tmp_path / "report.json"
    call_command("import_dataset", str(folder), "--report", str(report), stdout=StringIO())
    reasons = [r["reason"] for r in json.loads(report.read_text())["rejected"]]
    assert len(reasons) == 4, reasons
    assert any("not a valid user name" in r for r in reasons)
    assert any("not found" in r for r in reasons)
    assert InterestLabel.objects.count() == 3


def test_a_zip_export_holds_the_same_files(dataset: None, tmp_path: Path) -> None:
    _export(tmp_path / "folder")
    _export(tmp_path / "archive.zip")
    with zipfile.ZipFile(tmp_path / "archive.zip") as archive:
        for name in DATA_FILES:
            assert archive.read(name) == (tmp_path / "folder" / name).read_bytes()
        assert any(n.startswith("images/") for n in archive.namelist())
    assert not list(tmp_path.glob(".export-*")) and not list(tmp_path.glob("*.partial"))


def test_an_existing_destination_is_refused_and_left_alone(dataset: None, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CommandError, match="already exists"):
        _export(out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_the_jsonl_loads_with_the_datasets_library(dataset: None, tmp_path: Path) -> None:
    _export(tmp_path / "export")
    loaded = datasets.load_dataset(
        "json",
        data_files={"train": str(tmp_path / "export" / "anonymous_captions_train.jsonl")},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert loaded["train"].column_names == ["image_hash", "url_link", "caption"]
    assert loaded["train"].num_rows == 5
