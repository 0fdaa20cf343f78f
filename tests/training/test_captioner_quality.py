"""The captioner's quality figures count what reviewers judged; drafts an audit of their batch
accepted or sent back in bulk are counted apart, outside the shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse

from captions.audit_services import audit_accept, audit_draw, audit_send_back
from captions.models import Caption
from captions.services import caption_approve, caption_create, caption_edit, caption_reject
from tests.captions.test_draft_audit import DRAFT, _batch, _carried_out, _judge
from training.caption_selectors import Quality, captioner_quality

pytestmark = pytest.mark.django_db

ACCEPTED_PROMPT = "anon-caption/v1"
SENT_BACK_PROMPT = "anon-caption/v2"


@dataclass
class Decided:
    superseded: Caption  # approved by the audit, then replaced by a person's caption


def _decide_two_batches(
    png_factory: Any, settings: Any, reviewer: Any, annotator: Any, admin: Any
) -> Decided:
    """An accepted batch of 10 (5 sampled and judged, one more rejected and one edited by
    people outside the sample, 3 accepted by the audit) and a batch of 7 under another prompt
    version (5 sampled and judged, 2 sent back)."""
    settings.RELSIM_AUDIT_SAMPLE_SIZE = 5
    accepted = _batch(png_factory, 10)
    audit = audit_draw(job_id=accepted.job.pk, user=admin)
    _judge(audit, reviewer)
    outside = [c for c in accepted.drafts if c.pk not in audit.sample_ids]
    caption_reject(caption=outside[0], reviewer=reviewer, reason="leaks-content")
    # A person's edit keeps the draft for review: the audit leaves it pending.
    caption_edit(
        caption=outside[1],
        text="A {Animal} sits behind a {Object}.",
        based_on_version=1,
        editor=annotator,
    )
    _carried_out(audit_accept(audit=audit, user=admin, enqueue=False))

    # A person's caption approved later for an audit-approved draft's image supersedes it;
    # the audit still decided that draft.
    superseded = Caption.objects.get(pk=outside[2].pk)
    assert superseded.status == Caption.Status.APPROVED
    human = caption_create(text=DRAFT, image=superseded.image, author=annotator)
    caption_approve(caption=human, reviewer=reviewer)
    superseded.refresh_from_db()
    assert superseded.status == Caption.Status.SUPERSEDED

    sent = _batch(png_factory, 7, first_seed=100)
    Caption.objects.filter(draft_job=sent.job).update(prompt_version=SENT_BACK_PROMPT)
    audit = audit_draw(job_id=sent.job.pk, user=admin)
    _judge(audit, reviewer)
    _carried_out(audit_send_back(audit=audit, user=admin, enqueue=False))
    return Decided(superseded=superseded)


def _rows() -> dict[str, Quality]:
    return {q.prompt_version: q for q in captioner_quality()}


def test_audit_decided_drafts_are_counted_apart_from_what_reviewers_judged(
    png_factory: Any, settings: Any, reviewer: Any, annotator: Any, admin_user_role: Any
) -> None:
    _decide_two_batches(png_factory, settings, reviewer, annotator, admin_user_role)
    rows = _rows()
    assert set(rows) == {ACCEPTED_PROMPT, SENT_BACK_PROMPT}

    accepted = rows[ACCEPTED_PROMPT]
    assert accepted.drafts == 10
    assert (accepted.unchanged, accepted.edited, accepted.pending) == (3, 1, 1)
    assert accepted.rejected == {"too-vague": 1, "leaks-content": 1}
    # The superseded one among them: its deciding revision is the audit's approval.
    assert (accepted.accepted_by_audit, accepted.sent_back_by_audit) == (3, 0)
    # "hides behind" -> "peers behind": one word.
    assert accepted.edit_words == [1]
    assert accepted.reviewed_or_pending == 7
    assert accepted.unchanged_share == pytest.approx(3 / 7)
    assert accepted.edited_share == pytest.approx(1 / 7)
    assert accepted.rejected_share == pytest.approx(2 / 7)
    assert accepted.pending_share == pytest.approx(1 / 7)

    sent = rows[SENT_BACK_PROMPT]
    assert sent.drafts == 7
    assert (sent.unchanged, sent.edited, sent.pending) == (3, 1, 0)
    # The send-back reason is not a reviewer's verdict: it stays out of the reasons.
    assert sent.rejected == {"too-vague": 1}
    assert (sent.accepted_by_audit, sent.sent_back_by_audit) == (0, 2)
    assert sent.reviewed_or_pending == 5
    assert sent.unchanged_share == pytest.approx(0.6)
    assert sent.edited_share == pytest.approx(0.2)
    assert sent.rejected_share == pytest.approx(0.2)
    assert sent.pending_share == 0.0


def test_quality_reads_every_draft_in_one_query(
    png_factory: Any,
    settings: Any,
    reviewer: Any,
    annotator: Any,
    admin_user_role: Any,
    django_assert_num_queries: Any,
) -> None:
    _decide_two_batches(png_factory, settings, reviewer, annotator, admin_user_role)
    # One for the drafts, one for the captioner models: none per caption.
    with django_assert_num_queries(2):
        rows = captioner_quality()
    assert sum(q.drafts for q in rows) == 17


def test_a_draft_a_reviewer_approves_after_the_audit_sent_it_back_counts_as_reviewed(
    png_factory: Any, settings: Any, reviewer: Any, annotator: Any, admin_user_role: Any
) -> None:
    settings.RELSIM_AUDIT_SAMPLE_SIZE = 5
    batch = _batch(png_factory, 6)
    audit = audit_draw(job_id=batch.job.pk, user=admin_user_role)
    _judge(audit, reviewer)
    _carried_out(audit_send_back(audit=audit, user=admin_user_role, enqueue=False))
    returned = next(c for c in batch.drafts if c.pk not in audit.sample_ids)
    returned.refresh_from_db()
    assert returned.status == Caption.Status.REJECTED
    # Revised by a person and approved by a reviewer: the latest verdict is the reviewer's.
    caption_edit(
        caption=returned,
        text="A {Animal} sits behind a {Object}.",
        based_on_version=returned.version,
        editor=annotator,
    )
    returned.refresh_from_db()
    caption_approve(caption=returned, reviewer=reviewer)

    (quality,) = captioner_quality()
    assert (quality.drafts, quality.sent_back_by_audit, quality.accepted_by_audit) == (6, 0, 0)
    assert (quality.unchanged, quality.edited) == (3, 2)
    assert quality.edit_words == [1, 1]


def test_the_captioner_page_shows_the_audit_counts_beside_the_review_figures(
    png_factory: Any,
    settings: Any,
    reviewer: Any,
    annotator: Any,
    admin_user_role: Any,
    admin_client: Any,
) -> None:
    settings.RELSIM_VLM_PATH = ""
    _decide_two_batches(png_factory, settings, reviewer, annotator, admin_user_role)
    body = admin_client.get(reverse("captioner_page")).content.decode()
    assert "Accepted by audit" in body and "Sent back by audit" in body
    assert body.count('<td data-testid="accepted-by-audit">3</td>') == 1
    assert body.count('<td data-testid="sent-back-by-audit">2</td>') == 1
    # Shares are of the drafts reviewers decided or have pending: 3 of 7, then 3 of 5.
    assert '<td data-testid="unchanged">3 (43%)</td>' in body
    assert '<td data-testid="unchanged">3 (60%)</td>' in body
    assert 'id="audit-note"' in body and "counted apart" in body
    assert "batch-sent-back" not in body
