"""Writes of the A/B study: building a study and its trials from a benchmark run, versions of
its consent and instructions, starting a participant with a balanced set of trials, recording
answers (one per trial, whatever is sent again) and deleting a participant's data."""

from __future__ import annotations

import enum
import math
import random
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from curation.models import GroupMember, Image
from evaluation.answer_sql import Answering, answered_count, session_expired, store_answer
from evaluation.models import (
    ANSWER_CHOICES,
    Answer,
    Assignment,
    BenchmarkRun,
    Participant,
    Retrieval,
    Study,
    StudyText,
    Trial,
)

DEFAULT_CONSENT = (
    "This study is part of research on how people judge whether two pictures share the same "
    "underlying idea. You will see a picture and two candidates, and choose the candidate "
    "that shares more of the first picture's logic, or say they are the same. It takes about "
    "ten minutes. We record your answers, how long each took, your screen size and, if you "
    "came from Prolific, your Prolific ids; nothing else about you. Taking part is voluntary "
    "and you may stop at any time. You may ask the researchers to delete your answers."
)
DEFAULT_INSTRUCTIONS = (
    "At the top is a picture. Below it are two candidates. Choose the candidate whose "
    "underlying logic is closest to the top picture's: how its parts are arranged, repeat, "
    "contrast or depend on each other. Ignore colours, objects and style. If neither is "
    "closer, choose Same. Tap or click a candidate, or use the keys: Left arrow or 1 for "
    "left, Down arrow or 2 for same, Right arrow or 3 for right."
)
# Catch trials made per study: enough that participants rarely see the same one twice.
CATCH_TRIALS_PER_STUDY = 40
# The paper's study collected 800-880 answers per baseline.
DEFAULT_ANSWERS_PER_BASELINE = 840


class StudyError(Exception):
    """A study cannot be built or taken as asked; the message says why."""


@dataclass(frozen=True)
class StudyBuild:
    study: Study
    ab_trials: int
    catch_trials: int
    skipped_same_image: int


def _ab_trials(study: Study, run: BenchmarkRun) -> tuple[list[Trial], int]:
    tops: dict[int, dict[str, tuple[int, int]]] = {}
    methods = [study.reference_method, *study.baselines]
    rows = Retrieval.objects.filter(query__run=run, method__in=methods).values_list(
        "query_id", "query__image_id", "method", "hits"
    )
    for query_id, query_image, method, hits in rows:
        if hits:
            tops.setdefault(query_id, {})[method] = (query_image, int(hits[0]))
    trials, skipped = [], 0
    for query_id in sorted(tops):
        found = tops[query_id]
        if study.reference_method not in found:
            continue
        query_image, ours = found[study.reference_method]
        for baseline in study.baselines:
            if baseline not in found:
                continue
            theirs = found[baseline][1]
            if theirs == ours:
                # Both methods found the same image: nothing for a person to choose between.
                skipped += 1
                continue
            trials.append(
                Trial(
                    study=study,
                    kind=Trial.Kind.AB,
                    query_id=query_image,
                    image_a_id=ours,
                    image_b_id=theirs,
                    method_a=study.reference_method,
                    method_b=baseline,
                    benchmark_query_id=query_id,
                )
            )
    return trials, skipped


def _catch_trials(study: Study, count: int, seed: int) -> list[Trial]:
    """A member of a curated group as the query, another member of it against an image in
    none of the query's groups: anyone paying attention prefers the group-mate."""
    rng = random.Random(seed)
    members: dict[int, list[int]] = {}
    for group_id, image_id in GroupMember.objects.values_list("group_id", "image_id"):
        members.setdefault(group_id, []).append(image_id)
    groups = [images for images in members.values() if len(images) >= 2]
    if not groups:
        return []
    grouped_with: dict[int, set[int]] = {}
    for images in members.values():
        for image in images:
            grouped_with.setdefault(image, set()).update(images)
    all_ids = list(Image.objects.values_list("id", flat=True)[:20000])
    trials: list[Trial] = []
    for _ in range(count * 5):
        if len(trials) >= count:
            break
        query, mate = rng.sample(rng.choice(groups), 2)
        near = grouped_with.get(query, set())
        unrelated = [i for i in rng.sample(all_ids, min(len(all_ids), 50)) if i not in near]
        if not unrelated:
            continue
        trials.append(
            Trial(
                study=study,
                kind=Trial.Kind.CATCH,
                query_id=query,
                image_a_id=mate,
                image_b_id=unrelated[0],
                method_a="catch:group-member",
                method_b="catch:unrelated",
            )
        )
    return trials


