"""What captions do when curation changes something under them."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from captions.services import captions_members_changed
from curation.signals import group_members_changed


@receiver(group_members_changed, dispatch_uid="captions_members_changed")
def _send_back_to_review(
    *, group: Any, added: list[int], removed: list[int], actor: Any, **_: Any
) -> None:
    captions_members_changed(group=group, added=added, removed=removed, actor=actor)
