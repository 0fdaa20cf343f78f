"""Shared fixtures: a private data directory per test, users per role, service checks."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the suite must run on PostgreSQL and Redis; a missing service fails the run.
    (The second pass of `make test`, on SQLite by design, says so with RELSIM_TESTS_ON_SQLITE.)"""
    if not IN_CI:
        return
    db = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    problems = []
    on_postgres = db.startswith(("postgres://", "postgresql://")) and _reachable(db, 5432)
    on_sqlite_by_design = os.environ.get("RELSIM_TESTS_ON_SQLITE") == "1" and not db
    if not (on_postgres or on_sqlite_by_design):
        problems.append(f"PostgreSQL is required in CI (DATABASE_URL={db!r})")
    if not broker.startswith("redis://") or not _reachable(broker, 6379):
        problems.append(f"Redis is required in CI (CELERY_BROKER_URL={broker!r})")
    if problems:
        pytest.exit("; ".join(problems), returncode=3)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's own folder (config.test_settings) goes with the run."""
    run_dir = os.environ.get("RELSIM_TEST_RUN_DIR", "")
    # Under pytest-xdist, each process removes only the folder it made.
    own = os.environ.get("RELSIM_TEST_RUN_OWNER", "") == os.environ.get("PYTEST_XDIST_WORKER", "")
    if run_dir and own and Path(run_dir).name.startswith("relsim-test-"):
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Images, thumbnails, uploads and exports of a test go to its own folder."""
    root = tmp_path / "data"
    root.mkdir()
    if not request.config.pluginmanager.hasplugin("django"):
        return root  # ml/ tests can run without Django (-p no:django).
    settings = request.getfixturevalue("settings")
    settings.DATA_DIR = root
    settings.MEDIA_ROOT = root / "media"
    settings.RELSIM_IMPORT_ROOTS = [str(root / "uploads"), str(root / "imports")]
    return root


@pytest.fixture
def make_user(django_user_model: Any) -> Any:
    from core.roles import assign_role

    def make(name: str, role: str | None = None, password: str = "a-long-test-password") -> Any:
        user = django_user_model.objects.create_user(username=name, password=password)
        if role:
            assign_role(user, role)
        return user

    return make


@pytest.fixture
def annotator(make_user: Any) -> Any:
    return make_user("ann", "annotator")


@pytest.fixture
def reviewer(make_user: Any) -> Any:
    return make_user("rev", "reviewer")


@pytest.fixture
def admin_user_role(make_user: Any) -> Any:
    return make_user("boss", "admin")


@pytest.fixture
def admin_client(admin_user_role: Any) -> Any:
    """A client signed in as the admin role (pytest-django's own is a superuser)."""
    from django.test import Client

    client = Client()
    client.force_login(admin_user_role)
    return client


@pytest.fixture
def png_factory() -> Iterator[Any]:
    """Distinct small RGB PNGs on demand (bytes)."""
    import io
    import random

    from PIL import Image as PILImage
    from PIL import ImageDraw

    def make(seed: int, size: int = 64) -> bytes:
        rng = random.Random(seed)
        img = PILImage.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = rng.randrange(size - 8), rng.randrange(size - 8)
            draw.rectangle(
                (x0, y0, x0 + rng.randrange(4, 20), y0 + rng.randrange(4, 20)),
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        return buffer.getvalue()

    yield make