@transaction.atomic
def study_create(
    *,
    name: str,
    benchmark: BenchmarkRun,
    reference_method: str,
    baselines: list[str],
    trials_per_participant: int,
    catch_per_participant: int,
    completion_code: str = "",
    screenout_code: str = "",
    resume_hours: int = 24,
    answers_per_baseline: int = DEFAULT_ANSWERS_PER_BASELINE,
    consent: str = DEFAULT_CONSENT,
    instructions: str = DEFAULT_INSTRUCTIONS,
    user: User | None = None,
) -> StudyBuild:
    if not benchmark.is_complete:
        raise StudyError("the benchmark run has not finished")
    known = set(benchmark.methods)
    unknown = sorted({reference_method, *baselines} - known)
    if unknown:
        raise StudyError(f"not a method of this benchmark run: {', '.join(unknown)}")
    if not baselines or reference_method in baselines:
        raise StudyError("choose at least one baseline other than the reference method")
    study = Study.objects.create(
        name=name,
        benchmark=benchmark,
        reference_method=reference_method,
        baselines=baselines,
        trials_per_participant=trials_per_participant,
        catch_per_participant=catch_per_participant,
        completion_code=completion_code,
        screenout_code=screenout_code,
        resume_hours=resume_hours,
        answers_per_baseline=answers_per_baseline,
        created_by=user,
    )
    ab, skipped = _ab_trials(study, benchmark)
    if not ab:
        raise StudyError(
            "no trials: the reference method and the baselines found the same top-1 image "
            "for every query, or the run has no results for them"
        )
    catch = (
        _catch_trials(study, CATCH_TRIALS_PER_STUDY, seed=study.pk) if catch_per_participant else []
    )
    if catch_per_participant and not catch:
        raise StudyError(
            "catch trials need a curated group with at least 2 images; "
            "set catch trials per participant to 0 or curate a group first"
        )
    # Fewer trials than a participant is meant to see would quietly shorten every session.
    if trials_per_participant > len(ab):
        raise StudyError(
            f"there are only {len(ab)} A/B trials: set trials per participant to {len(ab)} or fewer"
        )
    if catch_per_participant > len(catch):
        raise StudyError(
            f"only {len(catch)} catch trials could be made from the curated groups: set "
            f"catch trials per participant to {len(catch)} or fewer"
        )
    Trial.objects.bulk_create([*ab, *catch])
    StudyText.objects.create(study=study, version=1, consent=consent, instructions=instructions)
    return StudyBuild(study, len(ab), len(catch), skipped)


def study_text_add(*, study: Study, consent: str, instructions: str) -> StudyText:
    """A new version; participants who agreed to an earlier one keep their record of it."""
    with transaction.atomic():
        latest = (
            StudyText.objects.select_for_update().filter(study=study).order_by("-version").first()
        )
        version = (latest.version if latest else 0) + 1
        return StudyText.objects.create(
            study=study, version=version, consent=consent, instructions=instructions
        )


def study_set_open(*, study: Study, is_open: bool) -> Study:
    study.is_open = is_open
    study.save(update_fields=["is_open"])
    return study


def _pick_trials(study: Study, rng: random.Random) -> list[Trial]:
    """The A/B trials seen least so far (spread evenly over the baselines), and the catch
    trials, in a shuffled order with the catch trials never first."""
    seen = Count("assignments")
    ab: list[Trial] = []
    per_baseline = {
        baseline: list(
            Trial.objects.filter(study=study, kind=Trial.Kind.AB, method_b=baseline)
            .annotate(seen=seen)
            .order_by("seen", "?")[: study.trials_per_participant]
        )
        for baseline in study.baselines
    }
    # Each participant's round starts at a different baseline, so that when the trials do
    # not divide evenly no baseline is always the one given more.
    order = list(per_baseline.values())
    start = rng.randrange(len(order)) if order else 0
    order = order[start:] + order[:start]
    while len(ab) < study.trials_per_participant and any(order):
        for trials in order:
            if trials and len(ab) < study.trials_per_participant:
                ab.append(trials.pop(0))
    catch = list(
        Trial.objects.filter(study=study, kind=Trial.Kind.CATCH)
        .annotate(seen=seen)
        .order_by("seen", "?")[: study.catch_per_participant]
    )
    rng.shuffle(ab)
    for trial in catch:
        ab.insert(rng.randint(1, len(ab)) if ab else 0, trial)
    return ab


