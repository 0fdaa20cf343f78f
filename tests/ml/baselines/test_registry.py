"""Retrieval baselines behind the Embedder interface, on tiny random CLIP / DINOv2 / Qwen2.5-VL
folders built on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.baselines.registry import BASELINE_NAMES, BaselineFactory, make_embedder
from ml.baselines.text import (
    CaptionConfig,
    CaptionTextEmbedder,
    ClipTextEncoder,
    MiniLMTextEncoder,
    image_key,
    limit_words,
)
from ml.baselines.tuned import TunedConfig, build_tuned_model, save_tuned
from ml.baselines.vision import ClipImageEmbedder, DinoEmbedder, load_clip, load_dinov2
from ml.search.embedder import Embedder
from ml.vlm.tiny_vision import build_tiny_clip, build_tiny_dinov2
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

# Small enough for the tiny VLM; a short caption keeps generation quick on a CPU.
CAPTIONS = CaptionConfig(image_size=TINY_IMAGE_SIZE, max_new_tokens=12, batch_size=4)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dinov2(tmp_path_factory.mktemp("tiny_dino"), seed=0)


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path, tiny_dino: Path, tiny_backbone: Path
) -> dict[str, Path]:
    """Untrained but saved tuned-CLIP, tuned-DINO and relsim checkpoints."""
    from ml.relsim.checkpoint import save_checkpoint
    from ml.relsim.model import RelsimConfig, build_relsim_model

    root = tmp_path_factory.mktemp("checkpoints")
    found = {}
    for kind, base in (("clip", tiny_clip), ("dino", tiny_dino)):
        model = build_tuned_model(TunedConfig(kind=kind, base_model=str(base)), device="cpu")
        found[f"tuned_{kind}"] = save_tuned(model, root / f"tuned_{kind}")
    relsim = build_relsim_model(
        RelsimConfig(backbone=str(tiny_backbone), image_size=TINY_IMAGE_SIZE), seed=0
    )
    found["relsim"] = save_checkpoint(relsim, root / "relsim")
    return found


@pytest.fixture(scope="module")
def factory(
    tiny_clip: Path, tiny_dino: Path, tiny_backbone: Path, checkpoints: dict[str, Path]
) -> BaselineFactory:
    return BaselineFactory(
        clip=tiny_clip,
        dino=tiny_dino,
        vlm=tiny_backbone,
        tuned_clip=checkpoints["tuned_clip"],
        tuned_dino=checkpoints["tuned_dino"],
        relsim=checkpoints["relsim"],
        device="cpu",
        caption_config=CAPTIONS,
        batch_size=3,
    )


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    return [draw_image(i) for i in range(5)]


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_every_baseline_gives_unit_float32_rows_the_same_each_time(
    factory: BaselineFactory, pictures: list[Image.Image], name: str
) -> None:
    embedder = factory.make(name)
    assert isinstance(embedder, Embedder)
    first = embedder.embed(pictures)
    assert first.dtype == np.float32
    assert first.ndim == 2 and first.shape[0] == len(pictures) and first.shape[1] > 1
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(pictures), first)


@pytest.mark.parametrize(
    "name", ["clip-i", "dino", "tuned-clip", "tuned-dino", "qwen-t", "qwen-t-minilm"]
)
def test_a_baseline_embeds_an_image_alike_alone_or_in_a_batch(
    factory: BaselineFactory, pictures: list[Image.Image], name: str
) -> None:
    embedder = factory.make(name)
    together = embedder.embed(pictures)
    alone = embedder.embed(pictures[3:4])
    np.testing.assert_allclose(alone[0], together[3], atol=1e-5)


def test_different_pictures_get_different_embeddings(
    factory: BaselineFactory, pictures: list[Image.Image]
) -> None:
    for name in ("clip-i", "dino", "tuned-clip", "tuned-dino"):
        rows = factory.make(name).embed(pictures)
        assert not np.allclose(rows[0], rows[1], atol=1e-4), name


def test_output_dimensions_follow_each_model(factory: BaselineFactory) -> None:
    image = [draw_image(0)]
    assert factory.make("clip-i").embed(image).shape == (1, 32)
    assert factory.make("dino").embed(image).shape == (1, 32)
    assert factory.make("clip-t").embed(image).shape == (1, 32)
    assert factory.make("qwen-t").embed(image).shape == (1, 32)
    assert factory.make("qwen-t-minilm").embed(image).shape == (1, 384)
    assert factory.make("tuned-clip").embed(image).shape == (1, 384)
    assert factory.make("tuned-dino").embed(image).shape == (1, 384)


def test_an_empty_list_gives_an_empty_matrix(factory: BaselineFactory) -> None:
    for name in ("clip-i", "dino", "tuned-clip"):
        assert factory.make(name).embed([]).shape[0] == 0


def test_the_caption_baselines_share_one_captioner_and_its_cache(
    factory: BaselineFactory, pictures: list[Image.Image]
) -> None:
    clip_t = factory.make("clip-t")
    captioner = factory.captioner()
    clip_t.embed(pictures[:2])
    cached = captioner.cached_count()
    for name in ("qwen-t", "qwen-t-minilm"):
        other = factory.make(name)
        other.embed(pictures[:2])
        assert captioner.cached_count() == cached
        assert getattr(other, "captioner") is getattr(clip_t, "captioner")  # noqa: B009


def test_qwen_t_embeds_the_vlm_caption_with_clip_text_as_the_paper_does(
    factory: BaselineFactory, pictures: list[Image.Image]
) -> None:
    qwen_t = factory.make("qwen-t")
    assert isinstance(qwen_t, CaptionTextEmbedder) and qwen_t.name == "qwen-t"
    assert isinstance(qwen_t.encoder, ClipTextEncoder)
    captions = qwen_t.captions(pictures)
    assert all(len(caption.split()) <= 30 for caption in captions)
    expected = ClipTextEncoder(factory.clip()).encode(captions)
    np.testing.assert_allclose(qwen_t.embed(pictures), expected, atol=1e-6)


def test_qwen_t_minilm_embeds_the_same_captions_with_minilm(
    factory: BaselineFactory, pictures: list[Image.Image]
) -> None:
    minilm = factory.make("qwen-t-minilm")
    assert isinstance(minilm, CaptionTextEmbedder) and minilm.name == "qwen-t-minilm"
    assert isinstance(minilm.encoder, MiniLMTextEncoder)
    qwen_t = factory.make("qwen-t")
    assert isinstance(qwen_t, CaptionTextEmbedder)
    captions = minilm.captions(pictures)
    assert captions == qwen_t.captions(pictures)
    expected = factory.minilm().encode(captions)
    np.testing.assert_allclose(minilm.embed(pictures), expected, atol=1e-6)


def test_captions_have_at_most_thirty_words(
    factory: BaselineFactory, pictures: list[Image.Image]
) -> None:
    captioner = factory.captioner()
    captions = captioner.caption(pictures)
    assert len(captions) == len(pictures)
    assert all(len(caption.split()) <= 30 for caption in captions)
    # Re-captioning the same pixels (another object) hits the cache and agrees.
    assert captioner.caption([pictures[2].copy()]) == [captions[2]]


def test_limit_words_cuts_and_unquotes() -> None:
    text = '"' + " ".join(f"w{i}" for i in range(40)) + '"'
    cut = limit_words(text, 30)
    assert cut.split() == [f"w{i}" for i in range(30)]
    assert limit_words("  a   {Object}\nbeside  a {Object} ") == "a {Object} beside a {Object}"


def test_image_key_depends_on_pixels_only() -> None:
    assert image_key(draw_image(1)) == image_key(draw_image(1).copy())
    assert image_key(draw_image(1)) != image_key(draw_image(2))


def test_clip_text_truncates_long_captions_to_its_positions(tiny_clip: Path) -> None:
    encoder = ClipTextEncoder(load_clip(tiny_clip, device="cpu"))
    long = " ".join(["ring"] * 300)
    rows = encoder.encode([long, "ring"])
    assert rows.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(rows[0], rows[1])


def test_the_tiny_clip_tokenizer_knows_every_character(tiny_clip: Path) -> None:
    tokenizer = load_clip(tiny_clip, device="cpu").tokenizer
    assert tokenizer is not None
    ids = tokenizer("Zebra-like {Thing} 42 ~ é")["input_ids"]
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # Only the closing token may be <|endoftext|>; CLIP pools its text at that token.
    assert ids.count(eos) == 1 and ids[-1] == eos


def test_a_tiny_clip_folder_loads_back_to_identical_embeddings(
    tiny_clip: Path, tmp_path: Path
) -> None:
    first = ClipImageEmbedder(load_clip(tiny_clip, device="cpu")).embed([draw_image(3)])
    loaded = load_clip(tiny_clip, device="cpu")
    loaded.model.save_pretrained(tmp_path / "again")
    loaded.image_processor.save_pretrained(tmp_path / "again")
    again = ClipImageEmbedder(load_clip(tmp_path / "again", device="cpu", with_tokenizer=False))
    np.testing.assert_array_equal(again.embed([draw_image(3)]), first)


def test_a_tiny_dino_folder_loads_back_to_identical_embeddings(
    tiny_dino: Path, tmp_path: Path
) -> None:
    first = DinoEmbedder(load_dinov2(tiny_dino, device="cpu")).embed([draw_image(3)])
    loaded = load_dinov2(tiny_dino, device="cpu")
    loaded.model.save_pretrained(tmp_path / "again")
    loaded.image_processor.save_pretrained(tmp_path / "again")
    again = DinoEmbedder(load_dinov2(tmp_path / "again", device="cpu"))
    np.testing.assert_array_equal(again.embed([draw_image(3)]), first)


def test_the_same_seed_builds_the_same_tiny_models(tmp_path: Path) -> None:
    a = load_dinov2(build_tiny_dinov2(tmp_path / "a", seed=3), device="cpu").model
    b = load_dinov2(build_tiny_dinov2(tmp_path / "b", seed=3), device="cpu").model
    c = load_dinov2(build_tiny_dinov2(tmp_path / "c", seed=4), device="cpu").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.embeddings.cls_token, c.embeddings.cls_token)
    clip_a = load_clip(build_tiny_clip(tmp_path / "ca", seed=3), device="cpu").model
    clip_b = load_clip(build_tiny_clip(tmp_path / "cb", seed=3), device="cpu").model
    assert torch.equal(clip_a.visual_projection.weight, clip_b.visual_projection.weight)


def test_tiny_folders_use_pil_image_processors(tiny_clip: Path, tiny_dino: Path) -> None:
    assert type(load_clip(tiny_clip).image_processor).__name__ == "CLIPImageProcessorPil"
    assert type(load_dinov2(tiny_dino).image_processor).__name__ == "BitImageProcessorPil"


def test_make_embedder_builds_a_weight_free_baseline_without_models() -> None:
    rows = make_embedder("histogram").embed([draw_image(0), draw_image(1)])
    assert rows.shape == (2, 512)


def test_make_embedder_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="clip-i"):
        make_embedder("lpips")


def test_tuned_baselines_need_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="tuned_clip"):
        make_embedder("tuned-clip")
