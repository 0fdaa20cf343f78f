"""The three roles (annotator, reviewer, admin) as Django groups with their permissions."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, Permission
from django.contrib.auth.models import Group as AuthGroup

ANNOTATOR = "annotator"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (ANNOTATOR, REVIEWER, ADMIN)

_ANNOTATOR_PERMS = [
    "curation.view_image",
    "curation.add_image",
    "curation.change_image",
    "curation.view_importbatch",
    "curation.view_interestlabel",
    "curation.add_interestlabel",
    "curation.change_interestlabel",
    "curation.delete_interestlabel",
    "curation.view_group",
    "curation.add_group",
    "curation.change_group",
    "curation.view_groupmember",
    "curation.add_groupmember",
    "curation.change_groupmember",
    "curation.delete_groupmember",
    "captions.view_caption",
    "captions.add_caption",
    "captions.change_caption",
    "captions.view_captionrevision",
]
_REVIEWER_PERMS = [*_ANNOTATOR_PERMS, "captions.review_caption"]
# Admins manage everything in the project's apps, plus users and jobs.
_ADMIN_APPS = ("curation", "captions", "training", "evaluation")
_ADMIN_EXTRA = ["auth.view_user", "auth.add_user", "auth.change_user", "auth.view_group"]


def _permissions(names: list[str]) -> list[Permission]:
    found: list[Permission] = []
    for name in names:
        app_label, codename = name.split(".", 1)
        found.extend(
            Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        )
    return found


def ensure_roles() -> None:
    """Create or refresh the role groups; safe to call any number of times."""
    if not Permission.objects.filter(content_type__app_label="captions").exists():
        return  # Permissions not created yet (mid-migration); post_migrate calls again.
    admin_perms = list(Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS))
    admin_perms += _permissions(_ADMIN_EXTRA)
    wanted = {
        ANNOTATOR: _permissions(_ANNOTATOR_PERMS),
        REVIEWER: _permissions(_REVIEWER_PERMS),
        ADMIN: admin_perms,
    }
    for role, perms in wanted.items():
        group, _ = AuthGroup.objects.get_or_create(name=role)
        group.permissions.set(perms)


def assign_role(user: AbstractUser, role: str) -> None:
    """Give a user exactly one role; admins are staff so they reach the admin site."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    ensure_roles()
    user.groups.set([AuthGroup.objects.get(name=role)])
    user.is_staff = role == ADMIN
    user.save(update_fields=["is_staff"])


def role_of(user: AbstractUser) -> str | None:
    names = set(user.groups.values_list("name", flat=True))
    for role in (ADMIN, REVIEWER, ANNOTATOR):
        if role in names:
            return role
    return None