def _balanced_sides(count: int, rng: random.Random) -> list[bool]:
    """A on the left in half of a participant's trials (one more when odd), shuffled."""
    sides = [True] * ((count + rng.randint(0, 1)) // 2)
    sides += [False] * (count - len(sides))
    rng.shuffle(sides)
    return sides


@dataclass(frozen=True)
class Started:
    participant: Participant
    resumed: bool


def _resumable(participant: Participant) -> bool:
    return participant.finished_at is None and not session_expired(
        participant.started_at, participant.study.resume_hours, timezone.now()
    )


def participant_start(
    *,
    study: Study,
    text: StudyText,
    platform: dict[str, str],
    viewport: str = "",
) -> Started:
    """A new participant with their trials; a platform id seen before gets its first visit
    back while it can be resumed, and an error once it has finished or expired."""
    pid = platform.get("pid", "")
    if pid:
        existing = Participant.objects.filter(study=study, platform_pid=pid).first()
        if existing is not None:
            return _return_visit(existing)
    rng = random.Random(secrets.randbits(64))
    trials = _pick_trials(study, rng)
    if not trials:
        raise StudyError("this study has no trials")
    sides = _balanced_sides(len(trials), rng)
    try:
        with transaction.atomic():
            participant = Participant.objects.create(
                study=study,
                text=text,
                platform_pid=pid,
                platform_study_id=platform.get("study_id", ""),
                platform_session_id=platform.get("session_id", ""),
                viewport=viewport,
                trial_count=len(trials),
            )
            Assignment.objects.bulk_create(
                Assignment(participant=participant, trial=trial, position=i, a_on_left=side)
                for i, (trial, side) in enumerate(zip(trials, sides, strict=True))
            )
    except IntegrityError:
        # The same platform id arrived twice at once: the other request made the row.
        existing = Participant.objects.filter(study=study, platform_pid=pid).first()
        if existing is None:
            raise
        return _return_visit(existing)
    return Started(participant, resumed=False)


def participant_returning(*, study: Study, pid: str) -> Started | None:
    """Someone arriving again with a platform id this study has seen: their session back
    while it can be resumed, an error once it has finished or expired; None if new."""
    existing = Participant.objects.filter(study=study, platform_pid=pid).first()
    return _return_visit(existing) if existing is not None else None


def _return_visit(participant: Participant) -> Started:
    if participant.finished_at is not None:
        raise StudyError("You have already taken part in this study. Thank you!")
    if not _resumable(participant):
        raise StudyError("This session has expired. Please return the study on your platform.")
    return Started(participant, resumed=True)


def participant_can_continue(participant: Participant) -> bool:
    return _resumable(participant)


@dataclass(frozen=True)
class Progress:
    """Where a participant stands: the first trial without an answer and the one after it
    (to preload), by position; None when there is none."""

    position: int | None
    following: int | None
    answered: int
    total: int


def participant_progress(participant: Participant, answered: int | None = None) -> Progress:
    """Where the participant stands. Answers fill the sequence from its start, so the count
    of answers is the first open position; pass it when already read."""
    if answered is None:
        answered = answered_count(participant.pk)
    return _progress(answered, participant.trial_count)


def _progress(answered: int, total: int) -> Progress:
    position = answered if answered < total else None
    following = answered + 1 if answered + 1 < total else None
    return Progress(position, following, min(answered, total), total)


@dataclass(frozen=True)
class Recorded:
    created: bool
    finished: bool
    progress: Progress


class AnswerRefused(StudyError):
    """An answer the participant's session cannot take, and why."""

    class Reason(enum.Enum):
        NO_LINK = "no participant has this link"
        NOT_OPEN = "the study is not open"
        EXPIRED = "the session has expired"

    def __init__(self, reason: AnswerRefused.Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def answer_submit(
    *,
    token: str,
    position: int,
    choice: str,
    response_ms: int | None,
    viewport: str = "",
) -> Recorded:
    """Save an answer to the trial at `position` of the participant's sequence: the first
    trial still open, as the page shows it. Sending an answer again changes nothing (the
    first one stands, one per trial); a trial further on than the open one is refused, so
    answers always fill the sequence from its start. One statement on PostgreSQL: the
    study's hottest request. Raises AnswerRefused, or StudyError for a position the session
    does not have open."""
    if choice not in ANSWER_CHOICES:
        raise StudyError(f"unknown answer {choice!r}: choose left, right or same")
    now = timezone.now()
    stored = store_answer(Answering(token, position, choice, response_ms, viewport, now))
    if stored is None:
        raise AnswerRefused(AnswerRefused.Reason.NO_LINK)
    state = stored.state
    if not state.is_open:
        raise AnswerRefused(AnswerRefused.Reason.NOT_OPEN)
    if state.expired and not stored.finished:
        raise AnswerRefused(AnswerRefused.Reason.EXPIRED)
    total = state.trial_count
    if not 0 <= position < total:
        raise StudyError(f"there is no trial {position} in this session")
    answered = state.answered
    if position > answered:
        raise StudyError(
            f"trial {position} is not the one on screen (that is trial {answered}): "
            "reload the page to go on"
        )
    if position == answered:
        # Written now or by a request sent at the same moment: either way it is answered.
        answered = position + 1
    progress = _progress(answered, total)
    finished = progress.position is None
    if finished and not stored.finished:
        # The last answer came from a request sent at the same moment, which marks them
        # finished in the same statement; conditional, so the first time set stands.
        Participant.objects.filter(pk=state.participant_id, finished_at__isnull=True).update(
            finished_at=now
        )
    return Recorded(stored.created, finished, progress)


def answer_record(
    *,
    participant: Participant,
    position: int,
    choice: str,
    response_ms: int | None,
    viewport: str = "",
) -> Recorded:
    """answer_submit for a participant at hand; their finish time is read back."""
    recorded = answer_submit(
        token=participant.token,
        position=position,
        choice=choice,
        response_ms=response_ms,
        viewport=viewport,
    )
    if recorded.finished:
        participant.refresh_from_db(fields=["finished_at"])
    return recorded


def participant_set_excluded(*, participant: Participant, excluded: bool) -> Participant:
    participant.excluded = excluded
    participant.save(update_fields=["excluded"])
    return participant


def participant_delete(*, participant: Participant) -> dict[str, Any]:
    """Everything recorded about one participant (their answers and sessions), on request."""
    with transaction.atomic():
        answers = Answer.objects.filter(participant=participant).count()
        participant.delete()
    return {"answers": answers}


def trials_summary(study: Study) -> dict[str, int]:
    counts = Trial.objects.filter(study=study).aggregate(
        ab=Count("id", filter=Q(kind=Trial.Kind.AB)),
        catch=Count("id", filter=Q(kind=Trial.Kind.CATCH)),
    )
    return {"ab": counts["ab"], "catch": counts["catch"]}


@dataclass(frozen=True)
class BaselineProgress:
    baseline: str
    answers: int
    target: int

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.answers / self.target)) if self.target else 100

    @property
    def reached(self) -> bool:
        return self.answers >= self.target


