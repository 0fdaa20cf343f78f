"""Importing the released seed_group.json: good rows import, bad rows are reported."""

from __future__ import annotations

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

from captions.models import Caption, CaptionRevision
from curation.models import Group, Image
from tests.captions.helpers import write_images, write_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(tmp_path: Path, png_factory: Any) -> Path:
    folder = tmp_path / "release"
    write_images(folder, png_factory, {f"img/{n}.png": n for n in range(1, 9)})
    (folder / "img" / "page.png").write_text(
        "<!doctype html><html><body>not an image</body></html>"
    )
    (tmp_path / "outside.png").write_bytes(png_factory(99))
    return folder


def _run(file: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = StringIO()
    report = file.parent / "report.json"
    call_command("import_seed_groups", str(file), *args, "--report", str(report), stdout=out)
    return out.getvalue(), json.loads(report.read_text())


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
    out, report = _run(write_json(root / "seed_group.json", rows), "--images-root", str(root))

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
def image_server(png_factory: Any) -> Iterator[str]:
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
    _, without = _run(file, "--images-root", str(root))
    assert without["accepted"] == 0 and len(without["rejected"]) == 2
    _, with_fetch = _run(file, "--images-root", str(root), "--fetch")
    assert with_fetch["accepted"] == 1
    assert "HTTP 404" in with_fetch["rejected"][0]["reason"]
    fetched = Image.objects.get(source_url=f"{image_server}/a.png")
    assert fetched.groups.get().captions.get().text == "Fetched {Object}s."
