"""seed_demo: users per role and a synthetic data set that the pages can show."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from captions.models import Caption
from core.roles import role_of
from curation.models import Group, Image, InterestLabel

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_users_and_a_relational_data_set_once(data_dir: Path) -> None:
    out = StringIO()
    call_command("seed_demo", "--once", "--per-relation", "2", stdout=out)
    users = json.loads((data_dir / "demo-users.json").read_text())
    User: Any = get_user_model()
    for name, role in {"annotator": "annotator", "reviewer": "reviewer", "admin": "admin"}.items():
        user = User.objects.get(username=name)
        assert role_of(user) == role
        assert user.check_password(users[name])
        assert users[name] in out.getvalue()
    assert Group.objects.filter(captions__status=Caption.Status.APPROVED).count() >= 8
    assert Caption.objects.filter(status=Caption.Status.DRAFT).exists()
    assert InterestLabel.objects.exists()
    assert any((data_dir / "imports" / "demo-images").iterdir())
    counts = (Image.objects.count(), Group.objects.count(), Caption.objects.count())

    again = StringIO()
    call_command("seed_demo", "--once", stdout=again)
    assert (Image.objects.count(), Group.objects.count(), Caption.objects.count()) == counts
    assert users["admin"] in again.getvalue()
