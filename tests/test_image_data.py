"""Built-in image data (digits, shapes), image-caption preparation, the caption tokenizer and the offline image
evaluation (attribute classifier, Fréchet distance, retrieval recall)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfrecipes.builtins.images import DIGIT_NAMES, SHAPE_COLORS, shape_caption
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source
from hfrecipes.diffusion.evaluation import frechet_distance
from hfrecipes.image.evaluation import ImageEvaluator, retrieval_recall
from hfrecipes.multimodal.vision_text import (
    caption_tokenizer,
    clip_config,
    pixel_stack,
    prepare_image_splits,
    to_pixels,
)


def test_digits_builtin_has_upsampled_images_labels_and_matching_captions():
    digits = load_source("builtin:digits?size=16")
    assert len(digits) == 1797 and digits.column_names == ["image", "text", "label"]
    assert digits.features["label"].names == list(DIGIT_NAMES)
    row = digits[7]
    assert row["image"].size == (16, 16) and row["image"].mode == "L"
    assert row["text"] == f"a handwritten digit {DIGIT_NAMES[row['label']]}"
    pixels = np.asarray(row["image"])
    assert pixels.max() > 200 and pixels.min() < 30  # white ink on black, full range after upsampling

    subset = load_source("builtin:digits?size=8&n=50&seed=3&mode=RGB")
    again = load_source("builtin:digits?size=8&n=50&seed=3&mode=RGB")
    assert len(subset) == 50 and subset[0]["image"].mode == "RGB" and subset["text"] == again["text"]


def test_shapes_builtin_draws_what_the_caption_and_columns_say():
    shapes = load_source("builtin:shapes?n=40&size=32&sizes=large&positions=center&seed=1")
    assert shapes.column_names == ["image", "text", "color", "shape", "size", "position"]
    names = {c: shapes.features[c].names for c in ("color", "shape", "size", "position")}
    assert names["size"] == ["large"] and names["position"] == ["center"]
    for row in shapes:
        color, shape = names["color"][row["color"]], names["shape"][row["shape"]]
        assert (
            row["text"]
            == shape_caption(color, shape, "large", "center")
            == f"a large {color} {shape} in the center"
        )
        centre = np.asarray(row["image"], dtype=float)[16, 16]
        assert np.abs(centre - SHAPE_COLORS[color]).max() < 40, (row["text"], centre)
    # Same seed, same data; the position words land where they say (bright pixels in the named quadrant).
    assert (
        load_source("builtin:shapes?n=40&size=32&sizes=large&positions=center&seed=1")["text"]
        == shapes["text"]
    )
    corner = load_source("builtin:shapes?n=5&size=32&positions=top left&colors=white&sizes=large")
    for image in corner["image"]:
        gray = np.asarray(image.convert("L"), dtype=float)
        assert gray[:16, :16].mean() > 2 * gray[16:, 16:].mean()


@pytest.mark.parametrize(
    "spec",
    [
        "builtin:shapes?colors=mauve",
        "builtin:shapes?n=0",
        "builtin:digits?size=x",
        "builtin:digits?mode=CMYK",
    ],
)
def test_bad_builtin_options_are_refused(spec):
    with pytest.raises(RecipeInputError):
        load_source(spec)


def test_prepare_image_splits_checks_columns_and_converts_modes(tmp_path):
    train, validation, report = prepare_image_splits(
        dataset_name="builtin:digits?size=8&n=100",
        required_columns=["text", "label"],
        validation_fraction=0.2,
    )
    assert len(train) == 80 and len(validation) == 20
    assert [s.step for s in report.steps][:2] == ["load", "image_filter"]
    stack = pixel_stack(
        train, 8, 3, report, "train"
    )  # grayscale digits into an RGB model: converted, counted
    assert stack.shape == (80, 3, 8, 8) and stack.min() >= -1 and stack.max() <= 1
    assert report.steps[-1].details["converted_mode"] == 80
    with pytest.raises(RecipeInputError, match="caption"):
        prepare_image_splits(dataset_name="builtin:digits?size=8&n=20", required_columns=["caption"])
    with pytest.raises(RecipeInputError, match="photo"):
        prepare_image_splits(dataset_name="builtin:digits?size=8&n=20", image_column="photo")


def test_to_pixels_resizes_crops_and_normalises():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    pixels = to_pixels(image, 10, 3)
    assert pixels.shape == (3, 10, 10)
    assert torch.allclose(pixels[0], torch.ones(10, 10)) and torch.allclose(pixels[1], -torch.ones(10, 10))
    assert to_pixels(image, 10, 1).shape == (1, 10, 10)


def test_caption_tokenizer_is_word_level_with_bos_eos_and_saves(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = caption_tokenizer(["a large red circle at the top left", "a small blue square in the center"])
    ids = tokenizer("A large RED square")["input_ids"]
    assert len(ids) == 6 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a large red square"
    assert tokenizer("a purple circle")["input_ids"][2] == tokenizer.unk_token_id
    tokenizer.save_pretrained(tmp_path)
    assert (
        AutoTokenizer.from_pretrained(tmp_path)("a red circle")["input_ids"]
        == tokenizer("a red circle")["input_ids"]
    )
    config = clip_config("tiny", tokenizer, image_size=32)
    assert (
        config.text_config.vocab_size == len(tokenizer)
        and config.text_config.eos_token_id == tokenizer.eos_token_id
    )
    with pytest.raises(RecipeInputError, match="patch_size"):
        clip_config("tiny", tokenizer, image_size=30)


def test_frechet_distance_is_zero_for_equal_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8))
    assert frechet_distance(real, real) < 1e-6
    shifted = real + 3.0
    assert frechet_distance(real, shifted) == pytest.approx(8 * 9.0, rel=1e-6)
    assert frechet_distance(real, rng.normal(size=(500, 8))) < 1.0


def test_retrieval_recall_counts_identical_captions_once():
    captions = ["red", "red", "blue", "green"]
    texts = torch.eye(4)[[0, 0, 1, 2]]
    perfect = retrieval_recall(texts.clone(), texts, captions, ks=(1, 2))
    assert perfect["image_to_text_recall@1"] == 1.0 and perfect["text_to_image_recall@1"] == 1.0
    assert perfect["retrieval_unique_captions"] == 3 and perfect["image_to_text_chance@1"] == pytest.approx(
        1 / 3
    )
    # Images that match the wrong caption: recall@1 is 0, recall@2 picks up the right one among 3.
    wrong = retrieval_recall(texts[[2, 2, 0, 1]] + 0.5 * texts, texts, captions, ks=(1, 3))
    assert wrong["image_to_text_recall@1"] == 0.0 and wrong["image_to_text_recall@3"] == 1.0


def test_attribute_classifier_scores_real_digits_and_rejects_noise():
    train, validation, _ = prepare_image_splits(
        dataset_name="builtin:digits?size=16&n=600", validation_fraction=0.2
    )
    labels = {
        s: {"label": torch.tensor(list(d["label"]))} for s, d in (("train", train), ("val", validation))
    }
    real_train, real_val = pixel_stack(train, 16, 1), pixel_stack(validation, 16, 1)
    evaluator = ImageEvaluator(real_train, labels["train"], real_val, labels["val"], {"label": 10}, seed=0)
    assert evaluator.reference_metrics["classifier_accuracy_label"] > 0.85
    on_real = evaluator(real_val, labels["val"])
    noise = torch.rand(120, 1, 32, 32) * 2 - 1  # another size: resized to the classifier's 16 px
    on_noise = evaluator(noise, {"label": labels["val"]["label"][:120]})
    assert on_real["adherence_label"] > 0.85 and on_noise["adherence_label"] < 0.3
    assert on_real["frechet_distance"] < 1e-6 < on_noise["frechet_distance"]


def test_image_column_of_a_hub_style_dataset_is_renamed(monkeypatch):
    images = [Image.new("RGB", (16, 16), (i * 20, 0, 0)) for i in range(10)]
    dataset = datasets.Dataset.from_dict({"picture": images, "caption": [f"red {i}" for i in range(10)]})
    monkeypatch.setattr("hfrecipes.multimodal.vision_text.load_source", lambda *a, **k: dataset)
    train, validation, _ = prepare_image_splits(
        dataset_name="x/y", image_column="picture", required_columns=["caption"]
    )
    assert "image" in train.column_names and len(train) + len(validation) == 10


def test_an_image_folder_with_captions_is_read_with_unreadable_files_reported(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    lines = []
    for i in range(12):
        mode, colour = ("L", 200) if i % 3 == 0 else ("RGB", (200, 20, 20))
        Image.new(mode, (24, 24), colour).save(folder / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"picture {i}"}))
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    train, validation, report = prepare_image_splits(
        dataset_name=str(folder), required_columns=["text"], validation_fraction=0.25
    )
    assert len(train) + len(validation) == 12 and train[0]["text"].startswith("picture")
    assert report.summary["unreadable_files"][0]["path"] == "broken.png"
    stack = pixel_stack(train, 16, 3, report, "train")  # grayscale files converted to RGB, counted
    assert stack.shape == (9, 3, 16, 16) and report.steps[-1].details["converted_mode"] == sum(
        int(t.split()[1]) % 3 == 0 for t in train["text"]
    )


def test_clip_score_is_scaled_cosine_clipped_at_zero():
    from hfrecipes.image.evaluation import clip_score

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert clip_score(a, a * 3) == pytest.approx(100.0)
    assert clip_score(a, -a) == 0.0 and clip_score(a, a.flip(1)) == pytest.approx(0.0)
