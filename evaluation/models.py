"""Evaluation as data: benchmark runs and their stored top-k, judge runs and their verdicts,
A/B studies with their trials, participants and answers."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_token() -> str:
    """An unguessable id for links that carry no login (study links, participants)."""
    return secrets.token_urlsafe(24)


class BenchmarkRun(models.Model):
    """A retrieval benchmark: a database of test images plus distractors, random queries from
    the test images, and each method's top-k per query (the query itself excluded)."""

    name = models.CharField(max_length=200)
    job = models.ForeignKey(
        "training.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    params = models.JSONField(default=dict, blank=True)
    # Method key -> what it is: {"label", "index"} ("relsim:<model id>" or a baseline name).
    methods = models.JSONField(default=dict, blank=True)
    database = models.JSONField(default=list, blank=True, help_text="Image ids searched.")
    metrics = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"benchmark #{self.pk} {self.name}"

    @property
    def is_complete(self) -> bool:
        return self.finished_at is not None


class BenchmarkQuery(models.Model):
    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="queries")
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "image"], name="benchmark_query_once"),
            models.UniqueConstraint(fields=["run", "position"], name="benchmark_query_position"),
        ]

    def __str__(self) -> str:
        return f"query {self.position} of run #{self.run_id}"


class Retrieval(models.Model):
    """One method's top-k for one query: image ids, best first, and their cosine scores."""

    query = models.ForeignKey(BenchmarkQuery, on_delete=models.CASCADE, related_name="retrievals")
    method = models.CharField(max_length=100)
    hits = models.JSONField(default=list)
    scores = models.JSONField(default=list)

    class Meta:
        ordering = ["query", "method"]
        constraints = [
            models.UniqueConstraint(fields=["query", "method"], name="retrieval_once_per_method"),
        ]

    def __str__(self) -> str:
        return f"{self.method} on query #{self.query_id}"

    @property
    def top1(self) -> int | None:
        return int(self.hits[0]) if self.hits else None


