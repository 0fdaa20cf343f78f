"""manage.py create_user NAME --role ROLE: a user with one role; the password from
$RELSIM_PASSWORD or a prompt."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from core.roles import ROLES, assign_role


class Command(BaseCommand):
    help = "Create a user (or change an existing one's role and password) with one role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"].strip()
        if not name:
            raise CommandError("The user name must not be empty.")
        password = self._password()
        User = get_user_model()
        user = User.objects.filter(username=name).first() or User(username=name)
        user.email = options["email"]
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            user.set_password(password)
            user.save()
            assign_role(user, options["role"])
        self.stdout.write(f"User {name!r} has the role {options['role']}.")

    def _password(self) -> str:
        from_env = os.environ.get("RELSIM_PASSWORD")
        if from_env:
            return from_env
        if not sys.stdin.isatty():
            raise CommandError("Set RELSIM_PASSWORD or run in a terminal to be asked.")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The passwords do not match.")
        return first
