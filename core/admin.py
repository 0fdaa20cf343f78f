"""The admin site's user and group pages, with chosen ids checked before a query is built:
Django's many-to-many choice field passes a number past 64 bits to the database, which
SQLite answers with an error (a server error for the admin) instead of finding nothing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db.models import ManyToManyField
from django.http import HttpRequest

from core.ids import parse_id


class IdChoices(forms.ModelMultipleChoiceField[Any]):
    """Choices by id, each one checked to be an id before the database is asked."""

    def clean(self, value: Any) -> Any:
        for chosen in value if isinstance(value, list | tuple) else []:
            if parse_id(str(chosen)) is None:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": chosen},
                )
        return super().clean(value)


class IdCheckedChoices(admin.ModelAdmin[Any]):
    def formfield_for_manytomany(
        self,
        db_field: ManyToManyField[Any, Any],
        request: HttpRequest | None = None,
        **kwargs: Any,
    ) -> forms.ModelMultipleChoiceField[Any] | None:
        kwargs.setdefault("form_class", IdChoices)
        assert request is not None  # the admin always passes the request
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class CheckedUserAdmin(IdCheckedChoices, UserAdmin[User]):
    pass


class CheckedGroupAdmin(IdCheckedChoices, GroupAdmin):
    pass


admin.site.unregister(User)
admin.site.unregister(Group)
admin.site.register(User, CheckedUserAdmin)
admin.site.register(Group, CheckedGroupAdmin)
