"""Admin pages of the A/B study: the evaluation home, building a study from a benchmark run,
its link, consent versions, opening and closing it, a preview that records nothing, and
deleting a participant's data on request."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.access import EVALUATE, permission_required, safe_next
from core.http import AuthedRequest
from core.ids import parse_id
from evaluation.models import BenchmarkRun, Participant, Study, Trial
from evaluation.participant_views import SLOTS, image_response, slot_image, study_link
from evaluation.study_forms import StudyForm, StudyTextForm
from evaluation.study_services import (
    StudyError,
    participant_delete,
    participant_set_excluded,
    study_create,
    study_recruitment,
    study_set_open,
    study_text_add,
    trials_summary,
)


@require_GET
@permission_required(*EVALUATE)
def evaluation_home(request: AuthedRequest) -> HttpResponse:
    studies = Study.objects.annotate(
        n_participants=Count("participants", distinct=True),
        n_finished=Count(
            "participants", filter=Q(participants__finished_at__isnull=False), distinct=True
        ),
    ).select_related("benchmark")
    context = {
        "studies": studies,
        "benchmarks": BenchmarkRun.objects.all()[:20],
    }
    return render(request, "evaluation/home.html", context)


@require_http_methods(["GET", "POST"])
@permission_required(*EVALUATE)
def study_new(request: AuthedRequest) -> HttpResponse:
    finished = BenchmarkRun.objects.filter(finished_at__isnull=False)
    wanted = parse_id(request.GET.get("benchmark", ""))
    # The run asked for, else the newest finished one.
    run = finished.filter(pk=wanted).first() if wanted is not None else finished.first()
    if request.method == "GET":
        form = StudyForm(run=run, initial={"name": f"A/B study on {run.name}" if run else ""})
        return render(request, "evaluation/study_new.html", {"form": form, "run": run})
    form = StudyForm(request.POST)
    posted = parse_id(request.POST.get("benchmark", ""))
    run = finished.filter(pk=posted).first() if posted is not None else None
    if form.is_valid():
        data = form.cleaned_data
        try:
            built = study_create(
                name=data["name"].strip(),
                benchmark=data["benchmark"],
                reference_method=data["reference_method"],
                baselines=list(data["baselines"]),
                trials_per_participant=data["trials_per_participant"],
                catch_per_participant=data["catch_per_participant"],
                completion_code=data["completion_code"],
                screenout_code=data["screenout_code"],
                resume_hours=data["resume_hours"],
                answers_per_baseline=data["answers_per_baseline"],
                consent=data["consent"],
                instructions=data["instructions"],
                user=request.user,
            )
        except StudyError as error:
            form.add_error(None, str(error))
        else:
            note = (
                f" ({built.skipped_same_image} pairs left out: both methods found the same image)"
                if built.skipped_same_image
                else ""
            )
            messages.success(
                request,
                f"Study built: {built.ab_trials} A/B trials and {built.catch_trials} catch "
                f"trials{note}. Open it when you are ready to share the link.",
            )
            return redirect("study_detail", study_id=built.study.pk)
    return render(request, "evaluation/study_new.html", {"form": form, "run": run}, status=400)


@require_GET
@permission_required(*EVALUATE)
def study_detail(request: AuthedRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study.objects.select_related("benchmark"), pk=study_id)
    participants = Participant.objects.filter(study=study).annotate(
        n_answers=Count("answers", distinct=True)
    )
    latest = study.texts.order_by("-version").first()
    per_baseline = dict(
        Trial.objects.filter(study=study, kind=Trial.Kind.AB)
        .values_list("method_b")
        .annotate(n=Count("id"))
        .values_list("method_b", "n")
    )
    context = {
        "study": study,
        "link": study_link(request, study),
        "prolific_link": study_link(request, study, prolific=True),
        "trials": trials_summary(study),
        "per_baseline": sorted(per_baseline.items()),
        "recruitment": study_recruitment(study),
        "participants": participants,
        "texts": study.texts.all(),
        "text_form": StudyTextForm(
            initial={"consent": latest.consent, "instructions": latest.instructions}
            if latest
            else None
        ),
    }
    return render(request, "evaluation/study_detail.html", context)


@require_POST
@permission_required(*EVALUATE)
def study_open(request: AuthedRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    wanted = request.POST.get("open")
    if wanted not in {"1", "0"}:
        messages.error(request, "Say whether to open (1) or close (0) the study.")
        return redirect("study_detail", study_id=study.pk)
    study_set_open(study=study, is_open=wanted == "1")
    messages.success(request, "The study is open." if study.is_open else "The study is closed.")
    return redirect("study_detail", study_id=study.pk)


@require_POST
@permission_required(*EVALUATE)
def study_text_new(request: AuthedRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    form = StudyTextForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        messages.error(request, f"The new version was not saved: {problems}")
        return redirect("study_detail", study_id=study.pk)
    text = study_text_add(
        study=study,
        consent=form.cleaned_data["consent"],
        instructions=form.cleaned_data["instructions"],
    )
    messages.success(request, f"Version {text.version} saved; new participants see it from now on.")
    return redirect("study_detail", study_id=study.pk)


@require_POST
@permission_required(*EVALUATE)
def participant_data_delete(request: AuthedRequest, participant_id: int) -> HttpResponse:
    participant = get_object_or_404(Participant, pk=participant_id)
    study_id = participant.study_id
    label = participant.platform_pid or f"#{participant.pk}"
    removed = participant_delete(participant=participant)
    messages.success(
        request, f"Deleted participant {label} and their {removed['answers']} answers."
    )
    return redirect("study_detail", study_id=study_id)


@require_POST
@permission_required(*EVALUATE)
def participant_exclude(request: AuthedRequest, participant_id: int) -> HttpResponse:
    """Leave a participant's answers out of the results, or count them again."""
    participant = get_object_or_404(Participant, pk=participant_id)
    wanted = request.POST.get("excluded")
    if wanted not in {"1", "0"}:
        messages.error(request, "Say whether to exclude (1) or include (0) the participant.")
    else:
        participant_set_excluded(participant=participant, excluded=wanted == "1")
        label = participant.platform_pid or f"#{participant.pk}"
        done = "left out of" if participant.excluded else "counted in"
        messages.success(request, f"Participant {label}'s answers are {done} the results.")
    return redirect(safe_next(request, reverse("study_detail", args=[participant.study_id])))


