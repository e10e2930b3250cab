"""What the image recipes share: image–caption data preparation, pixel tensors, a caption tokenizer, CLIP
presets, and loading a CLIP text tower (from the CLIP recipe's output, a pipeline folder or the Hub).

The caption tokenizer is word-level (the `tokenizers` WordLevel model over the training captions, lowercased,
split on whitespace and punctuation, `[BOS] ... [EOS]` around every caption). It saves as a plain
`tokenizer.json`, so `AutoTokenizer`, `CLIPProcessor` and diffusers pipelines (`IFPipeline`,
`StableDiffusionPipeline`) load it offline; a real `CLIPTokenizer` would need a BPE vocab + merges trained for
it, which buys nothing on captions with a closed vocabulary. `model_max_length` is 77, what diffusers text
pipelines pad prompts to, so the text towers built here have 77 positions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    PreTrainedTokenizerFast,
)

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import IMAGE_EXTENSIONS, UnreadableMediaError, load_image
from hfrecipes.data import load_media_folder, load_source, parse_pipeline, run_pipeline
from hfrecipes.data.sources import is_saved_dataset

logger = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
TEXT_MAX_LENGTH = 77  # diffusers text pipelines pad prompts to 77 tokens (IFPipeline hard-codes it)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Text towers (CLIPTextConfig fields): the diffusion recipe's text encoder and the CLIP recipe's text side.
TEXT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
    # openai/clip-vit-base-patch32's text tower shape (vocabulary from its tokenizer).
    "clip-base": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
}
# Image towers (CLIPVisionConfig fields), for images of 16-32 px (tiny/small) or 224 px (clip-base).
VISION_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=4
    ),
    "small": dict(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, patch_size=4
    ),
    "clip-base": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32
    ),
}
PROJECTION_DIMS = {"tiny": 64, "small": 256, "clip-base": 512}


# ------------------------------------------------------------------------------------------------ data


def prepare_image_splits(
    *,
    dataset_name: str,
    dataset_split: str = "train",
    dataset_config: str | None = None,
    image_column: str = "image",
    required_columns: Sequence[str] = (),
    pipeline: list | None = None,
    validation_fraction: float = 0.1,
    max_samples: int | None = None,
    seed: int = 0,
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """load → check columns → cleaning steps (default: `image_filter` at >= 8 px) → seeded train/validation
    split. `dataset_name` is a builtin:, a Hub id, a saved/file dataset, or an image folder (with a
    metadata.jsonl/csv for captions or labels; unreadable files are listed in the report). The image column is
    renamed `image`; missing columns stop the run before any work."""
    steps = parse_pipeline(
        [{"image_filter": {"min_width": 8, "min_height": 8}}] if pipeline is None else pipeline
    )
    if not 0 < validation_fraction < 1:
        raise RecipeInputError(f"validation_fraction must be between 0 and 1, got {validation_fraction}.")
    report = DataReport(source=dataset_name)
    problems: list[tuple[str, str]] = []
    if _is_image_folder(Path(dataset_name)):  # imagefolder layout: images + optional metadata.jsonl/csv
        dataset, problems = load_media_folder(dataset_name, "image")
    else:
        dataset = load_source(dataset_name, split=dataset_split, hub_config=dataset_config, problems=problems)
    if problems:
        report.summary["unreadable_files"] = [{"path": p, "reason": r} for p, r in problems]
    missing = [c for c in (image_column, *required_columns) if c and c not in dataset.column_names]
    if missing:
        raise RecipeInputError(
            f"{dataset_name} has no column(s) {missing} (columns: {dataset.column_names}); set image_column / "
            "caption_column / label_column to the right names, or use conditioning: unconditional."
        )
    if image_column != "image":
        dataset = dataset.remove_columns([c for c in ["image"] if c in dataset.column_names])
        dataset = dataset.rename_column(image_column, "image")
    if max_samples:
        dataset = dataset.shuffle(seed=seed).select(range(min(max_samples, len(dataset))))
    report.add("load", rows_in=len(dataset), rows_out=len(dataset), details={"columns": dataset.column_names})
    dataset = run_pipeline(dataset, steps, report)
    if len(dataset) < 4:
        raise RecipeInputError(f"Only {len(dataset)} usable images after cleaning; need at least 4.")
    split = dataset.train_test_split(test_size=validation_fraction, seed=seed)
    train, validation = split["train"], split["test"]
    report.add(
        "split",
        rows_in=len(dataset),
        rows_out=len(train),
        removed=0,
        details={"train": len(train), "validation": len(validation)},
    )
    return train, validation, report


def _is_image_folder(path: Path) -> bool:
    if not path.is_dir() or is_saved_dataset(path):
        return False
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.rglob("*") if p.is_file())


def class_names(dataset: datasets.Dataset, column: str, *others: datasets.Dataset) -> list[str]:
    """The names of a label column: a ClassLabel's names, else the sorted distinct values (as strings) over
    `dataset` and `others` (pass every split, so that indices agree between them)."""
    feature = dataset.features.get(column)
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return sorted({str(v) for d in (dataset, *others) for v in d[column]})


def label_indices(dataset: datasets.Dataset, column: str, names: list[str]) -> list[int]:
    """The label column as indices into `names` (what `class_names` returned)."""
    feature = dataset.features.get(column)
    values = list(dataset[column])
    if isinstance(feature, datasets.ClassLabel):
        return [int(v) for v in values]
    return [names.index(str(v)) for v in values]


def to_pixels(
    image: Any,
    size: int,
    channels: int = 3,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    converted: list[int] | None = None,
) -> torch.Tensor:
    """One image as a C x size x size float tensor: converted to L/RGB (counted in `converted`), shortest side
    resized to `size` (bicubic), centre-cropped, scaled to [0, 1] then (x - mean) / std (default: [-1, 1])."""
    picture: Image.Image = load_image(image)
    mode = "L" if channels == 1 else "RGB"
    if picture.mode != mode:
        if converted is not None:
            converted[0] += 1
        picture = picture.convert(mode)
    width, height = picture.size
    if (width, height) != (size, size):
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        picture = picture.resize(new, Image.Resampling.BICUBIC)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        picture = picture.crop((left, top, left + size, top + size))
    array = np.asarray(picture, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (tensor - mean_t) / std_t


def pixel_stack(
    dataset: datasets.Dataset,
    size: int,
    channels: int,
    report: DataReport | None = None,
    split: str = "",
    **kwargs: Any,
) -> torch.Tensor:
    """Every image of `dataset` as one N x C x size x size tensor; images in another mode are converted
    and counted in the report (`convert_mode_<split>`)."""
    converted = [0]
    try:
        stack = torch.stack(
            [to_pixels(v, size, channels, converted=converted, **kwargs) for v in dataset["image"]]
        )
    except UnreadableMediaError as err:
        raise RecipeInputError(f"{err} Add `image_filter` to the data pipeline to drop such rows.") from err
    if report is not None:
        report.add(
            f"to_pixels_{split}",
            rows_in=len(dataset),
            rows_out=len(dataset),
            removed=0,
            details={"converted_mode": converted[0], "size": size, "channels": channels},
        )
    return stack


class PixelCaptionDataset(torch.utils.data.Dataset):
    """Rows as {"pixels": C x size x size in [-1, 1], "caption": str}. Small datasets are decoded once into
    memory (`cache_limit` floats); larger ones are decoded per row (use dataloader_num_workers)."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        captions: Sequence[str] | None,
        size: int,
        channels: int,
        *,
        pixels: torch.Tensor | None = None,
        cache_limit: int = 50_000_000,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        report: DataReport | None = None,
        split: str = "",
    ):
        self.dataset, self.size, self.channels = dataset, size, channels
        self.norm = {"mean": tuple(mean), "std": tuple(std)}
        self.captions = list(captions) if captions is not None else None
        if pixels is None and len(dataset) * channels * size * size <= cache_limit:
            pixels = pixel_stack(dataset, size, channels, report, split, **self.norm)
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.pixels is not None:
            pixels = self.pixels[index]
        else:
            pixels = to_pixels(self.dataset[int(index)]["image"], self.size, self.channels, **self.norm)
        return {"pixels": pixels, "caption": self.captions[index] if self.captions else ""}


