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
from curation.models import Group, Image, ImportBatch
from curation.services import group_create
from tests.captions.helpers import write_images, write_json, write_jsonl

pytestmark = pytest.mark.django_db
DATA_FILES = ("seed_group.json", "anonymous_captions_train.jsonl", "anonymous_captions_test.jsonl")


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


def test_export_then_import_into_an_empty_database_then_export_gives_identical_files(
    dataset: None, tmp_path: Path
) -> None:
    _export(tmp_path / "first")
    Caption.objects.all().delete()
    Group.objects.all().delete()
    Image.objects.all().delete()
    ImportBatch.objects.all().delete()
    call_command("import_dataset", str(tmp_path / "first"), stdout=StringIO())
    _export(tmp_path / "second")
    for name in DATA_FILES:
        assert (tmp_path / "first" / name).read_bytes() == (
            tmp_path / "second" / name
        ).read_bytes(), name
    first_images = sorted(p.name for p in (tmp_path / "first" / "images").iterdir())
    assert first_images == sorted(p.name for p in (tmp_path / "second" / "images").iterdir())
    # Importing the same folder again changes nothing.
    counts = (Image.objects.count(), Group.objects.count(), Caption.objects.count())
    call_command("import_dataset", str(tmp_path / "first"), stdout=StringIO())
    assert (Image.objects.count(), Group.objects.count(), Caption.objects.count()) == counts


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
