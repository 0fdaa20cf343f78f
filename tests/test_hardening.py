"""Hardening: login throttling, password rules, the Content-Security-Policy, streamed upload
limits, escaped htmx fragments and media behind a login."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F
from django.test import Client
from django.urls import reverse

from curation.intake import normalise_image
from curation.models import Group
from curation.services import group_create, image_store
from training.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password"


# --- login throttling ----------------------------------------------------------------------


def _log_in(client: Client, username: str, password: str) -> Any:
    return client.post(reverse("login"), {"username": username, "password": password})


def test_the_nth_failed_login_locks_out_and_the_right_password_waits_for_the_cool_off(
    make_user: Any,
) -> None:
    alice = make_user("alice", "annotator")
    client = Client()
    limit = django_settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        response = _log_in(client, "alice", "not-her-password")
        assert response.status_code == 200
        assert "Please enter a correct" in response.content.decode()
    locked = _log_in(client, "alice", "still-not-her-password")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed logins" in page
    assert f"After {limit} failed attempts" in page
    assert "15 minutes" in page

    refused = _log_in(client, "alice", PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session

    # The cool-off passes: every recorded attempt moves back beyond it.
    cool_off = django_settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cool_off)
    welcome = _log_in(client, "alice", PASSWORD)
    assert welcome.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_a_lockout_holds_one_user_name_from_one_address(make_user: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    make_user("alice", "annotator")
    make_user("bob", "annotator")
    here = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(2):
        _log_in(here, "alice", "wrong-password")
    assert _log_in(here, "alice", PASSWORD).status_code == 429
    assert _log_in(Client(REMOTE_ADDR="198.51.100.7"), "bob", PASSWORD).status_code == 302
    assert _log_in(Client(REMOTE_ADDR="203.0.113.9"), "alice", PASSWORD).status_code == 302


def test_a_successful_login_clears_earlier_failures(make_user: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    make_user("alice", "annotator")
    client = Client()
    _log_in(client, "alice", "wrong-password")
    assert _log_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    assert _log_in(client, "alice", "wrong-password").status_code == 200
    assert _log_in(client, "alice", PASSWORD).status_code == 302


def test_force_login_still_works_for_tests(annotator: Any) -> None:
    client = Client()
    client.force_login(annotator)
    assert client.get("/").status_code == 200


def test_the_throttle_settings_come_from_the_environment() -> None:
    from tests.test_settings import _load_settings

    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, int(s.AXES_COOLOFF_TIME.total_seconds()))"
    )
    result = _load_settings(
        {"RELSIM_LOGIN_FAILURE_LIMIT": "7", "RELSIM_LOGIN_COOLOFF_MINUTES": "2"}, "-c", script
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "120"]
    bad = _load_settings({"RELSIM_LOGIN_FAILURE_LIMIT": "0"}, "-c", script)
    assert "RELSIM_LOGIN_FAILURE_LIMIT must be at least 1" in bad.stderr


# --- password rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "password", "reason"),
    [
        ("dora", "804736291057", "entirely numeric"),
        ("margaretha", "margaretha1", "too similar to the username"),
    ],
)
def test_create_user_refuses_numeric_and_user_like_passwords(
    monkeypatch: pytest.MonkeyPatch, django_user_model: Any, name: str, password: str, reason: str
) -> None:
    monkeypatch.setenv("RELSIM_PASSWORD", password)
    with pytest.raises(CommandError, match=reason):
        call_command("create_user", name, "--role", "annotator", stdout=StringIO())
    assert not django_user_model.objects.filter(username=name).exists()


def test_the_test_and_demo_passwords_pass_the_validators(
    django_user_model: Any, tmp_path: Path
) -> None:
    import json

    for name in ("ann", "rev", "boss", "annotator", "reviewer", "admin"):
        password_validation.validate_password(PASSWORD, django_user_model(username=name))
    call_command("seed_demo", "--per-relation", "1", stdout=StringIO())
    demo = json.loads((django_settings.DATA_DIR / "demo-users.json").read_text())
    for name, password in demo.items():
        user = django_user_model.objects.get(username=name)
        password_validation.validate_password(password, user)
        assert user.check_password(password)
    with pytest.raises(ValidationError):
        password_validation.validate_password("12345678901", django_user_model(username="x"))


# --- Content-Security-Policy ---------------------------------------------------------------


def _policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_every_page_sends_a_policy_without_inline_code_or_eval(annotator: Any) -> None:
    client = Client()
    login = _policy(client.get(reverse("login")))
    client.force_login(annotator)
    pool = _policy(client.get(reverse("pool")))
    for policy in (login, pool):
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert not any("unsafe" in source for sources in policy.values() for source in sources)


def test_templates_hold_no_inline_script_style_or_event_handler() -> None:
    offenders = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = template.read_text()
        for pattern in (
            r"<script(?![^>]*\bsrc=)[^>]*>",  # an inline script
            r"<style\b",
            r"\sstyle=",
            r"\son[a-z]+=",  # onclick= and friends
            r"\shx-on",  # htmx's inline handlers need eval
            r"javascript:",
        ):
            offenders += [f"{template.name}: {m.group()}" for m in re.finditer(pattern, text)]
    assert offenders == []


def test_htmx_is_configured_not_to_evaluate_code() -> None:
    base = (ROOT / "templates" / "base.html").read_text()
    assert '"allowEval": false' in base
    assert '"includeIndicatorStyles": false' in base  # its injected <style> would be refused


# --- uploads stopped at the size limit -------------------------------------------------------


def _upload(client: Client, size: int) -> Any:
    upload = SimpleUploadedFile("batch.zip", b"z" * size, content_type="application/zip")
    return client.post(
        "/admin/training/job/import/",
        {"kind": "import_images", "upload": upload, "path": ""},
    )


@pytest.fixture
def small_uploads(settings: Any, data_dir: Path) -> Path:
    settings.RELSIM_MAX_UPLOAD_MB = 1
    # Small enough that an upload spills to a temporary file, which must not survive.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 4096
    settings.FILE_UPLOAD_TEMP_DIR = data_dir / "tmp"
    return data_dir


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_an_upload_exactly_at_the_limit_is_accepted(
    admin_user_role: Any, small_uploads: Path
) -> None:
    client = Client()
    client.force_login(admin_user_role)
    response = _upload(client, 2**20)
    assert response.status_code == 302
    job = Job.objects.get()
    assert Path(job.params["path"]).stat().st_size == 2**20
    assert _files_under(small_uploads / "tmp") == []


def test_an_upload_one_byte_past_the_limit_is_stopped_with_a_message_and_nothing_written(
    admin_user_role: Any, small_uploads: Path
) -> None:
    client = Client()
    client.force_login(admin_user_role)
    response = _upload(client, 2**20 + 1)
    assert response.status_code == 200
    assert "larger than the 1 MB limit" in response.content.decode()
    assert "nothing was saved" in response.content.decode()
    assert Job.objects.count() == 0
    assert _files_under(small_uploads / "uploads") == []
    assert _files_under(small_uploads / "tmp") == []


class _Recorder(FileUploadHandler):
    """Stands in the chain after the limit: records how many bytes reached storage."""

    seen = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        _Recorder.seen = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        _Recorder.seen += len(raw_data)

    def file_complete(self, file_size: int) -> None:
        return None


def test_no_byte_past_the_limit_reaches_the_handlers_that_store(
    admin_user_role: Any, small_uploads: Path, settings: Any
) -> None:
    settings.FILE_UPLOAD_HANDLERS = [
        "core.uploads.SizeLimitUploadHandler",
        "tests.test_hardening._Recorder",
    ]
    client = Client()
    client.force_login(admin_user_role)
    response = _upload(client, 5 * 2**20)
    assert "larger than the 1 MB limit" in response.content.decode()
    assert 0 < _Recorder.seen <= 2**20


# --- the "add to group" fragment --------------------------------------------------------------


def test_the_add_to_group_fragment_escapes_the_group_title(
    annotator: Any, png_factory: Any
) -> None:
    title = "<img src=x onerror=alert(1)>"
    image = image_store(normalised=normalise_image(png_factory(1))).image
    group = group_create(title=title, user=annotator)
    client = Client()
    client.force_login(annotator)
    response = client.post(
        reverse("group_add", args=[group.pk]), {"images": str(image.pk)}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "<img" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert Group.objects.get().members.count() == 1


# --- media behind a login ----------------------------------------------------------------------


@pytest.fixture
def media_file(data_dir: Path) -> str:
    name = default_storage.save("images/ab/picture.png", ContentFile(b"\x89PNG pixels"))
    (data_dir / "secret.txt").write_text("not for the web")
    return name


def test_media_needs_a_login_with_debug_off(media_file: str, settings: Any) -> None:
    assert settings.DEBUG is False
    response = Client().get(f"/media/{media_file}")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")


def test_a_signed_in_user_gets_media_files(media_file: str, annotator: Any) -> None:
    client = Client()
    client.force_login(annotator)
    response = client.get(f"/media/{media_file}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x89PNG pixels"
    assert response["Content-Type"] == "image/png"
    assert "private" in response["Cache-Control"]
    assert client.get("/media/images/ab/missing.png").status_code == 404
    # "../" reaches the view and is resolved, inside the folder as well as outside it.
    assert client.get(f"/media/images/../{media_file}").status_code == 200


@pytest.mark.parametrize(
    "path", ["../secret.txt", "images/../../secret.txt", "%2e%2e/secret.txt", "images/%00"]
)
def test_media_paths_cannot_leave_the_media_folder(
    media_file: str, annotator: Any, path: str
) -> None:
    client = Client()
    client.force_login(annotator)
    response = client.get(f"/media/{path}")
    assert response.status_code == 404
    assert b"not for the web" not in b"".join(getattr(response, "streaming_content", [b""]))


def test_a_symlink_out_of_the_media_folder_is_not_followed(
    media_file: str, annotator: Any, data_dir: Path
) -> None:
    (data_dir / "media" / "images" / "escape.txt").symlink_to(data_dir / "secret.txt")
    client = Client()
    client.force_login(annotator)
    assert client.get("/media/images/escape.txt").status_code == 404
