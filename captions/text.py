"""Checks every caption text passes before it is stored: not empty, braces balanced."""

from __future__ import annotations

import re

MAX_CAPTION_CHARS = 1000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class CaptionTextError(ValueError):
    """The text cannot be stored as a caption; the message says why."""


def unwrap_quotes(text: str) -> str:
    """Some released captions are wrapped in double quotes; the quotes are not content."""
    text = text.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'\u201c\u201d":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == "\u201c" and text[-1] == "\u201d":
        text = text[1:-1].strip()
    return text


def check_braces(text: str) -> None:
    depth = 0
    for char in text:
        if char == "{":
            depth += 1
            if depth > 1:
                raise CaptionTextError("placeholders cannot be nested: '{' inside '{...}'")
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise CaptionTextError("unbalanced braces: '}' without a matching '{'")
    if depth:
        raise CaptionTextError("unbalanced braces: '{' without a matching '}'")
    for name in _PLACEHOLDER.findall(text):
        if not name.strip():
            raise CaptionTextError("empty placeholder '{}': name what may vary, e.g. {Object}")


def clean_caption_text(text: object) -> str:
    """Return the stored form of a caption text or raise CaptionTextError."""
    if not isinstance(text, str):
        raise CaptionTextError("the caption must be a string")
    cleaned = " ".join(unwrap_quotes(text).split())
    if not cleaned:
        raise CaptionTextError("the caption is empty")
    if len(cleaned) > MAX_CAPTION_CHARS:
        raise CaptionTextError(
            f"the caption is {len(cleaned)} characters, over the {MAX_CAPTION_CHARS} limit"
        )
    check_braces(cleaned)
    return cleaned


def placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def word_edit_distance(before: str, after: str) -> int:
    """Levenshtein distance over words: how many words were inserted, deleted or replaced."""
    old, new = before.split(), after.split()
    previous = list(range(len(new) + 1))
    for i, word in enumerate(old, start=1):
        current = [i]
        for j, other in enumerate(new, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1]
