"""Clean a drafted anonymous caption and say whether it can be used: wrapping quotes and labels
stripped, whitespace collapsed, placeholder braces checked. Every change and problem is named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Quote pairs a model (or a released caption) may wrap a caption in.
_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`"))
# A leading label such as "Caption:" that some models put before the answer.
_LABEL = re.compile(r"^(?:anonymous\s+)?caption\s*:\s*", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 _'-]*$")


@dataclass(frozen=True)
class CleanedCaption:
    """The cleaned text, what was changed to get it, and why it is unusable (if it is)."""

    text: str
    fixes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems


def _strip_wrapping_quotes(text: str) -> tuple[str, bool]:
    stripped = False
    changed = True
    while changed:
        changed = False
        for opening, closing in _QUOTE_PAIRS:
            if len(text) >= 2 and text.startswith(opening) and text.endswith(closing):
                inner = text[1:-1]
                # "a" said "b" is not wrapped: the inner text must not reopen the same quote.
                if opening == closing and opening in inner:
                    continue
                text = inner.strip()
                stripped = changed = True
    return text, stripped


def brace_problems(text: str) -> list[str]:
    """Why the placeholders of `text` are malformed; empty when they are fine."""
    problems: list[str] = []
    depth = 0
    for char in text:
        if char == "{":
            depth += 1
            if depth == 2:
                problems.append("nested braces: '{' inside '{...}'")
        elif char == "}":
            depth -= 1
            if depth < 0:
                problems.append("unbalanced braces: '}' without a matching '{'")
                depth = 0
    if depth > 0:
        problems.append("unbalanced braces: '{' without a matching '}'")
    for name in _PLACEHOLDER.findall(text):
        if not name.strip():
            problems.append("empty placeholder '{}'")
        elif not _PLACEHOLDER_NAME.match(name.strip()):
            problems.append(f"placeholder {{{name}}} is not a name")
    return list(dict.fromkeys(problems))


def clean_caption(raw: str) -> CleanedCaption:
    """Normalise a drafted caption; `usable` is False when it still cannot be stored."""
    fixes: list[str] = []
    text = raw.strip()
    if text != raw:
        fixes.append("trimmed surrounding whitespace")
    # Only the first line: anything after a line break is commentary, not the caption.
    first, _, rest = text.partition("\n")
    if rest.strip():
        text = first.strip()
        fixes.append("dropped text after the first line")
    labelled = _LABEL.sub("", text, count=1)
    if labelled != text:
        text = labelled.strip()
        fixes.append("removed a leading 'Caption:' label")
    text, unquoted = _strip_wrapping_quotes(text)
    if unquoted:
        fixes.append("stripped wrapping quotes")
    collapsed = " ".join(text.split())
    if collapsed != text:
        text = collapsed
        fixes.append("collapsed whitespace")
    # Inside a placeholder, spaces next to the braces are never meant: "{ Object }".
    tightened = _PLACEHOLDER.sub(lambda m: "{" + m.group(1).strip() + "}", text)
    if tightened != text:
        text = tightened
        fixes.append("trimmed spaces inside braces")

    problems: list[str] = []
    if not text:
        problems.append("empty caption")
    problems.extend(brace_problems(text))
    names = [name for name in _PLACEHOLDER.findall(text) if name]
    return CleanedCaption(text=text, fixes=fixes, problems=problems, placeholders=names)


def unwrap_caption(text: str) -> str:
    """The cleaned text of a stored caption (released ones may be quoted), usable or not."""
    return clean_caption(text).text