# ------------------------------------------------------------------------------------------ tokenizer


def caption_tokenizer(texts: Sequence[str], model_max_length: int = TEXT_MAX_LENGTH):
    """A word-level tokenizer over the words of `texts` (lowercased; punctuation split off)."""
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for text in texts for w, _ in pre.pre_tokenize_str(text.lower())})
    if not words:
        raise RecipeInputError("No caption words to build a tokenizer from: the caption column is empty.")
    vocab = {token: i for i, token in enumerate([PAD, UNK, BOS, EOS, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Strip()])
    tokenizer.pre_tokenizer = pre
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


class CaptionCollator:
    """Batches of {"pixels", "caption"} rows as CLIPModel inputs (captions padded to the longest)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        tokens = tokenize(self.tokenizer, [r["caption"] for r in rows])
        return {
            "pixel_values": torch.stack([r["pixels"] for r in rows]),
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "return_loss": True,
        }


def special_ids(tokenizer: Any) -> dict[str, int]:
    """A tokenizer's pad/bos/eos ids as config fields (pad 0 when it has none)."""
    return {
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Captions padded to `max_length` (what the pipelines do), or to the longest caption when None."""
    padding = "max_length" if max_length else "longest"
    return tokenizer(
        list(texts), padding=padding, max_length=max_length, truncation=True, return_tensors="pt"
    )


# ------------------------------------------------------------------------------------------ models


def _preset(presets: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    if name not in presets:
        raise RecipeInputError(f"Unknown {what} preset {name!r}. Available: {', '.join(presets)}.")
    return dict(presets[name])


def text_config(preset: str, tokenizer: Any, overrides: dict[str, Any] | None = None):
    """A CLIPTextConfig from a text-tower preset (+ overrides) sized for `tokenizer`, with 77 positions."""
    values = {
        **_preset(TEXT_PRESETS, preset, "text encoder"),
        "max_position_embeddings": TEXT_MAX_LENGTH,
        **(overrides or {}),
    }
    unknown = [k for k in overrides or {} if not hasattr(CLIPTextConfig(), k)]
    if unknown:
        raise RecipeInputError(f"text_encoder_overrides has keys CLIPTextConfig does not know: {unknown}.")
    return CLIPTextConfig(vocab_size=len(tokenizer), **special_ids(tokenizer), **values)


def clip_config(
    preset: str,
    tokenizer: Any,
    image_size: int,
    num_channels: int = 3,
    overrides: dict[str, Any] | None = None,
):
    """A CLIPConfig from the preset's text and image towers; `overrides` may hold `text_config`,
    `vision_config` (dicts) and top-level fields such as `projection_dim`."""
    overrides = dict(overrides or {})
    vision = {**_preset(VISION_PRESETS, preset, "CLIP"), **overrides.pop("vision_config", {})}
    if image_size % vision["patch_size"]:
        raise RecipeInputError(
            f"image_size={image_size} is not a multiple of the image tower's patch_size={vision['patch_size']}; "
            "change image_size or set model_overrides: {vision_config: {patch_size: ...}}."
        )
    text = text_config(preset, tokenizer, overrides.pop("text_config", {})).to_dict()
    return CLIPConfig(
        text_config=text,
        vision_config={**vision, "image_size": image_size, "num_channels": num_channels},
        projection_dim=overrides.pop("projection_dim", PROJECTION_DIMS[preset]),
        **overrides,
    )


def clip_model(
    source: str | None,
    preset: str,
    overrides: dict[str, Any],
    tokenizer: Any,
    image_size: int,
    seed: int = 0,
) -> CLIPModel:
    """The CLIPModel of the CLIP recipe: loaded from `source` (a Hub CLIP or a previous run, safetensors), or
    built from `preset` (+ overrides) for `tokenizer`, initialised from `seed` without touching the global RNG.
    Its image tower must take `image_size` px images."""
    if source:
        try:
            model = CLIPModel.from_pretrained(source, use_safetensors=True)
        except OSError as err:
            raise RecipeInputError(f"Could not load a CLIPModel from {source!r}: {err}") from err
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPModel(clip_config(preset, tokenizer, image_size, 3, overrides))
    if model.config.vision_config.image_size != image_size:
        raise RecipeInputError(
            f"The image tower takes {model.config.vision_config.image_size} px images, image_size is {image_size}."
        )
    return model


def clip_processor(
    tokenizer: Any, image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> CLIPProcessor:
    """The CLIPProcessor saved beside a CLIP model: images converted to RGB, shortest side resized to
    `image_size`, centre-cropped and normalised with `mean` / `std` (as `to_pixels` does), and `tokenizer`."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(mean),
        image_std=list(std),
        do_convert_rgb=True,
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def clip_usage(output_dir: Path) -> str:
    """The model card's usage snippet for a CLIP model directory."""
    return (
        f'from transformers import CLIPModel, CLIPProcessor\n\nmodel = CLIPModel.from_pretrained("{output_dir}")\n'
        f'processor = CLIPProcessor.from_pretrained("{output_dir}")\n'
        'inputs = processor(text=["a large red circle in the center"], images=[image], return_tensors="pt", padding=True)\n'
        "probs = model(**inputs).logits_per_image.softmax(-1)"
    )


def load_text_tower(name_or_path: str) -> tuple[Any, Any]:
    """(CLIPTextModel, tokenizer) from a CLIP model (the CLIP recipe's output or a Hub CLIP id), a text-encoder
    directory, or a diffusers pipeline folder (its `text_encoder/` and `tokenizer/` subfolders)."""
    path = Path(name_or_path)
    model_dir, tok_dir = name_or_path, name_or_path
    if (path / "text_encoder").is_dir():
        model_dir, tok_dir = str(path / "text_encoder"), str(path / "tokenizer")
    try:
        encoder = CLIPTextModel.from_pretrained(model_dir, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError) as err:
        raise RecipeInputError(
            f"Could not load a CLIP text encoder and tokenizer from {name_or_path!r}: {err}. Point "
            "text_encoder_name_or_path at the CLIP recipe's output, a pipeline folder or a Hub CLIP id."
        ) from err
    if encoder.config.max_position_embeddings < TEXT_MAX_LENGTH:
        raise RecipeInputError(
            f"The text encoder at {name_or_path!r} has {encoder.config.max_position_embeddings} positions; diffusers "
            f"pipelines pad prompts to {TEXT_MAX_LENGTH}. Train it with max_position_embeddings >= {TEXT_MAX_LENGTH}."
        )
    return encoder, tokenizer


__all__ = [
    "CLIP_MEAN",
    "CaptionCollator",
    "PixelCaptionDataset",
    "CLIP_STD",
    "TEXT_MAX_LENGTH",
    "TEXT_PRESETS",
    "VISION_PRESETS",
    "caption_tokenizer",
    "class_names",
    "clip_config",
    "clip_model",
    "clip_processor",
    "clip_usage",
    "label_indices",
    "load_text_tower",
    "pixel_stack",
    "prepare_image_splits",
    "special_ids",
    "text_config",
    "to_pixels",
    "tokenize",
]
