"""The caption lint's leak words: common shapes are caught, and leaks warn or block by setting."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from captions.lint import lint_caption
from tests.test_settings import _load_settings


def _leaks(text: str) -> list[str]:
    return [s.text for s in lint_caption(text).segments if s.kind == "leak"]


@pytest.mark.parametrize(
    "word",
    [
        "pentagon",
        "hexagon",
        "octagon",
        "oval",
        "rectangle",
        "diamond",
        "heart",
        "arrow",
        "cube",
        "sphere",
        "cone",
        "cylinder",
        "pyramid",
    ],
)
def test_it_flags_common_shape_words_as_leaks(word: str) -> None:
    assert _leaks(f"A {{Object}} drawn inside a {word}") == [word]


def test_it_flags_plural_shape_words_too() -> None:
    assert _leaks("Two {Object}s stacked on three cubes beside the pyramids") == [
        "cubes",
        "pyramids",
    ]


def test_a_leak_is_a_warning_by_default() -> None:
    result = lint_caption("A {Object} on a hexagon")
    assert [f.level for f in result.findings] == ["warning"]
    assert result.errors == []


def test_a_leak_is_an_error_when_the_level_says_so(settings: Any) -> None:
    settings.RELSIM_LEAK_LEVEL = "error"
    result = lint_caption("A {Object} on a hexagon")
    assert len(result.errors) == 1
    assert "hexagon" in result.errors[0].message
    assert result.warnings == []


def test_the_level_leaves_other_warnings_alone(settings: Any) -> None:
    settings.RELSIM_LEAK_LEVEL = "error"
    result = lint_caption("Something sits on a sphere")
    assert [f.level for f in result.findings] == ["error", "warning"]
    assert "No placeholder" in result.warnings[0].message


def test_it_refuses_an_unknown_level_at_lint_time(settings: Any) -> None:
    settings.RELSIM_LEAK_LEVEL = "loud"
    with pytest.raises(ImproperlyConfigured, match="RELSIM_LEAK_LEVEL must be"):
        lint_caption("A {Object} on a cone")


def test_settings_read_the_level_from_the_environment() -> None:
    result = _load_settings(
        {"RELSIM_LEAK_LEVEL": " Error "},
        "-c",
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.RELSIM_LEAK_LEVEL)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "error"


def test_settings_fail_loudly_on_an_unknown_level() -> None:
    result = _load_settings({"RELSIM_LEAK_LEVEL": "block"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "RELSIM_LEAK_LEVEL must be 'warning' or 'error', not 'block'" in result.stderr


@pytest.mark.django_db
def test_a_leak_blocks_approval_when_leaks_are_errors_and_the_typed_text_is_kept(
    settings: Any, annotator: Any, reviewer: Any, png_factory: Any
) -> None:
    from django.test import Client
    from django.urls import reverse

    from captions import services
    from curation.intake import normalise_image
    from curation.services import group_create, image_store

    settings.RELSIM_LEAK_LEVEL = "error"
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    group = group_create(title="g", images=images)
    draft = services.caption_create(
        text="A {Shape} inside a {Shape}.", group=group, author=annotator
    )
    leaky = "A pentagon inside a {Shape}."
    client = Client()
    client.force_login(reviewer)
    response = client.post(
        reverse("review_approve", args=[draft.pk]), {"version": draft.version, "text": leaky}
    )
    assert response.status_code == 422
    assert leaky in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.text == "A {Shape} inside a {Shape}."
    leaky_draft = services.caption_create(text=leaky, group=group, author=annotator)
    result = services.captions_bulk_approve(captions=[leaky_draft], reviewer=reviewer)
    assert result == {"approved": 0, "skipped": 1}

    settings.RELSIM_LEAK_LEVEL = "warning"
    assert services.caption_approve(caption=leaky_draft, reviewer=reviewer).status == "approved"
