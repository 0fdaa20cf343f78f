"""The awkward files, read through iter_source and normalise_image, end as each expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.intake import ImageRejected, SkippedEntry, iter_source, normalise_image
from tests.curation import awkward_files as aw


def _outcomes(source: Path) -> dict[str, str]:
    """name -> "accept", or the reason it was skipped or rejected."""
    outcomes: dict[str, str] = {}
    for entry in iter_source(source):
        assert entry.name not in outcomes, f"{entry.name} listed twice"
        if isinstance(entry, SkippedEntry):
            outcomes[entry.name] = entry.reason
            continue
        try:
            normalise_image(entry.read())
        except ImageRejected as exc:
            outcomes[entry.name] = exc.reason
        else:
            outcomes[entry.name] = aw.ACCEPT
    return outcomes


def _assert_matches(outcomes: dict[str, str], expected: dict[str, str]) -> None:
    assert set(outcomes) == set(expected)
    wrong = {
        name: (want, outcomes[name])
        for name, want in expected.items()
        if not (outcomes[name] == aw.ACCEPT if want == aw.ACCEPT else want in outcomes[name])
    }
    assert wrong == {}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_the_awkward_folder_ends_as_expected(work):
    expected = aw.write_awkward_folder(work / "awkward")
    _assert_matches(_outcomes(work / "awkward"), expected)


def test_the_awkward_zip_ends_as_expected(work):
    expected = aw.write_awkward_zip(work / "awkward.zip")
    _assert_matches(_outcomes(work / "awkward.zip"), expected)


@pytest.mark.parametrize("name", ["awkward.tar", "awkward.tar.gz"])
def test_the_awkward_tar_ends_as_expected(work, name):
    expected = aw.write_awkward_tar(work / name)
    _assert_matches(_outcomes(work / name), expected)
