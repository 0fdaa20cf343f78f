"""Importing the released anonymous_captions_*.jsonl with <image_hash>.png images."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from captions.models import Caption
from curation.models import Image
from tests.captions.helpers import write_jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def release(tmp_path: Path, png_factory: Any) -> tuple[Path, list[str]]:
    folder = tmp_path / "captions"
    folder.mkdir()
    hashes = []
    for seed in range(1, 5):
        data = png_factory(seed)
        md5 = hashlib.md5(data).hexdigest()
        (folder / f"{md5}.png").write_bytes(data)
        hashes.append(md5)
    return folder, hashes


def _run(file: Path, *args: str) -> dict[str, Any]:
    report = file.parent / "report.json"
    call_command("import_captions", str(file), *args, "--report", str(report), stdout=StringIO())
    return json.loads(report.read_text())


def test_good_lines_import_with_their_split_and_bad_lines_are_reported(
    release: tuple[Path, list[str]],
) -> None:
    folder, hashes = release
    file = write_jsonl(
        folder / "anonymous_captions_test.jsonl",
        [
            {
                "image_hash": hashes[0],
                "url_link": "https://example.org/a.png",
                "caption": "A {Object} mirrored.",
            },
            {"image_hash": hashes[1].upper(), "url_link": "", "caption": '"A stack of {Object}s."'},
            "{broken json",
            {"image_hash": "xyz", "url_link": "", "caption": "Bad hash {Object}."},
            {"image_hash": "0" * 32, "url_link": "", "caption": "Missing image {Object}."},
            {"image_hash": hashes[2], "url_link": "", "caption": "   "},
            {"image_hash": hashes[3], "url_link": "", "caption": "Nested {Ob{ject}}."},
            ["not", "an", "object"],
        ],
    )
    report = _run(file, "--images", str(folder))
    assert report["accepted"] == 2
    reasons = [r["reason"] for r in report["rejected"]]
    assert len(reasons) == 6
    assert "not valid JSON" in reasons[0]
    assert "32 hexadecimal" in reasons[1]
    assert "not found" in reasons[2]
    assert "empty" in reasons[3]
    assert "nested" in reasons[4]
    assert "JSON object" in reasons[5]
    first = Caption.objects.get(image__md5=hashes[0])
    assert first.split == "test" and first.status == Caption.Status.APPROVED
    assert first.image.source_url == "https://example.org/a.png"
    assert Caption.objects.get(image__md5=hashes[1]).text == "A stack of {Object}s."


def test_re_import_changes_nothing_and_a_conflicting_caption_is_refused(
    release: tuple[Path, list[str]],
) -> None:
    folder, hashes = release
    file = write_jsonl(
        folder / "anonymous_captions_train.jsonl",
        [
            {"image_hash": h, "url_link": "", "caption": f"Caption {n} of a {{Object}}."}
            for n, h in enumerate(hashes)
        ],
    )
    assert _run(file)["accepted"] == 4
    again = _run(file)
    assert again["accepted"] == 0 and again["duplicates"] == 4
    assert Caption.objects.count() == 4 and Image.objects.count() == 4
    assert set(Caption.objects.values_list("split", flat=True)) == {"train"}

    other = write_jsonl(
        folder / "other.jsonl",
        [{"image_hash": hashes[0], "url_link": "", "caption": "Different {Object}."}],
    )
    conflict = _run(other)
    assert "different approved caption" in conflict["rejected"][0]["reason"]
    assert Caption.objects.count() == 4


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_captions", str(tmp_path / "nope.jsonl"), "--images", str(tmp_path))
