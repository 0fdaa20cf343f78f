"""Page access: a login, then a permission; anyone else gets 403, never a silent redirect
loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.http import url_has_allowed_host_and_scheme

View = Callable[..., HttpResponseBase]


def permission_required(*permissions: str) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.has_perms(permissions):
                raise PermissionDenied("Your role does not give access to this page.")
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorate


ANNOTATE = ("curation.view_image", "curation.add_interestlabel", "curation.change_group")
REVIEW = ("captions.review_caption",)
# Deciding a whole drafting batch on its audit (approve or reject the drafts nobody read):
# admins; reviewers judge the sample through REVIEW.
AUDIT_DECIDE = ("captions.change_draftaudit",)
EXPORT = ("training.add_job",)
# Launching model jobs and choosing the active models: admins.
MODELS = ("training.add_job", "training.change_trainedmodel")
# Benchmark and judge runs, studies and their results: admins.
EVALUATE = ("training.add_job", "evaluation.add_study")


def safe_next(request: HttpRequest, default: str) -> str:
    """The ?next= / POST next target when it stays on this site, else the default."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else default
