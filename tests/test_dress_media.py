"""The dress rehearsal's media fixtures (bench/dress_media.py): every Hub id of the media full-scale configs has a
fixture, each builds (seeded, the same weights every time) and loads with the loaders the recipes use. The
2-step runs themselves are bench/dress_rehearsal.py's, not the default suite's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from hfrecipes.video.components import VideoComponents

from .conftest import ROOT, load_recipe

SPEC = importlib.util.spec_from_file_location("dress_media", ROOT / "bench" / "dress_media.py")
dress_media = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dress_media)

# `org/name` (a Hub id) or a relative path; existing repository files (none in these configs) are not ids.
ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _config_ids() -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    for stem, (_, config) in dress_media.CONFIGS.items():
        values = yaml.safe_load((ROOT / "recipes" / config).read_text())
        keys = {k: v for k, v in values.items() if k != "output_dir"}
        ids[stem] = {s for s in _strings(keys) if ID.match(s) and not (ROOT / s).exists()}
    return ids


def test_the_media_configs_are_the_full_scale_media_configs():
    full_scale = {
        p.stem
        for modality in ("image", "video", "audio", "multimodal")
        for p in (ROOT / "recipes" / modality / "configs").glob("*.yaml")
        if "Full scale" in p.read_text().split("\n", 1)[0]
    }
    assert set(dress_media.CONFIGS) == full_scale
    for script, config in dress_media.CONFIGS.values():
        assert (ROOT / "recipes" / script).is_file() and (ROOT / "recipes" / config).is_file()


def test_every_hub_id_of_the_media_configs_has_a_fixture_and_no_fixture_is_unused():
    ids = set().union(*_config_ids().values())
    assert ids == set(dress_media.MODEL_FIXTURES) | set(dress_media.DATASET_FIXTURES)
    assert not set(dress_media.MODEL_FIXTURES) & set(dress_media.DATASET_FIXTURES)
    assert dress_media.SKIP == {}
    assert set(dress_media.CPU_CAPS) <= set(dress_media.CONFIGS)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dress_media")
    for build in {**dress_media.MODEL_FIXTURES, **dress_media.DATASET_FIXTURES}.values():
        build(root)
    return root


@pytest.mark.parametrize(
    "name", [*dress_media.MODEL_FIXTURES, *dress_media.DATASET_FIXTURES], ids=lambda n: n.split("/")[-1]
)
def test_each_fixture_loads_with_the_recipes_loaders(fixtures, name):
    table = dress_media.MODEL_FIXTURES if name in dress_media.MODEL_FIXTURES else dress_media.DATASET_FIXTURES
    path = table[name](fixtures)  # built already: returned as it is
    assert path == fixtures / name and (path / ".complete").is_file()
    loaded = dress_media.load_fixture(name, path)
    expected = {
        "stable-diffusion-v1-5/stable-diffusion-v1-5": {
            "StableDiffusionPipeline",
            "UNet2DConditionModel",
            "AutoencoderKL",
            "CLIPTextModel",
            "CLIPTokenizer",
            "PNDMScheduler",
            "StableDiffusionSafetyChecker",
        },
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {
            "WanPipeline",
            "WanTransformer3DModel",
            "AutoencoderKLWan",
            "UMT5EncoderModel",
            "T5Tokenizer",
            "UniPCMultistepScheduler",
        },
        "stabilityai/sd-vae-ft-mse": {"AutoencoderKL"},
        "openai/clip-vit-large-patch14": {"CLIPTextModel", "CLIPTokenizer", "CLIPModel"},
        "openai/clip-vit-base-patch32": {"CLIPModel", "CLIPTokenizer"},
        "microsoft/speecht5_tts": {"SpeechT5ForTextToSpeech", "SpeechT5Processor", "speakers512"},
        "microsoft/speecht5_hifigan": {"SpeechT5HifiGan"},
        "microsoft/wavlm-base-plus-sv": {"WavLMForXVector", "Wav2Vec2FeatureExtractor", "xvector512"},
        "lambdalabs/naruto-blip-captions": {"Dataset['image', 'text']x64"},
        "data/LJSpeech-1.1": {"LJSpeech['audio', 'file_name', 'raw_text', 'speaker_id', 'text']x40"},
        "data/my_clips": {"VideoFolder['file_name', 'text', 'video']x4"},
    }[name]
    assert expected <= set(loaded), loaded


def test_model_fixtures_are_the_same_weights_every_time(fixtures, tmp_path):
    for name in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "microsoft/speecht5_tts"):
        again = dress_media.MODEL_FIXTURES[name](tmp_path)
        first = sorted((fixtures / name).rglob("*.safetensors"))
        assert first and [p.relative_to(fixtures) for p in first] == [
            p.relative_to(tmp_path) for p in sorted(again.rglob("*.safetensors"))
        ]
        for a in first:
            b, c = load_file(a), load_file(tmp_path / a.relative_to(fixtures))
            assert b.keys() == c.keys() and all(b[k].equal(c[k]) for k in b), a


def test_the_rehearsal_config_changes_ids_precision_and_steps_only(fixtures):
    for stem, (_, config) in dress_media.CONFIGS.items():
        shipped = yaml.safe_load((ROOT / "recipes" / config).read_text())
        changed = dress_media.rehearsal_config(stem, fixtures)
        caps = dress_media.CPU_CAPS.get(stem, {})
        assert all(isinstance(why, str) and why for _, why in caps.values())
        for key, value in shipped.items():
            if key in caps:
                assert changed[key] == caps[key][0]
            elif key == "report_to" and changed[key] == "none":  # the tracker is not installed here
                assert importlib.util.find_spec(value) is None
            elif isinstance(value, str) and value in _config_ids()[stem]:
                assert Path(changed[key]) == fixtures / value
            elif key in ("bf16", "fp16"):
                assert changed[key] is False
            elif key != "max_steps":
                assert changed[key] == value, (stem, key)
        assert changed["max_steps"] == 2


def test_the_shipped_wan_clip_shape_fits_the_fixture_pipeline(fixtures, tmp_path):
    """CPU_CAPS shrinks the Wan clips for the 2-step run; the shipped 81 frames at 480 px are still checked
    against the fixture pipeline's VAE compression and patch size (VideoComponents.plan, before any data)."""
    config = dress_media.rehearsal_config("video_wan_lora", fixtures)
    shipped = yaml.safe_load((ROOT / "recipes" / dress_media.CONFIGS["video_wan_lora"][1]).read_text())
    config.update(num_frames=shipped["num_frames"], resolution=shipped["resolution"])
    path = tmp_path / "video_wan_lora.yaml"
    path.write_text(yaml.safe_dump(config))
    recipe = load_recipe("video/train_video_diffusion.py")
    data_args, model_args, *_ = recipe.parse_args(
        ["--config", str(path), "--output_dir", str(tmp_path / "o")]
    )
    components = VideoComponents.plan(data_args, model_args)
    assert components.model_input_shape() == (16, 21, 60, 60)
