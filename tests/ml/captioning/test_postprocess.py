from __future__ import annotations

import pytest

from ml.captioning.postprocess import brace_problems, clean_caption
from ml.captioning.prompts import PROMPT_VERSION, PROMPTS, get_prompt


def test_it_strips_wrapping_double_quotes_and_says_so() -> None:
    cleaned = clean_caption('"Curious {Animal} peering out from behind a {Object}."')
    assert cleaned.text == "Curious {Animal} peering out from behind a {Object}."
    assert "stripped wrapping quotes" in cleaned.fixes
    assert cleaned.usable


def test_it_strips_curly_and_nested_quotes() -> None:
    assert clean_caption("\u201c'A {Object} inside a {Object}.'\u201d").text == (
        "A {Object} inside a {Object}."
    )


def test_it_keeps_quotes_that_do_not_wrap_the_whole_caption() -> None:
    text = '"{Word}" written with "{Object}" shapes'
    cleaned = clean_caption(text)
    assert cleaned.text == text
    assert "stripped wrapping quotes" not in cleaned.fixes


def test_it_collapses_whitespace_and_trims_braces() -> None:
    cleaned = clean_caption("  A   {Object}\tstacked on a { Object }.  ")
    assert cleaned.text == "A {Object} stacked on a {Object}."
    assert "collapsed whitespace" in cleaned.fixes
    assert "trimmed spaces inside braces" in cleaned.fixes


def test_it_removes_a_caption_label_and_trailing_commentary() -> None:
    cleaned = clean_caption("Caption: A row of {Object}s.\nThis caption describes the image.")
    assert cleaned.text == "A row of {Object}s."
    assert cleaned.usable


def test_a_clean_caption_needs_no_fixes() -> None:
    cleaned = clean_caption("A tower of {Object}s.")
    assert cleaned.fixes == []
    assert cleaned.problems == []
    assert cleaned.placeholders == ["Object"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A {Object on a table.", "unbalanced braces: '{' without a matching '}'"),
        ("A Object} on a table.", "unbalanced braces: '}' without a matching '{'"),
        ("A {} on a table.", "empty placeholder '{}'"),
        ("A {Big {Object}} on a table.", "nested braces: '{' inside '{...}'"),
        ("A {3.5} on a table.", "placeholder {3.5} is not a name"),
    ],
)
def test_it_explains_why_braces_make_a_caption_unusable(text: str, problem: str) -> None:
    cleaned = clean_caption(text)
    assert not cleaned.usable
    assert problem in cleaned.problems


def test_an_empty_reply_is_unusable() -> None:
    cleaned = clean_caption(' "" ')
    assert cleaned.text == ""
    assert cleaned.problems == ["empty caption"]


def test_brace_problems_accepts_several_placeholders() -> None:
    assert brace_problems("{Character} spelling the {Word} in {Color}") == []


def test_every_prompt_asks_for_placeholders_and_the_caption_alone() -> None:
    for prompt in PROMPTS.values():
        for text in (prompt.text(1), prompt.text(3)):
            for name in ("{Object}", "{Word}", "{Character}", "{Meaning}", "{Color}"):
                assert name in text
            assert "caption alone" in text


def test_the_group_prompt_names_how_many_images_it_shows() -> None:
    prompt = get_prompt(PROMPT_VERSION)
    assert "These 3 images" in prompt.text(3)
    assert prompt.text(1) == prompt.single
    with pytest.raises(ValueError, match="at least one image"):
        prompt.text(0)


def test_an_unknown_prompt_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown caption prompt version"):
        get_prompt("anon-caption/v0")
