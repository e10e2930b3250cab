"""The model side of text-to-speech: SpeechT5 presets and configs, a data-aware initialisation for training
from scratch, the processor (feature extractor + tokenizer), and speaker vectors: learned per speaker id (a
one-hot code per speaker; the model's speaker projection learns the embedding) or x-vectors from an
`AutoModelForAudioXVector` path (e.g. microsoft/wavlm-base-plus-sv)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioXVector,
    SpeechT5Config,
    SpeechT5ForTextToSpeech,
    SpeechT5Processor,
)

from hfrecipes.audio.features import speecht5_feature_extractor
from hfrecipes.audio.frontend import build_char_tokenizer, text_symbols
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import load_audio


def learned_speaker_codes(speaker_ids: Iterable[str], dim: int) -> dict[str, list[float]]:
    """One one-hot code per speaker id (sorted). SpeechT5 concatenates the (L2-normalised) speaker vector to
    its decoder input and projects it with a learned layer, so a one-hot code makes that layer a learned
    per-speaker embedding table, saved with the model."""
    names = sorted(set(speaker_ids))
    if len(names) > dim:
        raise RecipeInputError(
            f"{len(names)} speakers but speaker_embedding_dim={dim}: learned speaker codes need one slot per "
            "speaker; raise speaker_embedding_dim in model_overrides or use x-vectors (speaker_embeddings: <path>)."
        )
    return {name: [1.0 if j == i else 0.0 for j in range(dim)] for i, name in enumerate(names)}


class XVectorEmbedder:
    """x-vector speaker embeddings (L2-normalised) from an `AutoModelForAudioXVector` checkpoint, e.g.
    microsoft/wavlm-base-plus-sv (512-d, SpeechT5's speaker_embedding_dim)."""

    def __init__(self, model_name_or_path: str, device: str = "cpu") -> None:
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path)
            self.model = AutoModelForAudioXVector.from_pretrained(model_name_or_path).to(device).eval()
        except (OSError, ValueError) as err:
            raise RecipeInputError(
                f"Could not load an x-vector model from {model_name_or_path!r} ({type(err).__name__}: {err}). "
                "Offline? Download it first (`hf download microsoft/wavlm-base-plus-sv --local-dir ...`) and "
                "pass that directory, or use `speaker_embeddings: learned`."
            ) from err
        self.device = device
        self.sampling_rate = int(self.extractor.sampling_rate)
        self.dim = int(self.model.config.xvector_output_dim)

    @torch.no_grad()
    def __call__(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        if sampling_rate != self.sampling_rate:
            samples, _ = load_audio({"array": samples, "sampling_rate": sampling_rate}, self.sampling_rate)
        inputs = self.extractor(samples, sampling_rate=self.sampling_rate, return_tensors="pt").to(
            self.device
        )
        embedding = self.model(**inputs).embeddings
        return torch.nn.functional.normalize(embedding, dim=-1)[0].cpu().numpy().astype(np.float32)


SPEECHT5_PRESETS: dict[str, dict[str, Any]] = {
    # ~1.3 M parameters: learns the built-in espeak voices in minutes on a CPU.
    "tiny": dict(
        hidden_size=128,
        encoder_layers=3,
        decoder_layers=3,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=384,
        decoder_ffn_dim=384,
        speech_decoder_prenet_units=128,
        speech_decoder_postnet_units=128,
        speech_decoder_postnet_layers=3,
        speaker_embedding_dim=16,
        reduction_factor=2,
        max_speech_positions=1200,
        max_text_positions=400,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        positional_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        speech_decoder_postnet_dropout=0.1,
    ),
    # microsoft/speecht5_tts's shape (~144 M parameters), for training from scratch at full scale.
    "base": dict(
        hidden_size=768,
        encoder_layers=12,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        speech_decoder_prenet_units=256,
        speech_decoder_postnet_units=256,
        speech_decoder_postnet_layers=5,
        speaker_embedding_dim=512,
        reduction_factor=2,
        max_speech_positions=1876,
        max_text_positions=600,
    ),
}


@torch.no_grad()
def init_from_scratch(
    model: Any,
    mel_mean: np.ndarray | None = None,
    mel_std: np.ndarray | None = None,
    frames_per_utterance: float | None = None,
) -> Any:
    """Data-aware initialisation of a SpeechT5ForTextToSpeech built from a config (not for checkpoints).

    SpeechT5's init (normal, std 0.02, zero biases) suits fine-tuning its 768-d checkpoint. From scratch at
    small widths a model so initialised still predicts little more than the average spectrum after
    hundreds of steps (measured on builtin:espeak: teacher-forced log-mel L1 0.56, the global-mean
    predictor's 0.59, with no dependence on the text). Four causes, four fixes:
    - the mel output layer starts at 0 while log10-mels average about -2, and Adam moves each weight only
      ~lr per step: its bias starts at the per-band mean of the training log-mels (`mel_mean`), its weights
      at a scale giving their spread (`mel_std`);
    - the post-net's residual starts as unit-variance noise (Kaiming-initialised convolutions): the scale
      of its last batch norm starts at 0, so it starts as the identity (the zero-init residual trick);
    - token embeddings (norm ~0.2) are tiny next to the scaled positional encoding (norm ~8), so the encoder
      sees position, not text: they get N(0, 1) (norm ~sqrt(hidden_size));
    - the stop logit starts at p = 0.5 per frame: its bias starts at the prior log-odds of one stop per
      `frames_per_utterance` frames."""
    embeddings = model.speecht5.encoder.prenet.embed_tokens
    nn.init.normal_(embeddings.weight, mean=0.0, std=1.0)
    if embeddings.padding_idx is not None:
        embeddings.weight[embeddings.padding_idx].zero_()
    postnet, r = model.speech_decoder_postnet, model.config.reduction_factor
    if mel_mean is not None:
        postnet.feat_out.bias.copy_(torch.as_tensor(np.tile(mel_mean, r), dtype=postnet.feat_out.bias.dtype))
    if mel_std is not None:
        scale = torch.as_tensor(np.tile(mel_std, r), dtype=postnet.feat_out.weight.dtype)[:, None]
        postnet.feat_out.weight.normal_(0.0, 1.0).mul_(scale / math.sqrt(postnet.feat_out.in_features))
    nn.init.zeros_(postnet.layers[-1].batch_norm.weight)
    if frames_per_utterance:
        nn.init.constant_(postnet.prob_out.bias, -math.log(max(frames_per_utterance - 1.0, 1.0)))
    return model


def speecht5_config(
    preset: str, vocab_size: int, num_mel_bins: int = 80, overrides: dict[str, Any] | None = None
):
    """A SpeechT5Config from a named preset (+ overrides), with SpeechT5's special token ids."""
    if preset not in SPEECHT5_PRESETS:
        raise RecipeInputError(
            f"Unknown SpeechT5 preset {preset!r}. Available: {', '.join(SPEECHT5_PRESETS)}."
        )
    unknown = [key for key in (overrides or {}) if not hasattr(SpeechT5Config(), key)]
    if unknown:
        raise RecipeInputError(f"model_overrides has keys SpeechT5Config does not know: {unknown}.")
    values = {**SPEECHT5_PRESETS[preset], **(overrides or {})}
    return SpeechT5Config(
        vocab_size=vocab_size,
        num_mel_bins=num_mel_bins,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        **values,
    )


def tts_model_config(
    model_name_or_path: str | None,
    preset: str,
    overrides: dict[str, Any],
    vocab_size: int,
    num_mel_bins: int,
) -> tuple[Any, Any, str]:
    """(model, config, source): a SpeechT5ForTextToSpeech checkpoint loaded from `model_name_or_path`, or, with
    none, (None, the preset's config + overrides, "preset:<name>") for a model built once the training data's
    statistics are known (`init_from_scratch`). The model must predict `num_mel_bins` bands."""
    if model_name_or_path:
        model = SpeechT5ForTextToSpeech.from_pretrained(model_name_or_path)
        config, source = model.config, model_name_or_path
    else:
        config = speecht5_config(preset, vocab_size, num_mel_bins, dict(overrides))
        model, source = None, f"preset:{preset}"
    if config.num_mel_bins != num_mel_bins:
        raise RecipeInputError(
            f"The model predicts {config.num_mel_bins} mel bins, the processor {num_mel_bins}."
        )
    return model, config, source


def tts_processor(
    train_texts: Iterable[str],
    *,
    name_or_path: str | None = None,
    sampling_rate: int = 16000,
    frontend: str = "characters",
    phoneme_voice: str = "en-us",
    lowercase: bool = True,
):
    """The processor of a TTS run: a checkpoint's SpeechT5Processor (`name_or_path`), or one built here:
    SpeechT5's feature extractor at `sampling_rate` + a character tokenizer over the training texts' symbols."""
    if name_or_path:
        try:
            return SpeechT5Processor.from_pretrained(name_or_path)
        except (OSError, ValueError, ImportError) as err:  # SpeechT5Tokenizer also needs sentencepiece
            raise RecipeInputError(
                f"Could not load a SpeechT5Processor from {name_or_path!r} ({err}); its SpeechT5Tokenizer needs "
                "`pip install sentencepiece`."
            ) from err
    symbols = [text_symbols(t, frontend, phoneme_voice, lowercase) for t in train_texts]
    return SpeechT5Processor(
        feature_extractor=speecht5_feature_extractor(sampling_rate),
        tokenizer=build_char_tokenizer(symbols),
    )


def speaker_embedders(
    speaker_embeddings: str, train: datasets.Dataset, dim: int
) -> tuple[dict[str, list[float]] | None, XVectorEmbedder | None]:
    """The speaker vectors of a run: `speaker_embeddings` is "learned" (one-hot codes per training speaker,
    returned as (codes, None)) or an x-vector model path (returned as (None, the model), of size `dim`)."""
    if speaker_embeddings == "learned":
        speakers = list(train["speaker_id"]) if "speaker_id" in train.column_names else ["speaker"]
        return learned_speaker_codes(speakers, dim), None
    xvectors = XVectorEmbedder(speaker_embeddings)
    if xvectors.dim != dim:
        raise RecipeInputError(
            f"{speaker_embeddings} gives {xvectors.dim}-d x-vectors; the model's speaker_embedding_dim is {dim}."
        )
    return None, xvectors


def mean_speaker_vectors(rows) -> dict[str, list[float]]:
    """Per-speaker mean x-vector (re-normalised), what synthesize() conditions on for a named speaker."""
    table: dict[str, list[np.ndarray]] = {}
    for speaker, vector in zip(rows["speaker_id"], rows["speaker_embeddings"], strict=True):
        table.setdefault(str(speaker), []).append(np.asarray(vector))
    means = {name: np.mean(vectors, axis=0) for name, vectors in sorted(table.items())}
    return {name: (mean / (np.linalg.norm(mean) + 1e-9)).tolist() for name, mean in means.items()}
