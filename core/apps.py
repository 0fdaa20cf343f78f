"""The core app: no models of its own; it keeps the role groups in step after migrations."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _refresh_roles(sender: AppConfig, **kwargs: Any) -> None:
    from core.roles import ensure_roles

    ensure_roles()


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"

    def ready(self) -> None:
        post_migrate.connect(_refresh_roles, dispatch_uid="relsim_refresh_roles")
