from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ml.captioning.captioner import (
    Captioner,
    CaptionerConfig,
    GenerationSettings,
    build_captioner,
    caption_group,
    caption_groups,
    caption_images,
    caption_loss,
    load_captioner,
    save_captioner,
)
from ml.captioning.prompts import PROMPT_VERSION, get_prompt
from ml.vlm.backbone import load_vlm
from ml.vlm.tuned import IGNORE_INDEX, ChatSample, export_backbone
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

GREEDY = GenerationSettings(greedy=True, max_new_tokens=8, min_new_tokens=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def captioner(tiny_backbone: Path) -> Captioner:
    model = build_captioner(CaptionerConfig(backbone=str(tiny_backbone), image_size=56))
    # A fresh LoRA adapter is the identity (B = 0); random B makes the adapter matter.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval()


def _vision_spans(row: torch.Tensor, captioner: Captioner) -> list[int]:
    """Lengths of the runs of image-pad tokens in one row of input ids."""
    pad = captioner.inputs.image_token_id
    spans, run = [], 0
    for token in row.tolist():
        if token == pad:
            run += 1
        elif run:
            spans.append(run)
            run = 0
    return spans + ([run] if run else [])


def test_labels_keep_only_the_caption_and_its_end_token(captioner: Captioner) -> None:
    caption = "A {Object} inside a {Object}."
    batch = captioner.inputs(
        [
            ChatSample([draw_image(0)], "Describe.", caption),
            ChatSample([draw_image(1)], "Hi.", "X"),
        ],
        padding_side="right",
    )
    labels, ids = batch["labels"], batch["input_ids"]
    kept = labels[0] != IGNORE_INDEX
    answer = captioner.tokenizer(caption, add_special_tokens=False)["input_ids"]
    assert labels[0][kept].tolist() == [*answer, captioner.inputs.end_token_id]
    # The labelled tokens are the last real tokens of the row, equal to the inputs there.
    n_real = int(batch["attention_mask"][0].sum())
    assert kept.nonzero().flatten().tolist() == list(range(n_real - len(answer) - 1, n_real))
    assert torch.equal(labels[0][kept], ids[0][kept])
    # The shorter row's padding is masked out as well.
    assert bool((labels[1][batch["attention_mask"][1] == 0] == IGNORE_INDEX).all())


def test_the_loss_ignores_what_the_model_predicts_at_prompt_positions(
    captioner: Captioner,
) -> None:
    batch = captioner.inputs(
        [
            ChatSample([draw_image(2)], "Describe.", "A row of {Object}s."),
            ChatSample([draw_image(3), draw_image(4)], "Describe both.", "Two {Shape}s."),
        ],
        padding_side="right",
    )
    with torch.no_grad():
        loss = caption_loss(captioner, batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = captioner.model(**inputs).logits
    labels = batch["labels"]

    def masked_ce(all_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            all_logits[:, :-1].reshape(-1, all_logits.shape[-1]),
            targets[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    assert torch.allclose(loss, masked_ce(logits, labels), atol=1e-5)
    # Scrambling every prediction made at a prompt position changes nothing...
    predicts_prompt = labels[:, 1:] == IGNORE_INDEX
    scrambled = logits.clone()
    scrambled[:, :-1][predicts_prompt] = torch.randn_like(scrambled[:, :-1][predicts_prompt]) * 9
    assert torch.allclose(masked_ce(scrambled, labels), loss, atol=1e-5)
    # ...whereas labelling the prompt tokens too would change the loss.
    unmasked = torch.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORE_INDEX)
    assert not torch.allclose(masked_ce(logits, unmasked), loss, atol=1e-3)


def test_a_group_prompt_has_one_image_span_per_image(captioner: Captioner) -> None:
    prompt = get_prompt()
    groups = [[draw_image(i) for i in range(k)] for k in (1, 3, 2)]
    batch = captioner.inputs([ChatSample(g, prompt.text(len(g))) for g in groups])
    per_image = (TINY_IMAGE_SIZE // 14) ** 2 // 4
    for row, group in zip(batch["input_ids"], groups, strict=True):
        assert _vision_spans(row, captioner) == [per_image] * len(group)
        vision_start = captioner.tokenizer.convert_tokens_to_ids("<|vision_start|>")
        assert int((row == vision_start).sum()) == len(group)
    assert batch["image_grid_thw"].shape[0] == 6
    assert torch.equal(
        batch["mm_token_type_ids"].bool(), batch["input_ids"] == captioner.inputs.image_token_id
    )
    # Left padding: every prompt ends at the last column, where generation continues.
    assert bool(batch["attention_mask"][:, -1].all())
    assert "These 3 images" in captioner.tokenizer.decode(batch["input_ids"][1])


def test_greedy_generation_is_the_same_after_saving_and_loading(
    captioner: Captioner, tmp_path: Path
) -> None:
    images = [draw_image(5), draw_image(6)]
    before = caption_images(captioner, images, settings=GREEDY)
    save_captioner(captioner, tmp_path / "saved", global_step=7)
    loaded = load_captioner(tmp_path / "saved")
    after = caption_images(loaded, images, settings=GREEDY)
    assert [r.raw for r in after] == [r.raw for r in before]
    assert all(r.raw for r in before)
    # The adapter really is in play: without it the same prompt continues differently.
    with loaded.backbone.disable_adapter():  # type: ignore[operator]
        base = caption_images(loaded, images, settings=GREEDY)
    assert [r.raw for r in base] != [r.raw for r in before]
    assert loaded.config.prompt_version == PROMPT_VERSION


def test_batched_drafting_matches_drafting_one_group_at_a_time(captioner: Captioner) -> None:
    groups = [[draw_image(7)], [draw_image(8), draw_image(9), draw_image(10)]]
    together = caption_groups(captioner, groups, settings=GREEDY, batch_size=2)
    alone = [caption_group(captioner, group, settings=GREEDY) for group in groups]
    assert [r.raw for r in together] == [r.raw for r in alone]
    assert [r.n_images for r in together] == [1, 3]


def test_sampling_with_a_seed_repeats_and_other_seeds_differ(captioner: Captioner) -> None:
    images = [draw_image(11)]

    def draft(seed: int) -> str:
        settings = GenerationSettings(max_new_tokens=12, min_new_tokens=12, seed=seed)
        return caption_images(captioner, images, settings=settings)[0].raw

    first = draft(3)
    assert draft(3) == first
    assert any(draft(seed) != first for seed in (4, 5, 6))


def test_a_caption_cut_at_the_token_limit_is_reported_unusable(captioner: Captioner) -> None:
    result = caption_images(captioner, [draw_image(12)], settings=GREEDY)[0]
    assert not result.finished
    assert "cut off at max_new_tokens" in result.problems
    assert not result.usable
    assert result.prompt_version == PROMPT_VERSION


def test_drafting_stops_between_batches_when_asked(captioner: Captioner) -> None:
    images: list[Image.Image] = [draw_image(i) for i in range(5)]
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    results = caption_images(captioner, images, settings=GREEDY, batch_size=2, should_stop=stop)
    assert len(results) == 4


def test_an_exported_backbone_carries_the_merged_adapter(
    captioner: Captioner, tmp_path: Path
) -> None:
    samples = [ChatSample([draw_image(3)], get_prompt().text(1), "A {Object}.")]
    batch = captioner.inputs(samples, padding_side="right")
    with torch.no_grad():
        tuned = captioner.model(**captioner.to_device(batch)).logits
    folder = export_backbone(captioner, tmp_path / "exported")
    plain = load_vlm(folder)
    assert plain.tokenizer.chat_template == captioner.tokenizer.chat_template
    with torch.no_grad():
        exported = plain.model(**batch).logits
    torch.testing.assert_close(exported, tuned, atol=1e-4, rtol=1e-4)
    # The captioner still holds its adapter: exporting merged a copy.
    assert any("lora_B" in name for name, _ in captioner.named_parameters())
    base = load_vlm(captioner.config.backbone)
    with torch.no_grad():
        untuned = base.model(**batch).logits
    assert not torch.allclose(untuned, tuned, atol=1e-3)
