"""Media fixtures of the dress rehearsal (bench/dress_rehearsal.py): every Hub model and dataset id that the media
full-scale configs read, as a tiny random local stand-in of the same architecture class and folder layout.

    python bench/dress_media.py --check DIR            # build every fixture under DIR and load each as the recipe does
    python bench/dress_media.py --run STEM [...] --workdir DIR   # a 2-step run of media configs, as the runner does

The media full-scale configs (`CONFIGS`) read these ids:
- `stable-diffusion-v1-5/stable-diffusion-v1-5`: a `StableDiffusionPipeline` folder (unet/ UNet2DConditionModel with
  cross-attention blocks, as diffusers' tests build it, vae/ AutoencoderKL with 8x down-sampling and 4 latent channels, text_encoder/ CLIPTextModel,
  tokenizer/ CLIPTokenizer, scheduler/ PNDMScheduler, safety_checker/ StableDiffusionSafetyChecker,
  feature_extractor/ CLIPImageProcessor), as `DiffusionPipeline.from_pretrained` loads it;
- `stabilityai/sd-vae-ft-mse`: an AutoencoderKL folder (the VAE alone);
- `openai/clip-vit-large-patch14`, `openai/clip-vit-base-patch32`: CLIPModel + CLIPProcessor folders (patch 14 /
  32 at 224 px), which the diffusion recipe reads as a text tower (and CLIP scorer) and the CLIP recipe fine-tunes;
- `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`: a `WanPipeline` folder (transformer/ WanTransformer3DModel, vae/
  AutoencoderKLWan with Wan's 8x spatial and 4x temporal compression, text_encoder/ UMT5EncoderModel, tokenizer/
  T5Tokenizer, scheduler/ UniPCMultistepScheduler with flow sigmas);
- `microsoft/speecht5_tts`: SpeechT5ForTextToSpeech + SpeechT5Processor (SpeechT5's feature extractor; the
  tokenizer is a character PreTrainedTokenizerFast, which SpeechT5Processor loads like the recipe's own outputs:
  the Hub's SpeechT5Tokenizer needs `sentencepiece`, which hfrecipes does not install);
- `microsoft/speecht5_hifigan`: SpeechT5HifiGan; `microsoft/wavlm-base-plus-sv`: WavLMForXVector (512-d
  x-vectors, SpeechT5's speaker_embedding_dim) + its Wav2Vec2FeatureExtractor;
- data: `lambdalabs/naruto-blip-captions` (a saved dataset with `image` and `text`, as `load_dataset` gives it),
  `data/LJSpeech-1.1` (an LJSpeech folder: `wavs/*.wav` at 22,050 Hz + `metadata.csv`), `data/my_clips` (a clip
  folder: 81-frame 480 px mp4 clips + metadata.jsonl).

Every fixture is seeded (the same weights every time) and built in seconds. `CPU_CAPS` lists the few keys, other
than ids, precision and run length, that a run on this CPU must change, each with its reason (the text-to-image
config's UNet, built from a preset rather than downloaded, and the Wan clips' length and size); `SKIP` is empty.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from diffusers import (
    AutoencoderKL,
    AutoencoderKLWan,
    DiffusionPipeline,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image, ImageDraw
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    SpeechT5Config,
    SpeechT5ForTextToSpeech,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    SpeechT5Processor,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
    WavLMForXVector,
)

from hfrecipes.audio.data import load_speech_source
from hfrecipes.audio.features import MelConfig, Vocoder, speecht5_feature_extractor
from hfrecipes.audio.frontend import build_char_tokenizer
from hfrecipes.audio.models import XVectorEmbedder, tts_model_config, tts_processor
from hfrecipes.data.media import load_media_folder
from hfrecipes.diffusion.pipelines import load_pipeline
from hfrecipes.diffusion.vaes import load_vae
from hfrecipes.image.evaluation import ClipScorer
from hfrecipes.multimodal.vision_text import clip_model, load_text_tower, prepare_image_splits
from hfrecipes.text.tokenization import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# config stem -> (recipe script, config file), both relative to recipes/.
CONFIGS: dict[str, tuple[str, str]] = {
    "tts_speecht5_finetune": ("audio/train_tts.py", "audio/configs/tts_speecht5_finetune.yaml"),
    "diffusion_latent_text2img": ("image/train_diffusion.py", "image/configs/diffusion_latent_text2img.yaml"),
    "diffusion_sd_lora": ("image/train_diffusion.py", "image/configs/diffusion_sd_lora.yaml"),
    "clip_vit_b32_finetune": ("multimodal/train_clip.py", "multimodal/configs/clip_vit_b32_finetune.yaml"),
    "video_wan_lora": ("video/train_video_diffusion.py", "video/configs/video_wan_lora.yaml"),
}

SEED = 0
# Captions / transcripts draw on these words; every character of them is in the tokenizers below.
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "pink"]
SHAPES = ["circle", "square", "triangle", "ninja", "robot", "girl", "man", "cat"]
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-()"  # SpeechT5's characters
)


# -- helpers ------------------------------------------------------------------------------------------------
def _fresh(path: Path) -> Path:
    """An empty directory at `path` (a half-written one from an interrupted build is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _fixture(hub_id: str, build: Callable[[Path], None]) -> Callable[[Path], Path]:
    """The fixture of `hub_id`: `build(dir)` run once under a root, at `root/<hub_id>` (the id's folders kept, so
    a fixture's folder has the id's last name, as a download has); a finished one (`.complete`) is reused."""

    def fixture(root: Path) -> Path:
        path = Path(root) / hub_id
        if (path / ".complete").is_file():
            return path
        torch.manual_seed(SEED)
        build(_fresh(path))
        (path / ".complete").write_text("")
        return path

    fixture.__name__ = build.__name__.removeprefix("_build_")
    fixture.__doc__ = build.__doc__
    return fixture


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def clip_tokenizer() -> CLIPTokenizer:
    """A CLIP byte-level BPE tokenizer with a small vocabulary: every byte alone and word-final (`</w>`), the
    merges that spell the fixture words, and CLIP's two special tokens (<|endoftext|> pads, as OpenAI's does)."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(COLORS + SHAPES + ["a", "with", "hair", "eyes", "the"]):
        token = word[0]
        for k, ch in enumerate(word[1:], start=1):
            piece = ch + ("</w>" if k == len(word) - 1 else "")
            merged = token + piece
            if merged not in vocab:
                merges.append((token, piece))
                vocab[merged] = len(vocab)
            token = merged
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _clip_text_config(tokenizer: Any) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _clip_vision_config(patch_size: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        image_size=224,
        patch_size=patch_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        hidden_act="quick_gelu",
    )


def _clip_image_processor() -> CLIPImageProcessor:
    """OpenAI CLIP's preprocessing: shortest side to 224, centre crop 224, CLIP's mean and std."""
    return CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def _clip_model(path: Path, patch_size: int) -> None:
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=_clip_text_config(tokenizer).to_dict(),
        vision_config=_clip_vision_config(patch_size).to_dict(),
        projection_dim=32,
    )
    CLIPModel(config).save_pretrained(path, safe_serialization=True)
    CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tokenizer).save_pretrained(path)


def _sd_vae(sample_size: int) -> AutoencoderKL:
    """Stable Diffusion's VAE layout (4 levels: 8x down-sampling, 4 latent channels, 2 layers per block,
    scaling 0.18215) at tiny widths."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=sample_size,
        scaling_factor=0.18215,
    )


