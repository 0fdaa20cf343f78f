"""Versioned prompts of the anonymous captioner. A stored caption records the version of the
prompt that drafted it, so prompts are never edited in place: a new wording is a new version."""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "anon-caption/v1"


@dataclass(frozen=True)
class CaptionPrompt:
    """The instruction shown after the images: one wording for a single image, one for a group."""

    version: str
    single: str
    group: str  # "{count}" is replaced by the number of images

    def text(self, n_images: int) -> str:
        if n_images < 1:
            raise ValueError("a caption prompt needs at least one image")
        return self.single if n_images == 1 else self.group.replace("{count}", str(n_images))


_V1_RULES = (
    "Write a single caption that states this idea so that it would also fit other images "
    "sharing it. Wherever the concrete content could change, write a placeholder in curly "
    "braces instead of the content, for example {Object}, {Animal}, {Word}, {Character}, "
    "{Meaning} or {Color}. Reply with the caption alone: no quotes, no title, no explanation."
)

PROMPTS: dict[str, CaptionPrompt] = {
    PROMPT_VERSION: CaptionPrompt(
        version=PROMPT_VERSION,
        single=(
            "Look past what this image shows and find the idea behind it: the relation, "
            "arrangement, process, pun or analogy that would still hold if its things were "
            "swapped for other things. " + _V1_RULES
        ),
        group=(
            "These {count} images differ in what they show but share one underlying idea: a "
            "relation, arrangement, process, pun or analogy that would still hold if their "
            "things were swapped for other things. Find it. " + _V1_RULES
        ),
    ),
}


def get_prompt(version: str = PROMPT_VERSION) -> CaptionPrompt:
    """The prompt registered under `version`; ValueError naming the known ones otherwise."""
    try:
        return PROMPTS[version]
    except KeyError:
        known = ", ".join(sorted(PROMPTS))
        raise ValueError(f"unknown caption prompt version {version!r}; known: {known}") from None