@require_GET
@permission_required(*EVALUATE)
def study_preview(request: AuthedRequest, study_id: int) -> HttpResponse:
    """The trials as a participant sees them, one by one; nothing is recorded."""
    study = get_object_or_404(Study, pk=study_id)
    trials = list(Trial.objects.filter(study=study).order_by("id")[:200])
    if not trials:
        messages.error(request, "This study has no trials.")
        return redirect("study_detail", study_id=study.pk)
    # Trials count from 0; parse_id bounds the number before it is read (0 gives None).
    n = min(parse_id(request.GET.get("n", "")) or 0, len(trials) - 1)
    trial = trials[n]
    images = {
        slot: reverse(
            "study_preview_image", kwargs={"study_id": study.pk, "trial_id": trial.pk, "slot": slot}
        )
        for slot in SLOTS
    }
    context = {
        "study": study,
        "trial": trial,
        "images": images,
        "number": n + 1,
        "total": len(trials),
        "percent": round(100 * n / len(trials)),
        "next_n": n + 1 if n + 1 < len(trials) else None,
        "previous_n": n - 1 if n > 0 else None,
        "preview": True,
        "text": study.texts.order_by("-version").first(),
    }
    return render(request, "evaluation/participate/preview.html", context)


@require_GET
@permission_required(*EVALUATE)
def study_preview_image(
    request: AuthedRequest, study_id: int, trial_id: int, slot: str
) -> FileResponse:
    trial = get_object_or_404(
        Trial.objects.select_related("query", "image_a", "image_b"), pk=trial_id, study_id=study_id
    )
    if slot not in SLOTS:
        raise Http404("No such image")
    # The preview shows A on the left.
    return image_response(slot_image(trial, slot, a_on_left=True))
