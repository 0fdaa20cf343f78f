"""The captioner page: train the anonymous captioner on the approved captions, draft captions
for groups or images with it (the drafts go to the review queue), choose the active
captioner, and see each captioner's quality as our reviewers judged its drafts."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from core.access import MODELS, permission_required
from core.http import AuthedRequest
from training import caption_selectors, caption_services
from training.caption_forms import DraftCaptionsForm, TrainCaptionerForm
from training.model_jobs import model_activate
from training.model_selectors import gpu_worker_missing
from training.models import Job, TrainedModel

NOT_QUEUED = "The job was not started: the job queue cannot be reached."


@require_http_methods(["GET", "POST"])
@permission_required(*MODELS)
def captioner_page(request: AuthedRequest) -> HttpResponse:
    recipe, tiny, vlm = caption_selectors.captioner_recipe()
    approved = caption_selectors.approved_train_captions()
    models = list(caption_selectors.captioner_models())
    posted = request.POST if request.method == "POST" else None
    which = posted.get("form", "train") if posted is not None else ""
    train_form = TrainCaptionerForm(
        posted if which == "train" else None, recipe=recipe, vlm=vlm, approved=approved
    )
    draft_form = DraftCaptionsForm(posted if which == "draft" else None, models=models)
    job: Job | None = None
    if which == "train" and train_form.is_valid():
        job = caption_services.captioner_train_start(
            name=train_form.cleaned_data["name"].strip() or "captioner",
            config=train_form.config,
            activate=train_form.cleaned_data["activate"],
            user=request.user,
        )
    elif which == "draft" and draft_form.is_valid():
        chosen = draft_form.chosen_model()
        job = caption_services.caption_draft_start(
            target=draft_form.cleaned_data["target"],
            limit=draft_form.cleaned_data["limit"],
            threshold=draft_form.cleaned_data["threshold"],
            model_id=chosen.pk if chosen else None,
            user=request.user,
        )
    if job is not None:
        if job.status == Job.Status.FAILED:
            messages.error(request, NOT_QUEUED)
        return redirect("job_detail", job_id=job.pk)
    context = {
        "train_form": train_form,
        "draft_form": draft_form,
        "tiny": tiny,
        "vlm": vlm,
        "approved": approved,
        "min_captions": caption_selectors.MIN_APPROVED_CAPTIONS,
        "models": models,
        "active": next((m for m in models if m.is_active), None),
        "quality": caption_selectors.captioner_quality(),
        "jobs": caption_selectors.captioner_jobs_recent(),
        "gpu_warning": "" if posted is not None else gpu_worker_missing(),
    }
    status = 400 if posted is not None and which not in ("train", "draft") else 200
    return render(request, "training/captioner.html", context, status=status)


@require_POST
@permission_required(*MODELS)
def captioner_activate(request: AuthedRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=model_id)
    if model.kind != TrainedModel.Kind.CAPTIONER:
        messages.error(request, f"{model.name} is not a captioner.")
        return redirect("captioner_page")
    model_activate(model=model)
    messages.success(request, f"{model.name} is now the active captioner; drafting uses it.")
    return redirect("captioner_page")
