"""Importing the released seed_group.json: good rows import, bad rows are reported."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from captions.importers import ROWS_REJECTED_EXIT
from captions.models import Caption, CaptionRevision
from curation.models import Group, Image, ImportBatch
from tests.captions.helpers import write_images, write_json

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def root(tmp_path: Path, png_factory: Any) -> Path:
    folder = tmp_path / "release"
    write_images(folder, png_factory, {f"img/{n}.png": n for n in range(1, 9)})
    (folder / "img" / "page.png").write_text(
        "<!doctype html><html><body>not an image</body></html>"
    )
    (tmp_path / "outside.png").write_bytes(png_factory(99))
    return folder


def _run(file: Path, *args: str, exit_code: int = 0) -> tuple[str, dict[str, Any]]:
    out = StringIO()
    report = file.parent / "report.json"
    code = 0
    try:
        call_command("import_seed_groups", str(file), *args, "--report", str(report), stdout=out)
    except CommandError as exc:
        code = exc.returncode
    assert code == exit_code, out.getvalue()
    return out.getvalue(), json.loads(report.read_text())


def _md5_name(url: str) -> str:
    return hashlib.md5(url.encode()).hexdigest() + ".png"


def test_good_rows_import_and_bad_rows_are_reported_with_a_reason(root: Path) -> None:
    rows = [
        {
            "index_group": 0,
            "anonymous_caption": "A {Animal} peering out from behind a {Object}.",
            "image_urls": ["img/1.png", "img/2.png", "img/3.png"],
        },
        {
            "index_group": 1,
            "anonymous_caption": '"Layers of a {Object}, like the {Planet}."',
            "image_urls": ["img/4.png", f"file://{root}/img/5.png"],
        },
        "not a group",
        {"anonymous_caption": "", "image_urls": ["img/1.png", "img/2.png"]},
        {"anonymous_caption": "Unbalanced {Object", "image_urls": ["img/1.png", "img/2.png"]},
        {"anonymous_caption": "Only one {Object}.", "image_urls": ["img/6.png"]},
        {"anonymous_caption": "Twice the same {Object}.", "image_urls": ["img/6.png", "img/6.png"]},
        {"anonymous_caption": "Escapes {Object}.", "image_urls": ["img/6.png", "../outside.png"]},
        {"anonymous_caption": "Absolute {Object}.", "image_urls": ["img/6.png", "/etc/hostname"]},
        {"anonymous_caption": "Missing {Object}.", "image_urls": ["img/6.png", "img/nope.png"]},
        {
            "anonymous_caption": "Not an image {Object}.",
            "image_urls": ["img/6.png", "img/page.png"],
        },
        {
            "anonymous_caption": "Remote {Object}.",
            "image_urls": ["img/6.png", "http://127.0.0.1:9/x.png"],
        },
        {"anonymous_caption": "No list {Object}.", "image_urls": "img/6.png"},
    ]
    out, report = _run(
        write_json(root / "seed_group.json", rows),
        "--images-root",
        str(root),
        exit_code=ROWS_REJECTED_EXIT,
    )

    assert report["accepted"] == 2
    assert report["duplicates"] == 0
    reasons = {r["name"].split(" ")[1]: r["reason"] for r in report["rejected"]}
    assert set(reasons) == {str(n) for n in range(3, 14)}
    assert "JSON object" in reasons["3"]
    assert "empty" in reasons["4"]
    assert "unbalanced braces" in reasons["5"]
    assert "at least 2 distinct" in reasons["6"] and "at least 2 distinct" in reasons["7"]
    assert "outside the images root" in reasons["8"]
    assert "outside the images root" in reasons["9"]
    assert "does not exist" in reasons["10"]
    assert "HTML" in reasons["11"] or "not an image" in reasons["11"]
    assert "--fetch" in reasons["12"]
    assert "must be a list" in reasons["13"]
    assert "2 accepted" in out

    assert Group.objects.count() == 2
    assert Image.objects.count() == 5
    quoted = Caption.objects.get(group__members__image__source_name="img/4.png")
    assert quoted.text == "Layers of a {Object}, like the {Planet}."
    assert quoted.status == Caption.Status.APPROVED and quoted.source == Caption.Source.IMPORT
    assert CaptionRevision.objects.filter(caption=quoted, action="import").count() == 1
    first = Group.objects.get(captions__text__startswith="A {Animal}")
    assert [m.image.source_name for m in first.members.all()] == [
        "img/1.png",
        "img/2.png",
        "img/3.png",
    ]


def test_re_importing_the_same_file_changes_nothing(root: Path) -> None:
    rows = [
        {
            "anonymous_caption": "A {Object} on top of a {Object}.",
            "image_urls": ["img/1.png", "img/2.png"],
        },
        {
            "anonymous_caption": "A {Object} inside a {Object}.",
            "image_urls": ["img/2.png", "img/3.png"],
        },
    ]
    file = write_json(root / "seed_group.json", rows)
    _, first = _run(file, "--images-root", str(root))
    counts = (Group.objects.count(), Image.objects.count(), Caption.objects.count())
    _, second = _run(file, "--images-root", str(root))
    assert first["accepted"] == 2
    assert second["accepted"] == 0 and second["duplicates"] == 2
    assert (Group.objects.count(), Image.objects.count(), Caption.objects.count()) == counts


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"a": 1}', "JSON list"), ("", "not valid JSON")],
)
def test_an_unusable_file_is_refused_whole(root: Path, content: str, message: str) -> None:
    file = root / "seed_group.json"
    file.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_seed_groups", str(file), "--images-root", str(root), stdout=StringIO())
    assert Group.objects.count() == 0 and Image.objects.count() == 0


class _Images(BaseHTTPRequestHandler):
    payloads: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.payloads.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def image_server(png_factory: Any, settings: Any) -> Iterator[str]:
    # A loopback server is refused unless allowed (see tests/curation/test_fetch_guard.py).
    settings.RELSIM_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    _Images.payloads = {"/a.png": png_factory(101), "/b.png": png_factory(102)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_fetching_is_opt_in_and_a_failed_url_fails_only_its_row(
    root: Path, image_server: str
) -> None:
    rows = [
        {
            "anonymous_caption": "Fetched {Object}s.",
            "image_urls": [f"{image_server}/a.png", f"{image_server}/b.png"],
        },
        {
            "anonymous_caption": "Broken {Object}.",
            "image_urls": [f"{image_server}/a.png", f"{image_server}/gone.png"],
        },
    ]
    file = write_json(root / "seed_group.json", rows)
    _, without = _run(file, "--images-root", str(root), exit_code=ROWS_REJECTED_EXIT)
    assert without["accepted"] == 0 and len(without["rejected"]) == 2
    _, with_fetch = _run(file, "--images-root", str(root), "--fetch", exit_code=ROWS_REJECTED_EXIT)
    assert with_fetch["accepted"] == 1
    assert "HTTP 404" in with_fetch["rejected"][0]["reason"]
    fetched = Image.objects.get(source_url=f"{image_server}/a.png")
    assert fetched.groups.get().captions.get().text == "Fetched {Object}s."


# --- the release's own images on disk ---------------------------------------------------------

CAT = "https://example.org/photos/cat.jpg?w=640"
DOG = "https://cdn.example.org/x/Dog.PNG"
OWL = "https://example.org/owl"
FOX = "https://example.org/a/fox.webp"


def test_it_finds_images_saved_by_the_release_downloader(tmp_path: Path, png_factory: Any) -> None:
    urls = [f"https://example.org/img/{n}.jpg" for n in range(8)]
    saved = tmp_path / "seed_groups_images"
    write_images(
        saved,
        png_factory,
        {
            # --use_hash: group_<position in the file>/<md5 of the URL>.png
            f"group_0/{_md5_name(urls[0])}": 1,
            f"group_0/{_md5_name(urls[1])}": 2,
            # without it: the URL's last part, query included, with its extension made .png
            "group_1/cat.png": 3,
            "group_1/Dog.PNG": 4,
            "group_1/owl.png": 5,
            # the same names in one flat folder
            _md5_name(urls[2]): 6,
            "fox.png": 7,
        },
    )
    rows = [
        {"index_group": 7, "anonymous_caption": "Hashed {Object}s.", "image_urls": urls[:2]},
        {"index_group": 3, "anonymous_caption": "Named {Animal}s.", "image_urls": [CAT, DOG, OWL]},
        {"anonymous_caption": "Flat {Animal}s.", "image_urls": [urls[2], FOX]},
    ]
    file = write_json(tmp_path / "seed_group.json", rows)

    out, report = _run(file, "--images-root", str(saved))

    assert report["accepted"] == 3 and report["rejected"] == [], out
    assert report["images_not_found"] == []
    found = dict(Image.objects.values_list("source_url", "source_name"))
    assert found == {
        urls[0]: f"group_0/{_md5_name(urls[0])}",
        urls[1]: f"group_0/{_md5_name(urls[1])}",
        CAT: "group_1/cat.png",
        DOG: "group_1/Dog.PNG",
        OWL: "group_1/owl.png",
        urls[2]: _md5_name(urls[2]),
        FOX: "fox.png",
    }
    named = Group.objects.get(captions__text="Named {Animal}s.")
    assert [m.image.source_url for m in named.members.all()] == [CAT, DOG, OWL]
    assert (saved / "group_1" / "cat.png").read_bytes() == png_factory(3)
    assert Image.objects.get(source_url=CAT).md5 == hashlib.md5(png_factory(3)).hexdigest()


def test_it_names_every_url_it_could_not_find_and_writes_nothing_of_that_row(
    tmp_path: Path, png_factory: Any
) -> None:
    saved = tmp_path / "images"
    write_images(
        saved, png_factory, {"group_0/cat.png": 1, "group_1/cat.png": 1, "group_5/owl.png": 2}
    )
    rows = [
        {"index_group": 0, "anonymous_caption": "Three {Animal}s.", "image_urls": [CAT, DOG, FOX]},
        # The downloader names folders by position in the file, not by index_group.
        {"index_group": 5, "anonymous_caption": "Misplaced {Animal}.", "image_urls": [OWL, CAT]},
    ]
    file = write_json(saved / "seed_group.json", rows)

    out, report = _run(file, "--images-root", str(saved), exit_code=ROWS_REJECTED_EXIT)

    first, second = report["rejected"]
    assert first["name"] == "row 1 (index_group 0)"
    assert first["reason"].startswith("2 of 3 images unusable")
    assert "image 2 (https://cdn.example.org/x/Dog.PNG): not found" in first["reason"]
    assert "image 3 (https://example.org/a/fox.webp): not found" in first["reason"]
    assert "image 1" not in first["reason"]
    assert "--fetch" in first["reason"]
    assert second["name"] == "row 2 (index_group 5)"
    assert second["reason"].startswith("1 of 2 images unusable: image 1 (https://example.org/owl)")
    missing = report["images_not_found"]
    assert [(m["name"], m["image"], m["url"]) for m in missing] == [
        ("row 1 (index_group 0)", 2, DOG),
        ("row 1 (index_group 0)", 3, FOX),
        ("row 2 (index_group 5)", 1, OWL),
    ]
    assert missing[0]["looked_for"] == [
        f"group_0/{_md5_name(DOG)}",
        "group_0/Dog.PNG",
        _md5_name(DOG),
        "Dog.PNG",
    ]
    assert missing[2]["looked_for"][:2] == [f"group_1/{_md5_name(OWL)}", "group_1/owl.png"]
    assert "3 image URLs not found" in out
    assert Image.objects.count() == 0 and Group.objects.count() == 0


def test_a_file_name_shared_by_two_urls_is_not_trusted(tmp_path: Path, png_factory: Any) -> None:
    one, two = "https://a.example.org/image.jpg", "https://b.example.org/image.jpg"
    saved = tmp_path / "images"
    # The downloader wrote image.png once and skipped the second URL: whose image is it?
    write_images(saved, png_factory, {"group_0/image.png": 1, "image.png": 1, "group_0/x.png": 2})
    rows = [{"anonymous_caption": "Ambiguous {Object}.", "image_urls": [one, two]}]
    _, report = _run(
        write_json(saved / "seed_group.json", rows),
        "--images-root",
        str(saved),
        exit_code=ROWS_REJECTED_EXIT,
    )
    reason = report["rejected"][0]["reason"]
    assert "group_0/image.png is the name of several URLs of this row" in reason
    assert "image.png is the name of several URLs of the file" in reason
    assert Image.objects.count() == 0

    write_images(saved, png_factory, {f"group_0/{_md5_name(one)}": 3, _md5_name(two): 4})
    _, report = _run(saved / "seed_group.json", "--images-root", str(saved))
    assert report["accepted"] == 1
    assert set(Image.objects.values_list("source_url", flat=True)) == {one, two}


def test_the_export_writes_the_urls_back_as_url_link(tmp_path: Path, png_factory: Any) -> None:
    saved = tmp_path / "images"
    write_images(saved, png_factory, {"group_0/cat.png": 1, "group_0/Dog.PNG": 2})
    rows = [{"index_group": 0, "anonymous_caption": "Pets {Animal}.", "image_urls": [CAT, DOG]}]
    _run(write_json(saved / "seed_group.json", rows), "--images-root", str(saved))

    call_command("export_dataset", str(tmp_path / "out"), stdout=StringIO())

    lines = (tmp_path / "out" / "anonymous_captions_train.jsonl").read_text().splitlines()
    assert [json.loads(line)["url_link"] for line in lines] == [CAT, DOG]


def test_an_image_already_in_the_pool_gets_the_url_it_was_found_by(
    tmp_path: Path, png_factory: Any
) -> None:
    saved = tmp_path / "images"
    write_images(saved, png_factory, {"loose/one.png": 1, "fox.png": 1, "owl.png": 2})
    call_command("import_images", str(saved / "loose"), stdout=StringIO())
    assert Image.objects.get().source_url == ""
    rows = [{"anonymous_caption": "Night {Animal}s.", "image_urls": [FOX, OWL]}]

    _, report = _run(write_json(saved / "seed_group.json", rows), "--images-root", str(saved))

    assert report["accepted"] == 1
    assert Image.objects.count() == 2
    assert set(Image.objects.values_list("source_url", flat=True)) == {FOX, OWL}


def test_a_url_whose_file_is_on_disk_is_not_fetched(
    tmp_path: Path, png_factory: Any, image_server: str
) -> None:
    saved = tmp_path / "images"
    local = f"{image_server}/local.png"  # the server has no such path: a fetch would fail
    write_images(saved, png_factory, {f"group_0/{_md5_name(local)}": 5})
    rows = [
        {"anonymous_caption": "Mixed {Object}s.", "image_urls": [local, f"{image_server}/a.png"]}
    ]

    _, report = _run(
        write_json(saved / "seed_group.json", rows), "--images-root", str(saved), "--fetch"
    )

    assert report["accepted"] == 1
    assert Image.objects.get(source_url=local).md5 == hashlib.md5(png_factory(5)).hexdigest()


def test_the_exit_status_is_zero_only_when_every_row_imported(root: Path) -> None:
    good = {"anonymous_caption": "A {Object} twice.", "image_urls": ["img/1.png", "img/2.png"]}
    bad = {"anonymous_caption": "Lonely {Object}.", "image_urls": ["img/3.png"]}
    clean = write_json(root / "clean.json", [good])
    mixed = write_json(root / "mixed.json", [good, bad])

    call_command("import_seed_groups", str(clean), stdout=StringIO())
    with pytest.raises(CommandError, match="1 rows rejected") as refused:
        call_command("import_seed_groups", str(mixed), stdout=StringIO())
    assert refused.value.returncode == ROWS_REJECTED_EXIT == 3
    assert ImportBatch.objects.count() == 2
