"""Importing the released anonymous_captions_*.jsonl with <image_hash>.png images."""

from __future__ import annotations

import hashlib
import io
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from PIL import Image as PILImage

from captions.importers import ROWS_REJECTED_EXIT
from captions.models import Caption
from curation.models import Image, ImportBatch
from tests.captions.helpers import write_jsonl

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


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


def _run(file: Path, *args: str, exit_code: int = 0) -> dict[str, Any]:
    report = file.parent / "report.json"
    code = 0
    try:
        call_command(
            "import_captions", str(file), *args, "--report", str(report), stdout=StringIO()
        )
    except CommandError as exc:
        code = exc.returncode
    assert code == exit_code
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
    report = _run(file, "--images", str(folder), exit_code=ROWS_REJECTED_EXIT)
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
    conflict = _run(other, exit_code=ROWS_REJECTED_EXIT)
    assert "different approved caption" in conflict["rejected"][0]["reason"]
    assert Caption.objects.count() == 4


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_captions", str(tmp_path / "nope.jsonl"), "--images", str(tmp_path))


def test_distractor_lines_without_a_caption_join_the_pool_uncaptioned(
    release: tuple[Path, list[str]],
) -> None:
    folder, hashes = release
    file = write_jsonl(
        folder / "random_images_14k.jsonl",
        [
            {"image_hash": h, "url_link": f"https://example.org/{n}.jpg"}
            for n, h in enumerate(hashes)
        ],
    )

    report = _run(file)

    assert report["accepted"] == 4 and report["uncaptioned"] == 4 and report["rejected"] == []
    assert Image.objects.count() == 4 and Caption.objects.count() == 0
    assert Image.objects.get(md5=hashes[2]).source_url == "https://example.org/2.jpg"
    again = _run(file)
    assert again["accepted"] == 0 and again["duplicates"] == 4
    assert Image.objects.count() == 4


def test_a_line_whose_file_is_not_its_image_hash_is_rejected(
    release: tuple[Path, list[str]], png_factory: Any
) -> None:
    folder, hashes = release
    # The file named after the first hash now holds another image.
    (folder / f"{hashes[0]}.png").write_bytes(png_factory(50))
    file = write_jsonl(
        folder / "anonymous_captions_train.jsonl",
        [
            {"image_hash": hashes[0], "url_link": "", "caption": "Swapped {Object}."},
            {"image_hash": hashes[0], "url_link": ""},
            {"image_hash": hashes[1], "url_link": "", "caption": "Right {Object}."},
        ],
    )

    report = _run(file, exit_code=ROWS_REJECTED_EXIT)

    assert report["accepted"] == 1
    assert [r["name"] for r in report["rejected"]] == [
        "anonymous_captions_train.jsonl line 1",
        "anonymous_captions_train.jsonl line 2",
    ]
    actual = hashlib.md5(png_factory(50)).hexdigest()
    assert f"has md5 {actual}, not its image_hash {hashes[0]}" in report["rejected"][0]["reason"]
    assert Image.objects.get().md5 == hashes[1]


def test_the_hash_checked_is_that_of_the_file_before_it_is_made_rgb(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    PILImage.new("RGBA", (32, 32), (200, 10, 10, 128)).save(buffer, "PNG")
    data = buffer.getvalue()
    md5 = hashlib.md5(data).hexdigest()
    (tmp_path / f"{md5}.png").write_bytes(data)
    file = write_jsonl(
        tmp_path / "anonymous_captions_train.jsonl",
        [{"image_hash": md5, "url_link": "", "caption": "A see-through {Object}."}],
    )

    report = _run(file)

    assert report["accepted"] == 1
    stored = Image.objects.get()
    assert stored.md5 != md5  # flattened on white: a new PNG
    assert report["normalised"][0]["notes"][-1] == f"stored with md5 {stored.md5}"


def test_one_undecodable_line_rejects_only_itself(release: tuple[Path, list[str]]) -> None:
    folder, hashes = release

    def line(n: int, caption: str) -> bytes:
        row = {"image_hash": hashes[n], "url_link": "", "caption": caption}
        return json.dumps(row, ensure_ascii=False).encode()

    file = folder / "anonymous_captions_train.jsonl"
    file.write_bytes(
        b"\xef\xbb\xbf"  # a byte-order mark before the first line
        + line(0, "First {Object}.")
        + b"\n"
        + line(1, "Latin-1 caf\u00e9 {Object}.").replace("\u00e9".encode(), b"\xe9")
        + b"\r\n"
        + b'{"image_hash": "'
        + hashes[1].encode()
        + b'", "caption": "cut'
        + b"\n\n"
        + line(2, "A {Object}\u2028across a line separator.")
        + b"\n"
        + b'{"image_hash": "'
        + hashes[3].encode()
        + b'", "caption": "A lone \\ud800 {Object}."}\n'
    )

    report = _run(file, exit_code=ROWS_REJECTED_EXIT)

    assert report["accepted"] == 2
    rejected = {r["name"].rsplit(" ", 1)[1]: r["reason"] for r in report["rejected"]}
    assert set(rejected) == {"2", "3", "6"}
    assert rejected["2"].startswith("not UTF-8 text (byte 0xe9")
    assert rejected["3"].startswith("not valid JSON: Unterminated string")
    assert "unpaired surrogate" in rejected["6"]
    assert Caption.objects.get(image__md5=hashes[2]).text == "A {Object} across a line separator."
    assert set(Image.objects.values_list("md5", flat=True)) == {hashes[0], hashes[2]}


def test_a_file_that_is_not_text_at_all_is_refused_whole(
    release: tuple[Path, list[str]],
) -> None:
    folder, hashes = release
    with pytest.raises(CommandError, match="NUL bytes"):
        call_command("import_captions", str(folder / f"{hashes[0]}.png"), stdout=StringIO())
    assert ImportBatch.objects.count() == 0 and Image.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_process_exit_status_says_whether_any_line_was_rejected(
    release: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, hashes = release
    good = {"image_hash": hashes[0], "url_link": "", "caption": "Fine {Object}."}
    clean = write_jsonl(folder / "clean.jsonl", [good])
    mixed = write_jsonl(folder / "mixed.jsonl", [good, {"image_hash": "0" * 32, "url_link": ""}])

    def exit_status(*argv: str) -> int:
        try:
            ManagementUtility(["manage.py", "import_captions", "--skip-checks", *argv]).execute()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert exit_status(str(clean)) == 0
    assert exit_status(str(mixed), "--report", str(folder / "report.json")) == 3
    assert "1 lines rejected" in capsys.readouterr().err
    assert json.loads((folder / "report.json").read_text())["duplicates"] == 1
    assert exit_status(str(folder / "missing.jsonl")) == 1
