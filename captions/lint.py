"""Caption lint: what a reviewer would object to, explained, before anyone has to."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from captions.text import CaptionTextError, check_braces

_TOKEN = re.compile(r"\{[^{}]*\}|[A-Za-z][A-Za-z'-]*")
_PLACEHOLDER = re.compile(r"^\{([A-Z][A-Za-z]*)(s|es)?\}$")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" blocks saving as approved; "warning" asks for a second look
    message: str


@dataclass(frozen=True)
class Segment:
    text: str
    kind: str  # "text", "placeholder", "bad-placeholder", "leak"


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.findings


def _leak_words() -> frozenset[str]:
    # Read per call, so that a changed setting applies at once; lowered once per word list
    # (the review queue lints a hundred captions a page).
    return _lowered(tuple(settings.RELSIM_LEAK_WORDS))


@functools.lru_cache(maxsize=8)
def _lowered(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(word.lower() for word in words)


def _leak_level() -> str:
    # Read per call, so that a changed setting applies without a restart of the linter.
    level = settings.RELSIM_LEAK_LEVEL
    if level not in {"warning", "error"}:
        raise ImproperlyConfigured(f"RELSIM_LEAK_LEVEL must be 'warning' or 'error', not {level!r}")
    return str(level)


def _stem(word: str, leaks: frozenset[str]) -> str:
    lowered = word.lower()
    for suffix in ("es", "s"):
        if lowered.endswith(suffix) and lowered[: -len(suffix)] in leaks:
            return lowered[: -len(suffix)]
    return lowered


def lint_caption(text: str) -> LintResult:
    result = LintResult()
    stripped = " ".join(text.split())
    if not stripped:
        result.findings.append(Finding("error", "The caption is empty."))
        return result
    limit = settings.RELSIM_CAPTION_MAX_CHARS
    if len(stripped) > limit:
        result.findings.append(
            Finding("error", f"The caption is {len(stripped)} characters; keep it under {limit}.")
        )
    try:
        check_braces(stripped)
    except CaptionTextError as exc:
        result.findings.append(Finding("error", f"Placeholder syntax: {exc}."))
    vocabulary = set(settings.RELSIM_PLACEHOLDERS)
    leaks = _leak_words()
    leak_level = _leak_level()
    seen_placeholder = False
    position = 0
    for match in _TOKEN.finditer(stripped):
        if match.start() > position:
            result.segments.append(Segment(stripped[position : match.start()], "text"))
        token = match.group(0)
        position = match.end()
        if token.startswith("{"):
            seen_placeholder = True
            well_formed = _PLACEHOLDER.match(token)
            if not well_formed:
                result.findings.append(
                    Finding(
                        "error",
                        f"{token} is not a placeholder name like {{Object}}: "
                        "one capitalised word in braces.",
                    )
                )
                result.segments.append(Segment(token, "bad-placeholder"))
            elif well_formed.group(1) not in vocabulary:
                result.findings.append(
                    Finding(
                        "warning",
                        f"{token} is not in the placeholder vocabulary "
                        f"({', '.join(sorted(vocabulary))}).",
                    )
                )
                result.segments.append(Segment(token, "bad-placeholder"))
            else:
                result.segments.append(Segment(token, "placeholder"))
        elif _stem(token, leaks) in leaks:
            result.findings.append(
                Finding(
                    leak_level,
                    f"“{token}” names concrete content; an anonymous caption "
                    "says what varies with a placeholder such as {Object} or {Color}.",
                )
            )
            result.segments.append(Segment(token, "leak"))
        else:
            result.segments.append(Segment(token, "text"))
    if position < len(stripped):
        result.segments.append(Segment(stripped[position:], "text"))
    if not seen_placeholder:
        result.findings.append(
            Finding(
                "warning",
                "No placeholder: an anonymous caption names what may vary, e.g. {Object}.",
            )
        )
    return result
