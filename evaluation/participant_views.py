"""The participant's pages: no account, a study link. Consent, instructions, trials answered
one at a time (each answer saved when given), and the completion code. A participant holds a
token in their link and in their session, and reaches their own study and nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import get_script_prefix, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from curation.models import Image
from evaluation.answer_sql import Found, participant_with_study
from evaluation.models import Assignment, Participant, Study, StudyText, Trial
from evaluation.study_forms import AnswerInvalid, ConsentForm, read_answer
from evaluation.study_services import (
    AnswerRefused,
    Progress,
    StudyError,
    answer_submit,
    participant_can_continue,
    participant_progress,
    participant_returning,
    participant_start,
)

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
SLOTS = ("query", "left", "right")


def _session_key(study: Study) -> str:
    return f"study-participant-{study.pk}"


def _latest_text(study: Study) -> StudyText:
    text = study.texts.order_by("-version").first()
    if text is None:
        raise Http404("This study has no consent form yet.")
    return text


class _Unavailable(Exception):
    """A page a participant cannot have, said in words rather than a bare 404."""

    def __init__(self, title: str, text: str, status: int = 404) -> None:
        super().__init__(text)
        self.title, self.text, self.status = title, text, status


_NOT_OPEN = _Unavailable(
    "This study is not open",
    "It has not started yet or has closed. If you came from Prolific, please return the "
    "study there.",
)
_EXPIRED = _Unavailable(
    "This session has expired", "Please return the study on your platform.", 410
)
_NO_LINK = _Unavailable(
    "This link is not valid",
    "Check the link you were given. If you came from Prolific, please return the study there.",
)


def _open_study(slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise _NO_LINK
    if not study.is_open:
        raise _NOT_OPEN
    return study


def _participant(token: str) -> Found:
    found = participant_with_study(token)
    if found is None:
        raise _NO_LINK
    if not found.participant.study.is_open:
        raise _NOT_OPEN
    return found


def _participant_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def page(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except _Unavailable as unavailable:
            return _message(request, unavailable.title, unavailable.text, unavailable.status)

    return page


def _message(request: HttpRequest, title: str, text: str, status: int = 200) -> HttpResponse:
    context = {"title": title, "text": text}
    return render(request, "evaluation/participate/message.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
@_participant_page
def study_entry(request: HttpRequest, slug: str) -> HttpResponse:
    """The study link: consent (with Prolific's parameters carried through), or the way
    back into a session this browser already started."""
    study = _open_study(slug)
    token = request.session.get(_session_key(study))
    if token:
        # A second consent from the same browser (back button, a new tab) is the same person.
        known = Participant.objects.filter(token=token, study=study).first()
        if known is not None and participant_can_continue(known):
            return redirect("participant_trial", token=token)
    text = _latest_text(study)
    if request.method == "GET":
        form = ConsentForm(initial={k: request.GET.get(k, "") for k in _PLATFORM_KEYS})
        bad = [k for k in _PLATFORM_KEYS if request.GET.get(k) and not _valid_platform(k, request)]
        if bad:
            return _message(
                request, "This link is not valid", f"Check the link: {', '.join(bad)}.", 400
            )
        pid = request.GET.get("PROLIFIC_PID", "")
        if pid:
            # Someone seen before is told so, or taken back, before any consent form.
            try:
                returning = participant_returning(study=study, pid=pid)
            except StudyError as error:
                return _message(request, "Thank you", str(error), 409)
            if returning is not None:
                request.session[_session_key(study)] = returning.participant.token
                return redirect("participant_trial", token=returning.participant.token)
        return render(
            request,
            "evaluation/participate/consent.html",
            {"study": study, "text": text, "form": form},
        )
    form = ConsentForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "evaluation/participate/consent.html",
            {"study": study, "text": text, "form": form},
            status=400,
        )
    if form.cleaned_data["agree"] != "yes":
        return _screened_out(request, study)
    try:
        started = participant_start(
            study=study,
            text=text,
            platform=form.platform(),
            viewport=form.cleaned_data.get("viewport") or "",
        )
    except StudyError as error:
        return _message(request, "Thank you", str(error), 409)
    request.session[_session_key(study)] = started.participant.token
    if started.resumed:
        return redirect("participant_trial", token=started.participant.token)
    return redirect("participant_instructions", token=started.participant.token)


_PLATFORM_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


def _valid_platform(key: str, request: HttpRequest) -> bool:
    form = ConsentForm({"agree": "yes", key: request.GET.get(key, "")})
    return form.is_valid()


def _screened_out(request: HttpRequest, study: Study) -> HttpResponse:
    code = study.screenout_code
    context = {"study": study, "code": code, "redirect": PROLIFIC_COMPLETE + code if code else ""}
    return render(request, "evaluation/participate/screened_out.html", context)


@never_cache
@require_GET
@_participant_page
def participant_instructions(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(token).participant
    context = {"participant": participant, "study": participant.study, "text": participant.text}
    return render(request, "evaluation/participate/instructions.html", context)


@lru_cache(maxsize=8)
def _url_format(name: str, prefix: str) -> str:
    """A participant URL as a format string, from one reverse with markers: six image URLs
    per answer through reverse() cost as much as storing the answer. Keyed by the script
    prefix, which is all that can change while the process runs."""
    kwargs = {"token": "TOKEN-MARK", "position": 9999999, "slot": "SLOT-MARK"}
    wanted = {"participant_image": ("token", "position", "slot")}.get(name, ("token",))
    marked = reverse(name, kwargs={key: kwargs[key] for key in wanted})
    return (
        marked.replace("TOKEN-MARK", "{token}")
        .replace("9999999", "{position}")
        .replace("SLOT-MARK", "{slot}")
    )


def _image_url(participant: Participant) -> str:
    """The participant's image URL with {position} and {slot} left to fill (study.js fills
    them for the trials it draws)."""
    url_format = _url_format("participant_image", get_script_prefix())
    return url_format.replace("{token}", participant.token)


def _slot_url(participant: Participant, position: int, slot: str) -> str:
    return _image_url(participant).format(position=position, slot=slot)


def _trial_context(participant: Participant, progress: Progress) -> dict[str, object] | None:
    position = progress.position
    if position is None:
        return None
    following = progress.following
    total = progress.total
    # Numbers as text: the template engine would localise each int on every render.
    return {
        "participant": participant,
        "study": participant.study,
        "position": str(position),
        "answered": str(progress.answered),
        "number": str(progress.answered + 1),
        "total": str(total),
        "percent": str(round(100 * progress.answered / total) if total else 0),
        "images": {slot: _slot_url(participant, position, slot) for slot in SLOTS},
        "image_url": _image_url(participant),
        # Fetched while this trial is on screen, so the next one shows at once.
        "preload": [_slot_url(participant, following, s) for s in SLOTS]
        if following is not None
        else [],
        "answer_url": _url_format("participant_answer", get_script_prefix()).format(
            token=participant.token
        ),
    }


def _done_url(participant: Participant) -> str:
    return reverse("participant_done", kwargs={"token": participant.token})


@never_cache
@require_GET
@_participant_page
def participant_trial(request: HttpRequest, token: str) -> HttpResponse:
    """The next unanswered trial: a reload, the back button or a new tab all land here."""
    participant, answered = _participant(token)
    if participant.finished_at is not None:
        return redirect(_done_url(participant))
    if not participant_can_continue(participant):
        raise _EXPIRED
    context = _trial_context(participant, participant_progress(participant, answered))
    if context is None:
        return redirect(_done_url(participant))
    return render(request, "evaluation/participate/trial.html", context)


def _rate_limited(token: str) -> bool:
    """More answers in the window than settings.RELSIM_STUDY_ANSWER_BURST (per web process:
    the default cache is the process's own). Counted by link, before the database is asked."""
    key = f"study-answers-{token}"
    window = settings.RELSIM_STUDY_ANSWER_WINDOW_S
    cache.add(key, 0, window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        count = 1
    return bool(count > settings.RELSIM_STUDY_ANSWER_BURST)


def _wants_json(request: HttpRequest) -> bool:
    """study.js asks for JSON and draws the next trial itself; a browser without it posts
    the form and follows the redirect."""
    return "application/json" in request.META.get("HTTP_ACCEPT", "")


def _json(payload: dict[str, object], status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(payload), content_type="application/json", status=status)


def _not_stored(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """never_cache's intent for the answer's replies in one fixed header: never_cache works
    out four headers per response, a cost the study's hottest request need not pay."""

    @wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    return answer


_REFUSED = {
    AnswerRefused.Reason.NO_LINK: _NO_LINK,
    AnswerRefused.Reason.NOT_OPEN: _NOT_OPEN,
    AnswerRefused.Reason.EXPIRED: _EXPIRED,
}


def _answer_problem(request: HttpRequest, title: str, text: str, status: int) -> HttpResponse:
    if _wants_json(request):
        return _json({"title": title, "text": text}, status)
    return _message(request, title, text, status)


@_not_stored
@require_POST
def participant_answer(request: HttpRequest, token: str) -> HttpResponse:
    """Save one answer; tell study.js where the participant now stands (JSON), or redirect
    to the next trial. Sending the same answer again is harmless: the first one stands."""
    if _rate_limited(token):
        return _answer_problem(request, "Slow down", "Too many answers at once; try again.", 429)
    try:
        given = read_answer(request.POST)
    except AnswerInvalid as invalid:
        return _answer_problem(request, "That answer could not be read", str(invalid), 400)
    try:
        recorded = answer_submit(
            token=token,
            position=given.position,
            choice=given.choice,
            response_ms=given.response_ms,
            viewport=given.viewport,
        )
    except AnswerRefused as refused:
        page = _REFUSED[refused.reason]
        return _answer_problem(request, page.title, page.text, page.status)
    except StudyError as error:
        return _answer_problem(request, "That answer could not be saved", str(error), 400)
    progress = recorded.progress
    if recorded.finished:
        done = _url_format("participant_done", get_script_prefix()).format(token=token)
        return _json({"done": done}) if _wants_json(request) else redirect(done)
    if _wants_json(request):
        return _json(
            {
                "position": progress.position,
                "following": progress.following,
                "answered": progress.answered,
                "total": progress.total,
            }
        )
    return redirect(_url_format("participant_trial", get_script_prefix()).format(token=token))


@never_cache
@require_GET
@_participant_page
def participant_done(request: HttpRequest, token: str) -> HttpResponse:
    """The completion code, and the way back to Prolific - only once every answer is in."""
    participant = _participant(token).participant
    if participant.finished_at is None:
        return redirect("participant_trial", token=participant.token)
    study = participant.study
    code = study.completion_code
    back = PROLIFIC_COMPLETE + code if code and participant.platform_pid else ""
    context = {"study": study, "code": code, "redirect": back}
    return render(request, "evaluation/participate/done.html", context)


@require_GET
def participant_image(request: HttpRequest, token: str, position: int, slot: str) -> FileResponse:
    """A trial's image by its place on screen: the URL says nothing of the method that found
    it, and only the participant's own trials can be read."""
    if slot not in SLOTS:
        raise Http404("No such image")
    assignment = get_object_or_404(
        Assignment.objects.select_related("trial__query", "trial__image_a", "trial__image_b"),
        participant__token=token,
        position=position,
    )
    return image_response(slot_image(assignment.trial, slot, a_on_left=assignment.a_on_left))


def slot_image(trial: Trial, slot: str, *, a_on_left: bool) -> Image:
    """The image a trial shows at `slot` (query, left or right) with image A on that side."""
    left, right = (trial.image_a, trial.image_b) if a_on_left else (trial.image_b, trial.image_a)
    return {"query": trial.query, "left": left, "right": right}[slot]


def image_response(image: Image) -> FileResponse:
    try:
        handle = image.file.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The image file is missing") from None
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def study_link(request: HttpRequest, study: Study, *, prolific: bool = False) -> str:
    """The link to hand out; with Prolific's placeholders when it is for Prolific."""
    url = request.build_absolute_uri(reverse("study_entry", kwargs={"slug": study.slug}))
    if prolific:
        query = urlencode(
            {
                "PROLIFIC_PID": "{{%PROLIFIC_PID%}}",
                "STUDY_ID": "{{%STUDY_ID%}}",
                "SESSION_ID": "{{%SESSION_ID%}}",
            },
            safe="{}%",
        )
        return f"{url}?{query}"
    return url