@dataclass(frozen=True)
class Recruitment:
    """Answers per baseline against the study's target, and the participants that takes."""

    baselines: list[BaselineProgress]
    # For the whole target, and still to recruit for the baseline furthest from it.
    participants_needed: int
    participants_to_go: int

    @property
    def reached(self) -> bool:
        return all(row.reached for row in self.baselines)


def _participants_for(answers: int, study: Study) -> int:
    """Participants who give `answers` to each baseline: a participant's A/B trials are
    spread evenly over the baselines."""
    per_baseline = study.trials_per_participant / max(1, len(study.baselines))
    return math.ceil(answers / per_baseline) if answers > 0 else 0


def study_recruitment(study: Study) -> Recruitment:
    """How far each baseline is from the target, counting the answers that go into the
    results (excluded participants' answers do not)."""
    counted = dict(
        Answer.objects.filter(
            participant__study=study, participant__excluded=False, trial__kind=Trial.Kind.AB
        )
        .values_list("trial__method_b")
        .annotate(n=Count("id"))
        .values_list("trial__method_b", "n")
    )
    target = study.answers_per_baseline
    rows = [BaselineProgress(b, int(counted.get(b, 0)), target) for b in study.baselines]
    missing = max((max(0, target - row.answers) for row in rows), default=0)
    return Recruitment(rows, _participants_for(target, study), _participants_for(missing, study))
