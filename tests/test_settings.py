"""Settings come from the environment and fail loudly, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

ROOT = Path(__file__).resolve().parent.parent


def _load_settings(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DEBUG",
            "SECRET_KEY",
            # Set by the browser tests' conftest for Playwright; never part of a deployment.
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    clean.update(extra)
    cmd = args or (
        "-c",
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'])",
    )
    return subprocess.run(
        [sys.executable, *cmd],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("RELSIM_MAX_UPLOAD_MB", "lots", "RELSIM_MAX_UPLOAD_MB must be an integer"),
        ("RELSIM_GROUP_MAX_SIZE", "1", "RELSIM_GROUP_MAX_SIZE must be at least 2"),
        ("DATABASE_URL", "mysql://x@localhost/db", "DATABASE_URL must be a URL"),
        ("CELERY_BROKER_URL", "sqs://queue", "CELERY_BROKER_URL must be a URL"),
    ],
)
def test_it_fails_loudly_on_a_bad_value(variable: str, value: str, expected: str) -> None:
    result = _load_settings({variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert expected in result.stderr


def test_it_needs_a_secret_key_when_debug_is_off() -> None:
    result = _load_settings({"DEBUG": "0"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_defaults_to_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    result = _load_settings({"RELSIM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


def test_it_uses_postgresql_when_database_url_says_so(tmp_path: Path) -> None:
    result = _load_settings({"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"


def test_deploy_check_is_clean_with_debug_off_and_real_values(tmp_path: Path) -> None:
    result = _load_settings(
        {
            "DEBUG": "0",
            "SECRET_KEY": "k" * 20 + "-a-long-and-random-looking-secret-value-9f8e7d6c5b4a",
            "ALLOWED_HOSTS": "relsim.example.org",
            "RELSIM_DATA_DIR": str(tmp_path),
        },
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_env_helpers_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "12x")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER"):
        env.env_int("SOME_NUMBER", 1)
    monkeypatch.setenv("SOME_FLAG", "yes")
    assert env.env_bool("SOME_FLAG", False) is True
    monkeypatch.setenv("SOME_LIST", "a, b,,c")
    assert env.env_list("SOME_LIST", []) == ["a", "b", "c"]
    monkeypatch.delenv("MISSING_ONE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="MISSING_ONE must be set"):
        env.env_str("MISSING_ONE")