# -- models -------------------------------------------------------------------------------------------------
def _build_stable_diffusion_v1_5(path: Path) -> None:
    """stable-diffusion-v1-5/stable-diffusion-v1-5: a StableDiffusionPipeline with SD 1.x's component layout."""
    tokenizer = clip_tokenizer()
    # As diffusers' own tests build it: no attention at the highest resolution (64 x 64 latents at 512 px are 4,096
    # tokens, which on a CPU cost minutes per evaluation), cross-attention below, 2 layers per block.
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        norm_num_groups=4,
        attention_head_dim=2,
        cross_attention_dim=32,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        prediction_type="epsilon",
    )
    safety_config = CLIPConfig(
        text_config=_clip_text_config(tokenizer).to_dict(),
        vision_config=_clip_vision_config(14).to_dict(),
        projection_dim=32,
    )
    pipe = StableDiffusionPipeline(
        vae=_sd_vae(512),
        text_encoder=CLIPTextModel(_clip_text_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=StableDiffusionSafetyChecker(safety_config),
        feature_extractor=_clip_image_processor(),
        requires_safety_checker=True,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def _build_sd_vae_ft_mse(path: Path) -> None:
    """stabilityai/sd-vae-ft-mse: Stable Diffusion's AutoencoderKL alone (config + weights at the root)."""
    _sd_vae(256).save_pretrained(path, safe_serialization=True)


def _build_clip_vit_large_patch14(path: Path) -> None:
    """openai/clip-vit-large-patch14: CLIPModel (patch 14, 224 px) + CLIPProcessor."""
    _clip_model(path, patch_size=14)


def _build_clip_vit_base_patch32(path: Path) -> None:
    """openai/clip-vit-base-patch32: CLIPModel (patch 32, 224 px) + CLIPProcessor."""
    _clip_model(path, patch_size=32)


def umt5_tokenizer() -> T5Tokenizer:
    """A T5-style Unigram tokenizer (SentencePiece's '▁' word boundaries, <pad>=0 </s>=1 <unk>=2, extra ids),
    built from a score list, so no sentencepiece model is needed."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    words = dict.fromkeys(COLORS + SHAPES + ["a", "the", "walking", "across", "sunny", "garden", "waves"])
    pieces += [(f"▁{w}", -3.0) for w in words]
    pieces += [(c, -5.0) for c in dict.fromkeys(ALPHABET.replace(" ", ""))]
    pieces += [(f"▁{c}", -6.0) for c in dict.fromkeys(ALPHABET.replace(" ", ""))]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in range(9, -1, -1)]
    return T5Tokenizer(vocab=pieces, extra_ids=10)


def _build_wan2_1_t2v_1_3b_diffusers(path: Path) -> None:
    """Wan-AI/Wan2.1-T2V-1.3B-Diffusers: a WanPipeline (WanTransformer3DModel, AutoencoderKLWan, UMT5 encoder)."""
    tokenizer = umt5_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=32,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=1,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
    )
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    pipe.save_pretrained(path, safe_serialization=True)


def speech_tokenizer():
    """SpeechT5's character vocabulary (both cases, digits, punctuation, '▁' for space) as the character
    tokenizer the TTS recipe builds (hfrecipes.audio.frontend)."""
    return build_char_tokenizer([ALPHABET])


def _build_speecht5_tts(path: Path) -> None:
    """microsoft/speecht5_tts: SpeechT5ForTextToSpeech (80 mel bins, reduction 2, 512-d speakers) + processor."""
    tokenizer = speech_tokenizer()
    config = SpeechT5Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=32,
        speech_decoder_postnet_layers=5,
        speaker_embedding_dim=512,
        num_mel_bins=80,
        reduction_factor=2,
        max_speech_positions=1876,
        max_text_positions=600,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    SpeechT5ForTextToSpeech(config).save_pretrained(path, safe_serialization=True)
    processor = SpeechT5Processor(feature_extractor=speecht5_feature_extractor(16000), tokenizer=tokenizer)
    processor.save_pretrained(path)


def _build_speecht5_hifigan(path: Path) -> None:
    """microsoft/speecht5_hifigan: SpeechT5HifiGan (80 bins in, 256x up-sampling: one 16 ms hop at 16 kHz)."""
    config = SpeechT5HifiGanConfig(
        model_in_dim=80,
        sampling_rate=16000,
        upsample_initial_channel=32,
        upsample_rates=[4, 4, 4, 4],
        upsample_kernel_sizes=[8, 8, 8, 8],
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3,
        normalize_before=True,
    )
    SpeechT5HifiGan(config).save_pretrained(path, safe_serialization=True)


def _build_wavlm_base_plus_sv(path: Path) -> None:
    """microsoft/wavlm-base-plus-sv: WavLMForXVector (512-d x-vectors) + Wav2Vec2FeatureExtractor at 16 kHz."""
    config = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        tdnn_dim=(32, 32, 32),
        tdnn_kernel=(5, 3, 1),
        tdnn_dilation=(1, 2, 1),
        xvector_output_dim=512,
        num_buckets=32,
        max_bucket_distance=80,
    )
    WavLMForXVector(config).save_pretrained(path, safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False, return_attention_mask=True
    ).save_pretrained(path)


# -- data ---------------------------------------------------------------------------------------------------
def _shape_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, str]:
    color, shape = COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
    rgb = {
        "red": (220, 40, 40),
        "green": (40, 180, 60),
        "blue": (40, 60, 220),
        "yellow": (230, 220, 40),
        "purple": (140, 50, 180),
        "orange": (240, 140, 30),
        "white": (240, 240, 240),
        "pink": (240, 150, 190),
    }[color]
    background = tuple(int(v) for v in rng.integers(0, 120, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    r = int(rng.integers(size // 8, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape in ("circle", "girl", "cat"):
        draw.ellipse(box, fill=rgb)
    elif shape in ("triangle", "ninja"):
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=rgb)
    else:
        draw.rectangle(box, fill=rgb)
    noise = rng.integers(-12, 13, size=(size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), f"a {color} {shape} with {COLORS[rng.integers(len(COLORS))]} hair"


def _build_naruto_blip_captions(path: Path) -> None:
    """lambdalabs/naruto-blip-captions: 64 distinct 288 px RGB images with a `text` caption each, saved as the
    Hub dataset loads (`image`: Image, `text`: string)."""
    rng = np.random.default_rng(SEED)
    rows = [_shape_image(rng, 288) for _ in range(64)]
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(
        {"image": [image for image, _ in rows], "text": [text for _, text in rows]}, features=features
    )
    dataset.save_to_disk(str(path))


def _build_ljspeech(path: Path) -> None:
    """data/LJSpeech-1.1: an LJSpeech folder, 40 utterances (1-2 s, 22,050 Hz 16-bit mono, voiced harmonics
    shaped like syllables) in wavs/ and `id|text|normalized text` rows in metadata.csv."""
    import soundfile  # the audio extra, as hfrecipes.audio.features imports it

    rng = np.random.default_rng(SEED)
    rate = 22050
    (path / "wavs").mkdir()
    lines = []
    for i in range(40):
        words = [str(rng.choice(COLORS + SHAPES)) for _ in range(int(rng.integers(3, 7)))]
        text = " ".join(words).capitalize() + "."
        seconds = 0.25 * len(words) + 0.3
        t = np.arange(int(seconds * rate)) / rate
        pitch = 110 + 40 * rng.random() + 15 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = np.clip(np.sin(np.pi * t * len(words) / seconds), 0, None) ** 0.5
        samples = 0.25 * voice * envelope + 0.003 * rng.standard_normal(t.size)
        name = f"LJ001-{i + 1:04d}"
        soundfile.write(path / "wavs" / f"{name}.wav", samples.astype(np.float32), rate, subtype="PCM_16")
        lines.append(f"{name}|{text}|{text}")
    (path / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build_my_clips(path: Path) -> None:
    """data/my_clips: a clip folder, 4 mp4 clips (81 frames, 480 x 480, a coloured square moving over a
    gradient) with their captions in metadata.jsonl (`file_name`, `text`)."""
    import av  # the video extra, as hfrecipes.core.media imports it

    rng = np.random.default_rng(SEED)
    size, frames = 480, 81
    ramp = np.linspace(0, 160, size, dtype=np.float32)
    rows = []
    for i in range(4):
        color = COLORS[i % len(COLORS)]
        name = f"clip_{i + 1:04d}.mp4"
        with av.open(str(path / name), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(16))
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            x0, y0 = (int(v) for v in rng.integers(40, 200, size=2))
            dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
            for f in range(frames):
                image = np.empty((size, size, 3), dtype=np.uint8)
                image[...] = (ramp[None, :, None] + 40 * i).clip(0, 255).astype(np.uint8)
                x, y = x0 + dx * f, y0 + dy * f
                image[max(y, 0) : y + 96, max(x, 0) : x + 96] = np.array(
                    [[220, 40, 40], [40, 180, 60], [40, 60, 220], [230, 220, 40]][i % 4], dtype=np.uint8
                )
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        rows.append({"file_name": name, "text": f"a {color} square sliding across a sunny garden"})
    (path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


MODEL_FIXTURES: dict[str, Callable[[Path], Path]] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _fixture(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", _build_stable_diffusion_v1_5
    ),
    "stabilityai/sd-vae-ft-mse": _fixture("stabilityai/sd-vae-ft-mse", _build_sd_vae_ft_mse),
    "openai/clip-vit-large-patch14": _fixture("openai/clip-vit-large-patch14", _build_clip_vit_large_patch14),
    "openai/clip-vit-base-patch32": _fixture("openai/clip-vit-base-patch32", _build_clip_vit_base_patch32),
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": _fixture(
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", _build_wan2_1_t2v_1_3b_diffusers
    ),
    "microsoft/speecht5_tts": _fixture("microsoft/speecht5_tts", _build_speecht5_tts),
    "microsoft/speecht5_hifigan": _fixture("microsoft/speecht5_hifigan", _build_speecht5_hifigan),
    "microsoft/wavlm-base-plus-sv": _fixture("microsoft/wavlm-base-plus-sv", _build_wavlm_base_plus_sv),
}

DATASET_FIXTURES: dict[str, Callable[[Path], Path]] = {
    "lambdalabs/naruto-blip-captions": _fixture(
        "lambdalabs/naruto-blip-captions", _build_naruto_blip_captions
    ),
    "data/LJSpeech-1.1": _fixture("data/LJSpeech-1.1", _build_ljspeech),
    "data/my_clips": _fixture("data/my_clips", _build_my_clips),
}

# config stem -> reason it cannot run here. Every media config runs.
SKIP: dict[str, str] = {}

# config stem -> {key: (value, reason)}: what a run on this CPU must change besides ids, precision and run length
# (the format of bench/dress_rehearsal.py's CPU_CHANGES). A `report_to` backend that is not installed is the
# runner's own machine change, not listed here.
CPU_CAPS: dict[str, dict[str, tuple[Any, str]]] = {
    "diffusion_latent_text2img": {
        "unet_overrides": (
            {"addition_embed_type": None, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4},
            "unet_preset: sd builds SD 1.x's 860 M UNet here, not from the Hub, so no fixture replaces it: ~17 GB "
            "with AdamW and EMA and minutes per image on 2 cores; the preset's layout (4 levels, its block types, "
            "2 layers per block, 8 heads) and the shipped addition_embed_type: null kept, at tiny widths",
        )
    },
    # The CER's recogniser is evaluation machinery, trained on the real training speech before the model trains:
    # measured at 5-6 steps/s at best here (2 busy cores), 3,000 steps are ~9 min, slower than everything else in
    # the run, and under contention they fell to 0.4 steps/s (over an hour). 100 steps still train it end to end.
    "tts_speecht5_finetune": {
        "intelligibility_steps": (100, "the CER recogniser's 3,000 steps alone take 9+ min on 2 CPU cores"),
    },
    # Measured: one 81 x 480 x 480 clip (18.7 M voxels) takes ~3 min through the fixture's AutoencoderKLWan on a
    # CPU core even at width 8, and a run encodes 8 training clips plus the validation clips at every evaluation;
    # the transformer attends over 21 x 30 x 30 = 18,900 tokens (~17 s a call, 120 calls per evaluation). 9
    # frames (4k + 1: 3 latent frames) at 128 px (a multiple of 16) keep every shape rule the config relies on;
    # the shipped clips still pass the shipped video_filter (81 frames, 480 px) before they are resampled.
    "video_wan_lora": {
        "num_frames": (
            9,
            "81 x 480 px clips: ~3 min per clip in the Wan VAE, 18,900 attention tokens, on a CPU",
        ),
        "resolution": (
            128,
            "81 x 480 px clips: ~3 min per clip in the Wan VAE, 18,900 attention tokens, on a CPU",
        ),
    },
}


# -- checks and runs ----------------------------------------------------------------------------------------
def load_fixture(name: str, path: Path) -> list[str]:
    """Load a built fixture with the loaders the recipes use (hfrecipes' functions, which call the same
    `from_pretrained` classes); the class names of what was loaded (for a dataset: its columns and rows)."""
    path, where = Path(path), str(path)
    if name == "lambdalabs/naruto-blip-captions":
        train, validation, _ = prepare_image_splits(
            dataset_name=where, required_columns=["text"], pipeline=[{"image_filter": {"min_width": 256}}]
        )
        return [f"Dataset{sorted(train.column_names)}x{len(train) + len(validation)}"]
    if name == "data/LJSpeech-1.1":
        dataset = load_speech_source(where)
        return [f"LJSpeech{sorted(dataset.column_names)}x{len(dataset)}"]
    if name == "data/my_clips":
        dataset, problems = load_media_folder(where, "video")
        if problems:
            raise ValueError(f"unreadable clips in {path}: {problems}")
        return [f"VideoFolder{sorted(dataset.column_names)}x{len(dataset)}"]
    if name == "stabilityai/sd-vae-ft-mse":
        return [type(load_vae(where)).__name__]
    if name == "openai/clip-vit-large-patch14":  # the image recipe's text tower and CLIP scorer
        encoder, tokenizer = load_text_tower(where)
        scorer = ClipScorer.load(where)
        return [type(encoder).__name__, type(tokenizer).__name__, type(scorer.model).__name__]
    if name == "openai/clip-vit-base-patch32":  # the CLIP recipe
        processor = CLIPImageProcessor.from_pretrained(where)
        tokenizer = load_tokenizer(where)
        model = clip_model(where, "tiny", {}, tokenizer, processor.crop_size["height"])
        return [type(model).__name__, type(tokenizer).__name__, type(processor).__name__]
    if name == "stable-diffusion-v1-5/stable-diffusion-v1-5":
        pipe, kind = load_pipeline(where)
        if kind != "stable-diffusion":
            raise ValueError(f"{path} loads as {kind}")
        return [type(pipe).__name__] + sorted(type(c).__name__ for c in pipe.components.values() if c)
    if name == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers":  # VideoComponents' pretrained_pipeline path
        pipe = DiffusionPipeline.from_pretrained(where)
        return [type(pipe).__name__] + sorted(type(c).__name__ for c in pipe.components.values() if c)
    if name == "microsoft/speecht5_tts":
        processor = tts_processor([], name_or_path=where)
        mel = MelConfig.from_feature_extractor(processor.feature_extractor)
        model, config, _ = tts_model_config(where, "tiny", {}, len(processor.tokenizer), mel.num_mel_bins)
        return [type(model).__name__, type(processor).__name__, f"speakers{config.speaker_embedding_dim}"]
    if name == "microsoft/speecht5_hifigan":
        vocoder = Vocoder(MelConfig.from_feature_extractor(speecht5_feature_extractor(16000)), where)
        return [type(vocoder.hifigan).__name__]
    if name == "microsoft/wavlm-base-plus-sv":
        embedder = XVectorEmbedder(where)
        return [type(embedder.model).__name__, type(embedder.extractor).__name__, f"xvector{embedder.dim}"]
    raise KeyError(name)


def rehearsal_config(stem: str, fixtures: Path) -> dict[str, Any]:
    """The config `stem` as the dress rehearsal runs it: ids -> fixture paths, bf16/fp16 -> fp32, 2 steps,
    `CPU_CAPS`; every other key as shipped."""
    config = yaml.safe_load((RECIPES / CONFIGS[stem][1]).read_text())
    tables = {**MODEL_FIXTURES, **DATASET_FIXTURES}

    def swap(value: Any) -> Any:
        if isinstance(value, str) and value in tables:
            return str(tables[value](fixtures))
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    config = {k: swap(v) for k, v in config.items()}
    for key in ("bf16", "fp16"):
        if config.get(key):
            config[key] = False
    if config.get("mixed_precision") in ("bf16", "fp16"):
        config["mixed_precision"] = "no"
    for key in ("torch_dtype", "dtype"):
        if config.get(key) in ("bfloat16", "float16"):
            config[key] = "float32"
    config["max_steps"] = 2
    config.update({key: value for key, (value, _) in CPU_CAPS.get(stem, {}).items()})
    if config.get("report_to") == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        config["report_to"] = "none"  # as the runner does: the `tracking` extra is not installed here
    return config


def run_config(stem: str, workdir: Path, timeout: float = 1800) -> tuple[int, float, Path]:
    """Run config `stem` for 2 steps on the CPU as the dress rehearsal does; (exit status, seconds, output dir)."""
    workdir = Path(workdir)
    config = rehearsal_config(stem, workdir / "fixtures")
    config_path, output_dir = workdir / f"{stem}.yaml", workdir / "runs" / stem
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if output_dir.exists():
        shutil.rmtree(output_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(RECIPES / CONFIGS[stem][0]), "--config", str(config_path)]
    command += ["--output_dir", str(output_dir)]
    started = time.perf_counter()
    log = workdir / f"{stem}.log"
    with open(log, "w") as handle:
        status = subprocess.run(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode
    return status, time.perf_counter() - started, output_dir


def main(argv: list[str] | None = None) -> None:
    """--check DIR: build and load every fixture; --run STEM...: 2-step runs of media configs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, help="Build every fixture under this directory and load it.")
    parser.add_argument("--run", nargs="*", help="Config stems to run for 2 steps (none: all).")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "dress_media")
    args = parser.parse_args(argv)
    if args.check:
        for name, build in {**MODEL_FIXTURES, **DATASET_FIXTURES}.items():
            started = time.perf_counter()
            path = build(args.check)
            built = time.perf_counter() - started
            loaded = load_fixture(name, path)
            print(f"{name}: {path} built in {built:.1f} s; loads as {', '.join(loaded)}")
    if args.run is not None:
        for stem in args.run or list(CONFIGS):
            if stem in SKIP:
                print(f"{stem}: skipped ({SKIP[stem]})")
                continue
            status, seconds, output_dir = run_config(stem, args.workdir)
            print(f"{stem}: exit {status} in {seconds:.0f} s; outputs in {output_dir}", flush=True)


if __name__ == "__main__":
    main()