class JudgeRun(models.Model):
    """The automatic judge over a benchmark run's top-1 per method. The endpoint's key is
    never stored: it comes from settings or from the form into the job's process only."""

    benchmark = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="judge_runs")
    job = models.ForeignKey(
        "training.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.CharField(max_length=500)
    model_name = models.CharField(max_length=200)
    temperature = models.FloatField(default=0.7)
    methods = models.JSONField(default=list)
    both_orders = models.BooleanField(default=False)
    summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"judge run #{self.pk} ({self.model_name})"


class JudgeVerdict(models.Model):
    """The judge's answer for one query, one method's top-1, in one order of the images."""

    class Order(models.TextChoices):
        QUERY_FIRST = "query_first", "query first"
        CANDIDATE_FIRST = "candidate_first", "candidate first"

    judge_run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    query = models.ForeignKey(BenchmarkQuery, on_delete=models.CASCADE, related_name="+")
    method = models.CharField(max_length=100)
    candidate = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    order = models.CharField(max_length=20, choices=Order.choices, default=Order.QUERY_FIRST)
    status = models.CharField(max_length=20)
    score = models.FloatField(null=True, blank=True)
    reply = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["judge_run", "query", "method", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["judge_run", "query", "method", "order"], name="one_verdict_per_pair"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} on query #{self.query_id}: {self.status} {self.score}"


class Study(models.Model):
    """A human A/B study: relsim's top-1 against one baseline's top-1 for the same query."""

    name = models.CharField(max_length=200)
    benchmark = models.ForeignKey(
        BenchmarkRun, null=True, blank=True, on_delete=models.PROTECT, related_name="studies"
    )
    reference_method = models.CharField(max_length=100)
    baselines = models.JSONField(default=list)
    slug = models.CharField(max_length=64, unique=True, default=new_token)
    trials_per_participant = models.PositiveIntegerField(default=20)
    catch_per_participant = models.PositiveIntegerField(default=2)
    is_open = models.BooleanField(default=False)
    completion_code = models.CharField(max_length=64, blank=True)
    screenout_code = models.CharField(max_length=64, blank=True)
    resume_hours = models.PositiveIntegerField(
        default=24, help_text="How long a participant's unfinished session can be resumed."
    )
    # The paper collected 800-880 answers per baseline; recruitment is planned from this.
    answers_per_baseline = models.PositiveIntegerField(
        default=840, help_text="Answers wanted for each baseline."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"study #{self.pk} {self.name}"


class StudyText(models.Model):
    """A version of a study's consent form and instructions; a participant records the
    version they agreed to, so an edit never rewrites what someone consented to."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="texts")
    version = models.PositiveIntegerField()
    consent = models.TextField()
    instructions = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["study", "version"], name="study_text_version_once"),
        ]

    def __str__(self) -> str:
        return f"{self.study} text v{self.version}"


class Trial(models.Model):
    """A query and two candidates. For an A/B trial, A is the reference method's top-1 and B
    a baseline's; for a catch trial, A is a member of the query's own group and B an
    unrelated image (the expected answer is A)."""

    class Kind(models.TextChoices):
        AB = "ab", "A/B"
        CATCH = "catch", "catch"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="trials")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.AB)
    query = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    image_a = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    method_a = models.CharField(max_length=100)
    method_b = models.CharField(max_length=100)
    benchmark_query = models.ForeignKey(
        BenchmarkQuery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_to_curation = models.BooleanField(default=False)

    class Meta:
        ordering = ["study", "id"]

    def __str__(self) -> str:
        return f"trial #{self.pk} ({self.method_a} vs {self.method_b})"


class Participant(models.Model):
    """Someone taking a study, with no account: a token in their link and cookie, and the
    platform's ids when they came from Prolific. No other personal data is kept."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    token = models.CharField(max_length=64, unique=True, default=new_token)
    platform_pid = models.CharField(max_length=64, blank=True)
    platform_study_id = models.CharField(max_length=64, blank=True)
    platform_session_id = models.CharField(max_length=64, blank=True)
    text = models.ForeignKey(StudyText, on_delete=models.PROTECT, related_name="+")
    viewport = models.CharField(max_length=20, blank=True)
    # How many trials they were given, so progress needs no count of their assignments.
    trial_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Left out of the results by a researcher (e.g. after failed catch trials); flags alone
    # never exclude anyone.
    excluded = models.BooleanField(default=False)

    class Meta:
        ordering = ["study", "started_at", "id"]
        constraints = [
            # A repeat visit by the same platform id finds the first one.
            models.UniqueConstraint(
                fields=["study", "platform_pid"],
                condition=~models.Q(platform_pid=""),
                name="one_participant_per_platform_id",
            ),
        ]

    def __str__(self) -> str:
        return f"participant #{self.pk} of {self.study}"


class Assignment(models.Model):
    """A trial as one participant sees it: its place in their sequence and its sides."""

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="assignments"
    )
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="assignments")
    position = models.PositiveIntegerField()
    a_on_left = models.BooleanField()

    class Meta:
        ordering = ["participant", "position"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "trial"], name="trial_once_each"),
            models.UniqueConstraint(fields=["participant", "position"], name="one_trial_a_place"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} #{self.position}: {self.trial}"


class Answer(models.Model):
    """One answer, saved when given; the constraint keeps it one per trial and participant
    whatever the browser sends again (double clicks, reloads, the back button)."""

    class Choice(models.TextChoices):
        LEFT = "left", "left"
        RIGHT = "right", "right"
        SAME = "same", "same"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="answers")
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="answers")
    # The trial's place in the participant's sequence (their Assignment's position).
    position = models.PositiveIntegerField()
    choice = models.CharField(max_length=10, choices=Choice.choices)
    a_on_left = models.BooleanField()
    # The method the answer prefers; "" for "same".
    preferred = models.CharField(max_length=100, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    viewport = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "trial"], name="one_answer_per_trial"),
            models.UniqueConstraint(
                fields=["participant", "position"], name="one_answer_per_place"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant}: {self.choice} on trial #{self.trial_id}"


# The answer choices as a set, made once: Answer.Choice.values builds a new list each time.
ANSWER_CHOICES = frozenset(Answer.Choice.values)
