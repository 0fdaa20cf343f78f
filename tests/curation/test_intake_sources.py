"""iter_source: folders, zips, tars and single files, read safely and never extracted."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from curation.intake import (
    ImageRejected,
    IntakeLimits,
    SkippedEntry,
    SourceError,
    SourceFile,
    iter_source,
)
from tests.curation import awkward_files as aw


def _split(entries):
    files = {e.name: e for e in entries if isinstance(e, SourceFile)}
    skipped = {e.name: e.reason for e in entries if isinstance(e, SkippedEntry)}
    return files, skipped


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, data)
    return path


def _tree(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder of this test's own, so that nothing else writes beside the archives."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# --- paths that are no source -----------------------------------------------------------


def test_a_missing_path_raises_a_source_error_at_once(work):
    with pytest.raises(SourceError, match="no such file or folder"):
        iter_source(work / "nowhere")


def test_a_fifo_given_as_the_source_is_refused(work):
    fifo = work / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="not a regular file or folder"):
        iter_source(fifo)


# --- folders ----------------------------------------------------------------------------


def test_a_folder_is_walked_recursively_in_name_order(work):
    for name in ("b.png", "a/z.png", "a/c/d.png", "c.jpg"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(name.encode())
    entries = list(iter_source(work))
    assert [e.name for e in entries] == ["a/c/d.png", "a/z.png", "b.png", "c.jpg"]
    assert all(isinstance(e, SourceFile) for e in entries)
    assert entries[0].read() == b"a/c/d.png"
    assert entries[0].size == len(b"a/c/d.png")


def test_a_folder_reports_os_junk_once_per_junk_folder(work):
    for name in (".DS_Store", "x/Thumbs.db", "x/._a.png", "__MACOSX/x/._a.png", ".git/HEAD"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(b"junk")
    files, skipped = _split(list(iter_source(work)))
    assert files == {}
    assert skipped == {
        ".DS_Store": "OS junk",
        ".git/": "OS junk",
        "__MACOSX/": "OS junk",
        "x/._a.png": "OS junk",
        "x/Thumbs.db": "OS junk",
    }


def test_symlinks_are_not_followed_out_of_the_folder(work):
    outside = work / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    root = work / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.png").write_bytes(b"real")
    (root / "escape.png").symlink_to(outside / "secret.png")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside.png").symlink_to(root / "sub" / "real.png")
    (root / "inside_dir").symlink_to(root / "sub")
    (root / "dangling.png").symlink_to(root / "gone.png")
    files, skipped = _split(list(iter_source(root)))
    assert skipped == {
        "dangling.png": "broken symlink",
        "escape.png": "symlink points outside the folder",
        "escape_dir": "symlink points outside the folder",
        "inside_dir": "symlinked folder not followed",
    }
    assert sorted(files) == ["inside.png", "sub/real.png"]
    assert files["inside.png"].read() == b"real"


def test_a_fifo_inside_a_folder_is_skipped_rather_than_read(work):
    os.mkfifo(work / "pipe.png")
    _, skipped = _split(list(iter_source(work)))
    assert skipped == {"pipe.png": "not a regular file (device, FIFO or socket)"}


def test_a_file_over_the_cap_is_skipped_by_its_size(work):
    (work / "big.png").write_bytes(b"x" * 2001)
    (work / "fits.png").write_bytes(b"x" * 2000)
    files, skipped = _split(list(iter_source(work, limits=IntakeLimits(max_bytes=2000))))
    assert list(files) == ["fits.png"]
    assert skipped == {"big.png": "file is 2001 bytes, over the 2000 byte cap"}


def test_a_file_that_grows_after_listing_is_read_no_further_than_the_cap(work):
    path = work / "growing.png"
    path.write_bytes(b"x" * 10)
    (entry,) = iter_source(work, limits=IntakeLimits(max_bytes=100))
    path.write_bytes(b"x" * 10_000)
    assert len(entry.read()) == 101


def test_a_file_that_vanished_is_a_rejection_not_a_crash(work):
    path = work / "gone.png"
    path.write_bytes(b"x")
    (entry,) = iter_source(work)
    path.unlink()
    with pytest.raises(ImageRejected, match="cannot read file"):
        entry.read()


def test_a_single_file_is_its_own_source(work):
    path = work / "photo.jpg"
    path.write_bytes(b"bytes")
    (entry,) = iter_source(path)
    assert (entry.name, entry.size, entry.read()) == ("photo.jpg", 5, b"bytes")


# --- zip --------------------------------------------------------------------------------


def test_a_zip_skips_escaping_names_and_junk_and_reads_the_rest(work):
    archive = _zip(
        work / "in.zip",
        {
            "../x.png": b"1",
            "/abs.png": b"2",
            "C:\\win.png": b"3",
            "a/../../up.png": b"4",
            "__MACOSX/._a.png": b"5",
            ".DS_Store": b"6",
            "dir/": b"",
            "dir/b.png": b"7",
            "./a.png": b"8",
        },
    )
    files, skipped = _split(list(iter_source(archive)))
    assert skipped == {
        "../x.png": "unsafe path (escapes with ..)",
        "/abs.png": "unsafe path (absolute)",
        "C:\\win.png": "unsafe path (drive letter)",
        "a/../../up.png": "unsafe path (escapes with ..)",
        "__MACOSX/._a.png": "OS junk",
        ".DS_Store": "OS junk",
    }
    assert list(files) == ["a.png", "dir/b.png"]
    assert files["dir/b.png"].read() == b"7"
    assert _tree(work) == [Path("in.zip")]


def test_a_zip_symlink_member_is_skipped(work):
    path = work / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (0o120777) << 16
        archive.writestr(info, "/etc/passwd")
    assert list(iter_source(path)) == [SkippedEntry("link.png", "symlink member not followed")]


def test_a_zip_member_over_the_cap_is_skipped_without_reading(work):
    archive = _zip(work / "in.zip", {"big.png": b"x" * 5000, "ok.png": b"y" * 10})
    files, skipped = _split(list(iter_source(archive, limits=IntakeLimits(max_bytes=4000))))
    assert list(files) == ["ok.png"]
    assert skipped == {"big.png": "member is 5000 bytes, over the 4000 byte cap"}


def test_a_member_that_shrank_suspiciously_well_is_skipped_as_a_likely_bomb(work):
    archive = _zip(work / "bomb.zip", {"bomb.png": bytes(3 * 2**20)})
    (entry,) = iter_source(archive)
    assert isinstance(entry, SkippedEntry)
    assert "compression ratio" in entry.reason


def test_a_member_that_lies_about_its_size_never_yields_more_than_declared(work):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("liar.png", bytes(range(256)) * 20)
    raw = bytearray(buffer.getvalue())
    # Claim 100 bytes in both the local header and the central directory.
    struct.pack_into("<I", raw, raw.find(b"PK\x03\x04") + 22, 100)
    struct.pack_into("<I", raw, raw.find(b"PK\x01\x02") + 24, 100)
    path = work / "liar.zip"
    path.write_bytes(bytes(raw))
    (entry,) = iter_source(path)
    assert entry.size == 100
    with pytest.raises(ImageRejected, match="corrupt archive member"):
        entry.read()


def test_a_member_with_damaged_data_is_a_rejection(work):
    archive = _zip(work / "in.zip", {"a.png": aw.rgb_png()}, zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    raw[100] ^= 0xFF
    archive.write_bytes(bytes(raw))
    (entry,) = iter_source(archive)
    with pytest.raises(ImageRejected, match="corrupt archive member"):
        entry.read()


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_truncated_zip_is_a_source_error(work, keep):
    aw.write_awkward_zip(work / "whole.zip")
    whole = (work / "whole.zip").read_bytes()
    cut = work / "cut.zip"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(SourceError, match="corrupt or truncated zip archive"):
        list(iter_source(cut))


def test_random_bytes_named_zip_are_a_source_error(work):
    path = work / "fake.zip"
    path.write_bytes(b"not a zip at all" * 100)
    with pytest.raises(SourceError):
        list(iter_source(path))


def test_zip_members_can_be_read_after_the_listing_is_complete(work):
    archive = _zip(work / "in.zip", {"a.png": b"A", "b.png": b"B"})
    entries = list(iter_source(archive))
    assert [e.read() for e in reversed(entries)] == [b"B", b"A"]


# --- tar --------------------------------------------------------------------------------


def test_tar_links_devices_and_escaping_names_are_skipped(work):
    expected = aw.write_awkward_tar(work / "in.tar")
    files, skipped = _split(list(iter_source(work / "in.tar")))
    assert skipped["links/passwd.png"] == "symlink member not followed"
    assert skipped["links/hard.png"] == "hard link member not followed"
    assert skipped["links/device.png"] == "not a regular file (device, FIFO or socket)"
    assert skipped["../x.png"] == "unsafe path (escapes with ..)"
    assert skipped["/abs.png"] == "unsafe path (absolute)"
    assert files["ok/rgb.png"].read() == aw.rgb_png()
    assert set(files) | set(skipped) == set(expected)
    assert _tree(work) == [Path("in.tar")]


@pytest.mark.parametrize("name", ["in.tar.gz", "in.tgz"])
def test_a_compressed_tar_is_read_and_readable_after_listing(work, name):
    path = work / name
    with tarfile.open(path, "w:gz") as archive:
        for member, data in (("b.png", b"B"), ("a.png", b"A")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    entries = list(iter_source(path))
    # Archive order, not name order: sorting would make gzip decompress again per member.
    assert [e.name for e in entries] == ["b.png", "a.png"]
    assert [e.read() for e in entries] == [b"B", b"A"]


def test_a_tar_member_over_the_cap_is_skipped(work):
    path = work / "in.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("big.png")
        info.size = 3000
        archive.addfile(info, io.BytesIO(b"z" * 3000))
    assert list(iter_source(path, limits=IntakeLimits(max_bytes=1000))) == [
        SkippedEntry("big.png", "member is 3000 bytes, over the 1000 byte cap")
    ]


@pytest.mark.parametrize("name", ["in.tar", "in.tgz"])
def test_a_truncated_tar_fails_before_yielding_anything(work, name):
    aw.write_awkward_tar(work / name)
    whole = (work / name).read_bytes()
    cut = work / f"cut-{name}"
    cut.write_bytes(whole[: len(whole) // 2])
    entries = iter_source(cut)
    with pytest.raises(SourceError, match="corrupt or truncated tar archive"):
        next(entries)


def test_random_bytes_named_tgz_are_a_source_error(work):
    path = work / "fake.tgz"
    path.write_bytes(b"\x1f\x8b" + b"nonsense" * 50)
    with pytest.raises(SourceError):
        list(iter_source(path))
