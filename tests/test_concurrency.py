"""Concurrent work through the real request stack never turns into a server error: the
loser of a race gets its 409 or waits its turn (run on SQLite as well as PostgreSQL)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from captions import services
from captions.models import Caption
from curation.intake import normalise_image
from curation.models import Image, InterestLabel
from curation.services import group_create, image_store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]


def _client(user: Any) -> Client:
    # Server errors come back as 500 responses, as a browser would see them.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _together(work: list[Callable[[], None]]) -> None:
    """Start every callable at the same moment, each in its own thread and connection."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_simultaneous_saves_of_one_caption_give_one_save_and_one_409_every_round(
    make_user: Any, png_factory: Any
) -> None:
    images = [image_store(normalised=normalise_image(png_factory(n))).image for n in range(2)]
    group = group_create(title="g", images=images)
    clients = [_client(make_user(f"ed{n}", "annotator")) for n in range(2)]
    for round_no in range(10):
        caption = services.caption_create(text=f"Round {round_no} {{Object}}.", group=group)
        statuses: list[int] = []

        def save(
            client: Client, n: int, caption: Caption = caption, statuses: list[int] = statuses
        ) -> None:
            response = client.post(
                reverse("caption_save", args=[caption.pk]),
                {"text": f"Editor {n} says {{Object}}.", "version": caption.version},
            )
            statuses.append(response.status_code)

        _together([lambda c=c, n=n: save(c, n) for n, c in enumerate(clients)])
        assert sorted(statuses) == [302, 409], f"round {round_no}: {statuses}"
        caption.refresh_from_db()
        assert caption.version == 2


def test_many_annotators_answering_at_once_lose_no_label(make_user: Any, png_factory: Any) -> None:
    for n in range(48):
        image_store(normalised=normalise_image(png_factory(n, size=24)))
    annotators = [make_user(f"lab{n}", "annotator") for n in range(6)]
    statuses: list[int] = []

    def label_until_done(user: Any) -> None:
        client = _client(user)
        for _ in range(60):  # bounded: 48 images, and a few empty looks while others hold leases
            page = client.get(reverse("label_queue"))
            statuses.append(page.status_code)
            # Read the page, not response.context: the test client collects template
            # contexts through a process-wide signal, which threads would mix up.
            found = re.search(rb'name="image" value="(\d+)"', page.content)
            if found is None:
                if not InterestLabel.objects.count() < 48:
                    return
                time.sleep(0.05)  # the rest are leased to others for now
                continue
            answer = client.post(
                reverse("label_submit"), {"image": int(found.group(1)), "answer": "yes"}
            )
            statuses.append(answer.status_code)

    _together([lambda u=u: label_until_done(u) for u in annotators])
    assert 500 not in statuses
    # Every image labelled once: none twice by racing annotators, none lost.
    assert InterestLabel.objects.count() == 48
    labelled = set(InterestLabel.objects.values_list("image_id", flat=True))
    assert labelled == set(Image.objects.values_list("pk", flat=True))


def test_a_study_answer_sent_twice_at_once_is_stored_once_without_an_error(
    png_factory: Any,
) -> None:
    """The double submit that two connections race: both unique indexes of an answer
    (participant + trial, participant + position) see the second insert, and neither may
    turn it into a 500."""
    from evaluation.models import Answer
    from evaluation.study_services import study_create
    from tests.evaluation.study_data import finished_benchmark

    study = study_create(
        name="race",
        benchmark=finished_benchmark(png_factory),
        reference_method="relsim:1",
        baselines=["phash", "clip-i"],
        trials_per_participant=6,
        catch_per_participant=0,
    ).study
    study.is_open = True
    study.save()
    client = Client(raise_request_exception=False)
    entry = client.post(reverse("study_entry", args=[study.slug]), {"agree": "yes"})
    token = entry["Location"].split("/")[3]
    url = reverse("participant_answer", args=[token])
    for position in range(6):
        codes = _race_one_answer(url, position)
        assert sorted(codes) == [302, 302, 302], codes
    answers = Answer.objects.filter(participant__token=token)
    assert answers.count() == 6
    assert sorted(answers.values_list("position", flat=True)) == list(range(6))


def _race_one_answer(url: str, position: int) -> list[int]:
    """Three browsers send the same trial's answer at once, each a different choice."""
    codes: list[int] = []

    def send(choice: str) -> None:
        data = {"position": position, "choice": choice, "response_ms": 900}
        codes.append(Client(raise_request_exception=False).post(url, data).status_code)

    _together([lambda c=choice: send(c) for choice in ("left", "right", "same")])
    return codes
