"""What curation's pages show of captions, provided by the captions app: the overview's
counts (and the captions returned to the user), an image's captions, each listed group's
live captions and a group's warnings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from captions import selectors
from captions.models import Caption
from curation.models import Group, Image
from curation.selectors import GroupWarning

register = template.Library()


@register.simple_tag
def caption_counts() -> dict[str, int]:
    return selectors.caption_counts()


@register.simple_tag(takes_context=True)
def returned_count(context: dict[str, Any]) -> int:
    """How many of the signed-in user's captions were returned to them and await a revision."""
    user = context["request"].user
    return selectors.returned_count(user) if user.is_authenticated else 0


@register.inclusion_tag("captions/image_captions.html")
def image_captions(image: Image) -> dict[str, Any]:
    return {"image": image, **selectors.image_captions(image)}


@register.simple_tag
def live_captions(groups: Iterable[Group]) -> dict[int, list[Caption]]:
    return selectors.live_captions_by_group(groups)


@register.filter
def of_group(captions: dict[int, list[Caption]], group: Group) -> list[Caption]:
    return captions.get(group.pk, [])


@register.simple_tag
def caption_warnings(group: Group, members: list[Image]) -> list[GroupWarning]:
    return selectors.other_group_warnings(group, members)
