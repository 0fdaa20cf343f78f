"""Every page and action x every role -> the expected answer. The rule table is checked
against the URL configuration, so a new page without a rule fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from captions.models import Caption
from captions.services import caption_create
from curation.models import Group, Image
from curation.services import group_create
from training.models import Job

ROLES = ("anonymous", "annotator", "reviewer", "admin")
OPEN = {"anonymous": "login", "annotator": 200, "reviewer": 200, "admin": 200}
ACT = {"anonymous": "login", "annotator": 302, "reviewer": 302, "admin": 302}
REVIEW_PAGE = {"anonymous": "login", "annotator": 403, "reviewer": 200, "admin": 200}
REVIEW_ACT = {"anonymous": "login", "annotator": 403, "reviewer": 302, "admin": 302}
ADMIN_PAGE = {"anonymous": "login", "annotator": 403, "reviewer": 403, "admin": 200}

# name -> (method, url kwargs keys, POST data, expected per role)
RULES: dict[str, tuple[str, tuple[str, ...], dict[str, str], dict[str, Any]]] = {
    "home": ("get", (), {}, OPEN),
    "pool": ("get", (), {}, OPEN),
    "image_detail": ("get", ("image_id",), {}, OPEN),
    "image_label": ("post", ("image_id",), {"interesting": "yes"}, ACT),
    "label_queue": ("get", (), {}, OPEN),
    "label_submit": ("post", (), {"image": "IMAGE", "answer": "no"}, ACT),
    "label_undo": ("post", (), {}, ACT),
    "agreement": ("get", (), {}, OPEN),
    "group_list": ("get", (), {}, OPEN),
    "group_create": ("post", (), {"title": "new", "split": "train"}, ACT),
    "group_detail": ("get", ("group_id",), {}, OPEN),
    "group_update": ("post", ("group_id",), {"title": "t", "split": "test"}, ACT),
    "group_state": ("post", ("group_id",), {"state": "ready"}, ACT),
    "group_add": ("post", ("group_id",), {"images": "IMAGE"}, ACT),
    "group_remove": ("post", ("group_id", "image_id"), {}, ACT),
    "group_reorder": ("post", ("group_id",), {"order": "ORDER"}, ACT),
    "group_negative": ("post", ("group_id", "image_id"), {"negative": "1"}, ACT),
    "group_similar": ("get", ("group_id",), {}, OPEN),
    "group_set_current": ("post", ("group_id",), {}, ACT),
    "edit_group_caption": ("get", ("group_id",), {}, OPEN),
    "edit_image_caption": ("get", ("image_id",), {}, OPEN),
    "caption_lint": ("post", (), {"text": "A {Object}."}, OPEN),
    "caption_create": ("post", (), {"text": "A {Object}.", "image": "IMAGE"}, ACT),
    "caption_save": ("post", ("caption_id",), {"text": "Two {Object}s.", "version": "1"}, ACT),
    "caption_presence": ("post", ("caption_id",), {}, OPEN),
    "review_queue": ("get", (), {}, REVIEW_PAGE),
    "review_detail": ("get", ("caption_id",), {}, REVIEW_PAGE),
    "review_approve": ("post", ("caption_id",), {"version": "1"}, REVIEW_ACT),
    "review_reject": ("post", ("caption_id",), {"version": "1", "reason": "too-vague"}, REVIEW_ACT),
    "review_bulk_approve": ("post", (), {"captions": "CAPTION"}, REVIEW_PAGE),
    "export": ("get", (), {}, ADMIN_PAGE),
    "job_detail": ("get", ("job_id",), {}, ADMIN_PAGE),
    "export_download": ("get", ("job_id",), {}, ADMIN_PAGE),
}
# Served by Django itself, with their own rules.
EXEMPT = {"login", "logout"}


def _project_url_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.app_name == "admin":
                    continue
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and pattern.name:
                names.add(pattern.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_page_has_a_permission_rule() -> None:
    names = _project_url_names() - EXEMPT
    assert names - set(RULES) == set(), "pages without a rule in RULES"
    assert set(RULES) - names == set(), "rules for pages that no longer exist"


@pytest.fixture
def world(db: Any, make_user: Any, png_factory: Any, data_dir: Path) -> dict[str, Any]:
    from django.core.files.base import ContentFile

    from curation.intake import normalise_image
    from curation.services import image_store

    author = make_user("author", "annotator")
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(3)]
    group = group_create(title="g", images=images[:2])
    caption = caption_create(text="A {Object} beside a {Object}.", group=group, author=author)
    exports = data_dir / "exports"
    exports.mkdir()
    archive = exports / "x.zip"
    archive.write_bytes(ContentFile(b"PK").read())
    job = Job.objects.create(
        kind=Job.Kind.EXPORT_DATASET, status=Job.Status.SUCCEEDED, artifacts={"path": str(archive)}
    )
    return {"images": images, "group": group, "caption": caption, "job": job}


def _url_and_data(name: str, world: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    method, keys, data, _ = RULES[name]
    values = {
        "image_id": world["images"][0].pk,
        "group_id": world["group"].pk,
        "caption_id": world["caption"].pk,
        "job_id": world["job"].pk,
    }
    url = reverse(name, kwargs={key: values[key] for key in keys})
    members = ",".join(str(i.pk) for i in reversed(world["images"][:2]))
    filled = {
        key: {
            "IMAGE": str(world["images"][2].pk),
            "ORDER": members,
            "CAPTION": str(world["caption"].pk),
        }.get(value, value)
        for key, value in data.items()
    }
    return method, url, filled


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_each_role_gets_the_expected_answer(
    name: str, role: str, world: dict[str, Any], make_user: Any
) -> None:
    client = Client()
    if role != "anonymous":
        client.force_login(make_user(f"u-{role}", role))
    method, url, data = _url_and_data(name, world)
    response = getattr(client, method)(url, data)
    expected = RULES[name][3][role]
    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == expected, (name, role, response.content[:300])
        if expected == 302:
            assert not response["Location"].startswith(reverse("login"))


def test_a_forbidden_page_says_why(world: dict[str, Any], annotator: Any) -> None:
    client = Client()
    client.force_login(annotator)
    response = client.get(reverse("review_queue"))
    assert response.status_code == 403
    assert b"Your role does not give access" in response.content


def test_navigation_shows_what_the_role_may_do(
    world: dict[str, Any], annotator: Any, admin_user_role: Any
) -> None:
    client = Client()
    client.force_login(annotator)
    page = client.get("/").content.decode()
    assert reverse("label_queue") in page and reverse("review_queue") not in page
    assert reverse("export") not in page
    client.force_login(admin_user_role)
    page = client.get("/").content.decode()
    assert reverse("review_queue") in page and reverse("export") in page


def test_images_and_groups_exist_in_the_world(world: dict[str, Any]) -> None:
    assert Image.objects.count() == 3
    assert Group.objects.count() == 1
    assert Caption.objects.get().status == Caption.Status.DRAFT
