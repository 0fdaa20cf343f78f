"""manage.py seed_demo: demo users (one per role) and a small synthetic relational data set
with groups, approved captions, drafts to review and interest labels."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from captions.importers import dataset_import
from captions.models import Caption
from captions.services import caption_create
from core.roles import ADMIN, ANNOTATOR, REVIEWER, assign_role
from curation.models import Group, Image
from curation.services import group_create, interest_label_set
from ml import synthetic

DEMO_USERS = {"annotator": ANNOTATOR, "reviewer": REVIEWER, "admin": ADMIN}


def credentials_file() -> Path:
    return settings.DATA_DIR / "demo-users.json"


def _valid_password(user: Any) -> str:
    """A random password that passes the same validators as anyone's (a draw can be all
    digits or close to the user name, however rarely)."""
    while True:
        password = secrets.token_urlsafe(9)
        try:
            password_validation.validate_password(password, user)
        except ValidationError:
            continue
        return password


class Command(BaseCommand):
    help = (
        "Create demo users and a small synthetic data set (skipped if already seeded with --once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Do nothing if already seeded.")
        parser.add_argument("--per-relation", type=int, default=6)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"] and credentials_file().exists():
            self._print_users(json.loads(credentials_file().read_text()))
            return
        users = self._users()
        self._data(options["per_relation"], options["seed"])
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        credentials_file().write_text(json.dumps(users, indent=2) + "\n")
        credentials_file().chmod(0o600)
        self._print_users(users)

    def _users(self) -> dict[str, str]:
        passwords = {}
        User = get_user_model()
        for name, role in DEMO_USERS.items():
            user = User.objects.filter(username=name).first() or User(username=name)
            password = _valid_password(user)
            user.set_password(password)
            user.save()
            assign_role(user, role)
            passwords[name] = password
        return passwords

    def _data(self, per_relation: int, seed: int) -> None:
        work = Path(tempfile.mkdtemp(prefix="relsim-demo-"))
        try:
            synthetic.generate_dataset(work, seed=seed, per_relation=per_relation, size=224)
            report = dataset_import(folder=work)
            self.stdout.write(f"Demo data set: {report.summary()}")
            # The same images as a plain folder under an import root, to try an import job.
            samples = settings.DATA_DIR / "imports" / "demo-images"
            samples.mkdir(parents=True, exist_ok=True)
            for png in sorted((work / "images").glob("*.png"))[:12]:
                shutil.copy(png, samples / png.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._work_in_progress()

    @transaction.atomic
    def _work_in_progress(self) -> None:
        """Some unfinished work so every page has something to show."""
        User = get_user_model()
        annotator = User.objects.get(username="annotator")
        reviewer = User.objects.get(username="reviewer")
        images = list(Image.objects.order_by("id")[:24])
        for index, image in enumerate(images[:16]):
            interest_label_set(image=image, annotator=annotator, interesting=index % 3 != 0)
        for index, image in enumerate(images[:6]):
            interest_label_set(image=image, annotator=reviewer, interesting=index % 2 == 0)
        if len(images) >= 3 and not Group.objects.filter(title="Demo: draft group").exists():
            group = group_create(title="Demo: draft group", images=images[:3], user=annotator)
            caption_create(
                text="Several {Object}s arranged around a central {Object}.",
                group=group,
                author=annotator,
                status=Caption.Status.DRAFT,
            )

    def _print_users(self, users: dict[str, str]) -> None:
        self.stdout.write("Demo users (user name / password):")
        for name, password in users.items():
            self.stdout.write(f"  {name:<10} {password}   role: {DEMO_USERS.get(name, '?')}")
