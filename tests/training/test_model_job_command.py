"""manage.py model_job: options checked before anything is queued, errors said plainly."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from training.management.commands.model_job import parse_option
from training.models import Job

pytestmark = pytest.mark.django_db


def test_option_values_read_as_json_where_they_parse() -> None:
    assert parse_option("lr=1e-4") == ("lr", 1e-4)
    assert parse_option('lora_targets=["q_proj"]') == ("lora_targets", ["q_proj"])
    assert parse_option("finetune=full") == ("finetune", "full")
    with pytest.raises(CommandError, match="name=value"):
        parse_option("lr")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "learning_rate=1"], "Unknown training options: learning_rate"),
        (["--set", "output_dir=/tmp/x"], "Set by the job, not by hand: output_dir"),
        (["--set", "batch_size=0"], "batch_size must be at least 1"),
        (["--gpus", "0"], "--gpus must be at least 1"),
    ],
)
def test_bad_training_options_queue_nothing(options: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("model_job", "train_relsim", *options)
    assert not Job.objects.exists()


def test_a_queued_job_carries_the_options_given(
    django_capture_on_commit_callbacks: Any,
) -> None:
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "model_job",
            "train_relsim",
            "--name",
            "cli run",
            "--set",
            "max_steps=20",
            "--set",
            "lr=0.001",
            "--no-wait",
            stdout=out,
        )
    job = Job.objects.get()
    assert job.kind == Job.Kind.TRAIN_RELSIM and job.queue == Job.Queue.GPU
    assert job.params == {"config": {"max_steps": 20, "lr": 0.001}, "gpus": 1, "name": "cli run"}
    assert f"Job #{job.pk} queued on the gpu queue" in out.getvalue()


def test_embedding_here_without_a_model_fails_with_the_reason() -> None:
    with pytest.raises(CommandError, match="no active relsim model to embed with"):
        call_command("model_job", "embed", "--here", stderr=StringIO(), stdout=StringIO())
    assert Job.objects.get().status == Job.Status.FAILED
