from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

from ml.captioning.captioner import load_captioner
from ml.captioning.captioner_training import (
    CaptionerTrainConfig,
    CaptionSamples,
    _main,
    caption_samples,
    read_seed_groups,
    train_captioner,
)
from ml.data.captions import DataFormatError
from ml.train import CHECKPOINT_PREFIX, METRICS_FILE
from ml.train.run_state import TRAINING_STATE_FILE, lr_factor
from tests.ml.conftest import TINY_IMAGE_SIZE, draw_image

CAPTIONS = ["A {Object} above a {Object}.", "Three {Object}s in a row."]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_export(folder: Path, count: int = 8) -> Path:
    """Our export format: caption jsonl, images/<md5>.png and seed_group.json with one group
    per caption (one member given by path, the others by released URL)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines, members = [], {caption: [] for caption in CAPTIONS}
    for i in range(count):
        buffer = io.BytesIO()
        draw_image(i).save(buffer, format="PNG")
        digest = hashlib.md5(buffer.getvalue()).hexdigest()
        (images / f"{digest}.png").write_bytes(buffer.getvalue())
        caption = CAPTIONS[i % 2]
        url = f"https://example.org/{i}.jpg"
        lines.append({"image_hash": digest, "url_link": url, "caption": caption})
        members[caption].append(f"images/{digest}.png" if i < 2 else url)
    (folder / "anonymous_captions_train.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    groups = [
        {"index_group": n, "anonymous_caption": f'"{caption}"', "image_urls": urls}
        for n, (caption, urls) in enumerate(members.items())
    ]
    (folder / "seed_group.json").write_text(json.dumps(groups), encoding="utf-8")
    return folder


def tiny_config(data: Path, out: Path, backbone: Path, **overrides: object) -> CaptionerTrainConfig:
    settings: dict[str, object] = {
        "data_dir": str(data),
        "output_dir": str(out),
        "backbone": str(backbone),
        "image_size": TINY_IMAGE_SIZE,
        "batch_size": 4,
        "epochs": 50,
        "max_steps": 4,
        "lr": 3e-3,
        "warmup_steps": 0,
        "save_every": 2,
        "log_every": 1,
        "finetune": "full",
        "freeze_vision": False,
        "group_max_images": 3,
    }
    settings.update(overrides)
    return CaptionerTrainConfig.from_dict(settings)


def test_seed_groups_resolve_local_paths_and_released_urls(tmp_path: Path) -> None:
    data = write_export(tmp_path / "export")
    groups = read_seed_groups(data / "seed_group.json")
    assert [g.caption for g in groups] == CAPTIONS  # wrapping quotes removed
    assert [len(g.image_paths) for g in groups] == [4, 4]
    assert all(path.is_file() for g in groups for path in g.image_paths)


def test_a_group_image_that_cannot_be_found_is_an_error(tmp_path: Path) -> None:
    data = write_export(tmp_path / "export")
    groups = json.loads((data / "seed_group.json").read_text())
    groups[0]["image_urls"].append("https://example.org/missing.jpg")
    (data / "seed_group.json").write_text(json.dumps(groups))
    with pytest.raises(DataFormatError, match=r"missing\.jpg"):
        read_seed_groups(data / "seed_group.json")


def test_group_samples_take_k_images_of_their_group(tmp_path: Path) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(data, tmp_path / "run", tmp_path, group_min_images=2)
    samples = caption_samples(config)
    assert len(samples) == 8 + 2
    sizes = set()
    for epoch in range(6):
        for index in (8, 9):
            chosen = samples.pick((epoch, index))
            group = samples.groups[index - 8]
            assert set(chosen.image_paths) <= set(group.image_paths)
            assert len(set(chosen.image_paths)) == len(chosen.image_paths)
            assert chosen.caption == group.caption
            sizes.add(len(chosen.image_paths))
            assert samples.pick((epoch, index)) == chosen  # fixed by seed, epoch and index
    assert sizes == {2, 3}
    sample = samples[(0, 9)]
    assert len(sample.images) == len(samples.pick((0, 9)).image_paths)
    assert sample.answer == CAPTIONS[1]


def test_each_group_image_is_also_a_sample_of_its_own_with_the_group_caption(
    tmp_path: Path,
) -> None:
    data = write_export(tmp_path / "export")
    groups = read_seed_groups(data / "seed_group.json")
    config = tiny_config(data, tmp_path / "run", tmp_path, use_single_images=False)
    samples = caption_samples(config)
    assert isinstance(samples, CaptionSamples)
    expected = [((path,), group.caption) for group in groups for path in group.image_paths]
    assert [(s.image_paths, s.caption) for s in samples.singles] == expected
    assert len(samples) == 8 + 2  # every image alone, then one draw per group
    alone = samples[(0, 0)]
    assert len(alone.images) == 1 and alone.answer == CAPTIONS[0]
    assert samples[(0, 8)].answer == CAPTIONS[0] and len(samples[(0, 8)].images) >= 2


def test_without_group_images_alone_the_groups_give_only_group_samples(tmp_path: Path) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(
        data, tmp_path / "run", tmp_path, use_single_images=False, group_images_alone=False
    )
    samples = caption_samples(config)
    assert isinstance(samples, CaptionSamples)
    assert samples.singles == [] and len(samples) == 2
    assert all(len(samples.pick((0, index)).image_paths) >= 2 for index in (0, 1))


def test_group_images_alone_can_be_the_only_samples_as_in_the_release(tmp_path: Path) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(
        data, tmp_path / "run", tmp_path, use_single_images=False, use_groups=False
    )
    samples = caption_samples(config)
    assert isinstance(samples, CaptionSamples)
    assert samples.groups == [] and len(samples) == len(samples.singles) == 8
    with pytest.raises(ValueError, match="nothing to train"):
        tiny_config(
            data,
            tmp_path / "run",
            tmp_path,
            use_single_images=False,
            use_groups=False,
            group_images_alone=False,
        ).validate()


def test_a_group_image_the_jsonl_already_pairs_with_its_group_caption_is_not_doubled(
    tmp_path: Path,
) -> None:
    data = write_export(tmp_path / "export")  # the jsonl holds every group image already
    jsonl = data / "anonymous_captions_train.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows[0]["caption"] = "An own caption of one {Object}."
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    samples = caption_samples(tiny_config(data, tmp_path / "run", tmp_path))
    assert isinstance(samples, CaptionSamples)
    # Eight jsonl pairs, the one image whose jsonl caption differs once more under its group's
    # caption, then one draw per group.
    assert len(samples.singles) == 9 and len(samples) == 9 + 2
    first = data / "images" / f"{rows[0]['image_hash']}.png"
    captions = sorted(s.caption for s in samples.singles if s.image_paths == (first,))
    assert captions == sorted(["An own caption of one {Object}.", CAPTIONS[0]])


def test_training_lowers_the_loss_and_saves_a_loadable_captioner(
    tmp_path: Path, tiny_backbone: Path
) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(data, tmp_path / "run", tiny_backbone, max_steps=8, save_every=4)
    messages: list[str] = []
    result = train_captioner(config, progress=lambda d, t, m: messages.append(m))
    assert result.global_step == 8 and not result.stopped
    losses = [json.loads(line)["loss"] for line in (result.output_dir / METRICS_FILE).open()]
    assert losses[-1] < losses[0] - 0.5
    assert sorted(p.name for p in result.output_dir.glob(f"{CHECKPOINT_PREFIX}*")) == [
        "checkpoint-4",
        "checkpoint-8",
    ]
    assert result.checkpoint is not None
    record = json.loads((result.checkpoint / "captioner_config.json").read_text())
    assert record["prompt_version"] == config.prompt_version
    assert record["extra"]["n_groups"] == 2
    loaded = load_captioner(result.checkpoint)
    assert loaded.config.finetune == "full"
    assert "done" in messages


def test_lora_training_changes_only_the_adapter(tmp_path: Path, tiny_backbone: Path) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(data, tmp_path / "run", tiny_backbone, finetune="lora", max_steps=2)
    result = train_captioner(config)
    assert result.checkpoint is not None
    saved = torch.load(result.checkpoint / TRAINING_STATE_FILE, weights_only=False)
    assert saved["trainable"]
    assert all("lora_" in name for name in saved["trainable"])
    assert (result.checkpoint / "adapter_config.json").is_file()


def test_a_stopped_run_resumes_where_it_stopped_and_ends_like_an_unbroken_one(
    tmp_path: Path, tiny_backbone: Path
) -> None:
    data = write_export(tmp_path / "export")
    unbroken = train_captioner(tiny_config(data, tmp_path / "a", tiny_backbone))
    polls: list[int] = []

    def stop_after_two_steps() -> bool:
        polls.append(1)
        return len(polls) == 2

    first = train_captioner(
        tiny_config(data, tmp_path / "b", tiny_backbone), should_stop=stop_after_two_steps
    )
    assert first.stopped and first.global_step == 2
    second = train_captioner(tiny_config(data, tmp_path / "b", tiny_backbone))
    assert second.resumed_from == tmp_path / "b" / "checkpoint-2"
    assert second.global_step == 4
    assert unbroken.checkpoint is not None and second.checkpoint is not None
    a = torch.load(unbroken.checkpoint / TRAINING_STATE_FILE, weights_only=False)["trainable"]
    b = torch.load(second.checkpoint / TRAINING_STATE_FILE, weights_only=False)["trainable"]
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)


def test_the_command_line_trains_from_a_json_config(
    tmp_path: Path, tiny_backbone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_export(tmp_path / "export")
    config = tiny_config(data, tmp_path / "run", tiny_backbone, max_steps=1, use_groups=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert _main(["--config", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["global_step"] == "1"
    assert (tmp_path / "run" / "checkpoint-1" / "captioner_config.json").is_file()


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown training config keys"):
        CaptionerTrainConfig.from_dict(
            {"data_dir": "d", "output_dir": "o", "backbone": "b", "learning_rate": 1}
        )


def test_warmup_then_cosine_decay() -> None:
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
