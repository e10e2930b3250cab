"""Text-to-speech building blocks shared by recipes/audio/train_tts.py and `hfrecipes synthesize`.

- Features: log-mel spectrograms computed with librosa, numerically the SpeechT5FeatureExtractor's
  (log10 of an 80-band Slaney mel magnitude spectrogram, 64 ms Hann windows every 16 ms at 16 kHz), so a
  model trained here works with SpeechT5HifiGan; Griffin-Lim (librosa) inverts them with no download.
- Text: normalisation (numbers spelled out, lower case) and a character or IPA-phoneme (espeak-ng --ipa)
  front end; a character tokenizer built from the training transcripts (no sentencepiece needed).
- Speakers: learned per speaker id (a one-hot code per speaker; the model's speaker projection learns the
  embedding) or x-vectors from an `AutoModelForAudioXVector` path (e.g. microsoft/wavlm-base-plus-sv).
- Model: SpeechT5 presets; feature preparation with per-reason removal counts; the collator (labels =
  log-mel padded with -100, frames a multiple of the reduction factor, stop labels).
- Evaluation: mel-cepstral distortion with DTW, log-mel L1, duration ratio, stop-token accuracy and an
  intelligibility proxy (a small CTC recogniser trained here, CER on real vs synthesised speech).
- Synthesis: `synthesize(output_dir, text, wav_path, speaker=...)` from a finished output directory.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch import nn
from transformers import TrainerCallback

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import UnreadableMediaError, load_audio

logger = logging.getLogger(__name__)

TTS_CONFIG_NAME = (
    "tts_config.json"  # hfrecipes' synthesis settings beside the model (frontend, speakers, vocoder)
)
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as in SpeechT5's own tokenizer
SPACE = "▁"
TEXT_FRONTENDS = ("characters", "phonemes")


def _librosa():
    try:
        import librosa
    except ImportError as err:
        raise RecipeInputError("Speech features need librosa: pip install 'hfrecipes[audio]'.") from err
    return librosa


# ----------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class MelConfig:
    """Log-mel parameters in samples; built from a SpeechT5FeatureExtractor so both always agree."""

    sampling_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    num_mel_bins: int = 80
    fmin: float = 80.0
    fmax: float = 7600.0
    mel_floor: float = 1e-10

    @classmethod
    def from_feature_extractor(cls, extractor: Any) -> MelConfig:
        return cls(
            sampling_rate=int(extractor.sampling_rate),
            n_fft=int(extractor.n_fft),
            hop_length=int(extractor.sample_stride),
            win_length=int(extractor.sample_size),
            num_mel_bins=int(extractor.num_mel_bins),
            fmin=float(extractor.fmin),
            fmax=float(extractor.fmax),
            mel_floor=float(extractor.mel_floor),
        )

    @property
    def frames_per_second(self) -> float:
        return self.sampling_rate / self.hop_length


def speecht5_feature_extractor(
    sampling_rate: int = 16000, num_mel_bins: int = 80, fmin: float = 80.0, fmax: float = 7600.0
):
    """SpeechT5's feature extractor (64 ms windows, 16 ms hop) at `sampling_rate`."""
    from transformers import SpeechT5FeatureExtractor

    if (16 * sampling_rate) % 1000:
        raise RecipeInputError(
            f"sampling_rate {sampling_rate} Hz does not give a whole number of samples per 16 ms hop; use 16000 "
            "(SpeechT5 and its HiFi-GAN), 8000, 24000 or 48000."
        )
    return SpeechT5FeatureExtractor(
        sampling_rate=sampling_rate, num_mel_bins=num_mel_bins, fmin=fmin, fmax=min(fmax, sampling_rate / 2)
    )


@functools.lru_cache(maxsize=8)
def _mel_basis(mel: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    basis = _librosa().filters.mel(
        sr=mel.sampling_rate,
        n_fft=mel.n_fft,
        n_mels=mel.num_mel_bins,
        fmin=mel.fmin,
        fmax=mel.fmax,
        htk=False,
        norm="slaney",
    )
    return basis.astype(np.float32), np.linalg.pinv(basis).astype(np.float32)


def _stft_options(mel: MelConfig) -> dict[str, Any]:
    return dict(
        n_fft=mel.n_fft,
        hop_length=mel.hop_length,
        win_length=mel.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
    )


def log_mel(samples: np.ndarray, mel: MelConfig) -> np.ndarray:
    """(frames, num_mel_bins) float32: log10 of the mel magnitude spectrogram, floored at `mel_floor`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise UnreadableMediaError(f"log_mel needs a non-empty mono waveform, got shape {samples.shape}.")
    magnitude = np.abs(_librosa().stft(samples, **_stft_options(mel)))
    basis, _ = _mel_basis(mel)
    return np.log10(np.maximum(mel.mel_floor, basis @ magnitude)).T.astype(np.float32)


def griffin_lim(
    log_mel_frames: np.ndarray, mel: MelConfig, n_iter: int = 32, power: float = 1.0, seed: int = 0
) -> np.ndarray:
    """A waveform from a log-mel spectrogram with no neural vocoder: the linear magnitude from the mel filter
    bank's pseudo-inverse (5x faster than librosa's NNLS `mel_to_stft`), raised to `power` (>1 sharpens
    harmonics), then librosa's Griffin-Lim phase reconstruction (seeded)."""
    frames = np.asarray(log_mel_frames, dtype=np.float32)
    _, inverse = _mel_basis(mel)
    magnitude = np.maximum(inverse @ np.power(10.0, frames.T), 0.0) ** power
    waveform = _librosa().griffinlim(
        magnitude,
        n_iter=n_iter,
        random_state=seed,
        length=(frames.shape[0] - 1) * mel.hop_length,
        **_stft_options(mel),
    )
    peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
    return (waveform / peak * 0.9 if peak > 1.0 else waveform).astype(np.float32)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sampling_rate: int) -> Path:
    """16-bit PCM WAV, written beside the target and renamed in (a reader never sees half a file)."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    soundfile.write(
        tmp,
        np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0),
        sampling_rate,
        subtype="PCM_16",
        format="WAV",
    )
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------- text


def normalize_transcript(text: str, lowercase: bool = True) -> str:
    """Unicode NFKC, numbers and currency spelled out (SpeechT5's English normaliser), typographic quotes and
    dashes made plain, whitespace collapsed, optionally lower-cased."""
    from transformers.models.speecht5.number_normalizer import EnglishNumberNormalizer

    text = unicodedata.normalize("NFKC", str(text))
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"}))
    if any(ch.isdigit() for ch in text):
        text = EnglishNumberNormalizer()(text)
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def text_symbols(
    text: str, frontend: str = "characters", voice: str = "en-us", lowercase: bool = True
) -> str:
    """What the tokenizer sees: the normalised transcript, or its IPA phonemes from espeak-ng."""
    if frontend not in TEXT_FRONTENDS:
        raise RecipeInputError(f"text_frontend must be one of {', '.join(TEXT_FRONTENDS)}, got {frontend!r}.")
    normalized = normalize_transcript(text, lowercase)
    if frontend == "phonemes":
        from hfrecipes.builtins.speech import espeak_phonemes

        return espeak_phonemes(normalized, voice)
    return normalized


def build_char_tokenizer(texts: Iterable[str]):
    """A character tokenizer over the symbols of `texts` (space as '▁', like SpeechT5's spm_char model), ids
    0-3 = <s> <pad> </s> <unk>, '</s>' appended; a PreTrainedTokenizerFast that AutoTokenizer and
    SpeechT5Processor load without sentencepiece."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = sorted({ch for text in texts for ch in text.replace(" ", SPACE)})
    if not symbols:
        raise RecipeInputError("Cannot build a character tokenizer: the training transcripts are empty.")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=False),
            pre_tokenizers.Split(Regex("."), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Fuse(), decoders.Metaspace(replacement=SPACE, prepend_scheme="never")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def out_of_vocabulary(texts: Iterable[str], tokenizer: Any) -> Counter:
    """Characters of `texts` the tokenizer maps to <unk>, with counts (spaces are '▁' in both tokenizers)."""
    vocab = set(tokenizer.get_vocab())
    counts: Counter = Counter()
    for text in texts:
        counts.update(ch for ch in text if ch != " " and ch not in vocab and f"{SPACE}{ch}" not in vocab)
    return counts


# ----------------------------------------------------------------------------------------------- speakers


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
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

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


# -------------------------------------------------------------------------------------------------- model

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
    from transformers import SpeechT5Config

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


# ------------------------------------------------------------------------------------------ data features


def _audio_values(column: pa.ChunkedArray) -> list[Any]:
    """Audio cells as load_audio accepts them, reading {array, sampling_rate} structs as numpy views (a
    Python list of every sample would cost seconds per thousand clips)."""
    array = column.combine_chunks()
    if pa.types.is_struct(array.type) and array.type.get_field_index("array") >= 0:
        samples, rates = array.field("array"), array.field("sampling_rate").to_pylist()
        offsets, values = samples.offsets.to_numpy(), samples.values.to_numpy(zero_copy_only=False)
        return [
            {"array": values[offsets[i] : offsets[i + 1]], "sampling_rate": rates[i]}
            if array[i].is_valid
            else None
            for i in range(len(array))
        ]
    return array.to_pylist()


def prepare_tts_features(
    dataset: datasets.Dataset,
    *,
    tokenizer: Any,
    mel: MelConfig,
    report: DataReport,
    reduction_factor: int,
    max_frames: int,
    max_text_tokens: int,
    frontend: str = "characters",
    phoneme_voice: str = "en-us",
    lowercase: bool = True,
    speaker_codes: dict[str, list[float]] | None = None,
    xvectors: XVectorEmbedder | None = None,
    step_name: str = "tts_features",
) -> datasets.Dataset:
    """Decode (resampling to `mel.sampling_rate`), extract log-mels, tokenise and attach speaker vectors.

    Rows that cannot be used are removed and counted per reason in `report`: unreadable audio, zero-length
    or shorter than two decoder steps, longer than `max_frames`, or text longer than `max_text_tokens`.
    Resampled clips (by original rate) and characters outside the vocabulary go to the report's details.
    Output columns: input_ids, labels (flattened frames x mels, trimmed to a multiple of the reduction
    factor), num_frames, speaker_embeddings, text, speaker_id."""
    reasons: list[str] = []
    rows: dict[str, list] = {
        k: [] for k in ("input_ids", "labels", "num_frames", "speaker_embeddings", "text", "speaker_id")
    }
    resampled: Counter = Counter()
    oov: Counter = Counter()
    audio = _audio_values(dataset.with_format("arrow")[:].column("audio"))  # respects select()/splits
    texts = list(dataset["text"])
    speakers = (
        list(dataset["speaker_id"]) if "speaker_id" in dataset.column_names else ["speaker"] * len(texts)
    )
    for value, text, speaker in zip(audio, texts, speakers, strict=True):
        try:
            if value is None:
                raise UnreadableMediaError("no audio")
            samples, rate = load_audio(value)
            if samples.size == 0:
                reasons.append("too_short: zero-length audio")
                continue
            if rate != mel.sampling_rate:
                resampled[str(rate)] += 1
                samples, rate = load_audio({"array": samples, "sampling_rate": rate}, mel.sampling_rate)
            frames = log_mel(samples, mel)
        except UnreadableMediaError as err:
            reasons.append(f"unreadable: {err}")
            continue
        frames = frames[: len(frames) - len(frames) % reduction_factor]
        if len(frames) < 2 * reduction_factor:
            reasons.append(f"too_short: {len(frames)} frames")
            continue
        if len(frames) > max_frames:
            reasons.append(f"too_long: {len(frames)} frames > max_frames={max_frames}")
            continue
        symbols = text_symbols(text, frontend, phoneme_voice, lowercase)
        oov.update(out_of_vocabulary([symbols], tokenizer))
        input_ids = tokenizer(symbols)["input_ids"]
        if len(input_ids) > max_text_tokens:
            reasons.append(f"text_too_long: {len(input_ids)} tokens > max_text_tokens={max_text_tokens}")
            continue
        if xvectors is not None:
            vector = xvectors(samples, rate).tolist()
        elif speaker_codes is not None:
            vector = speaker_codes.get(str(speaker))
            if vector is None:  # a speaker only in the eval split: no learned code, use the mean of all codes
                vector = np.mean(list(speaker_codes.values()), axis=0).tolist()
        else:
            raise RecipeInputError("prepare_tts_features needs speaker_codes or xvectors.")
        reasons.append("")
        rows["input_ids"].append(input_ids)
        rows["labels"].append(frames.reshape(-1))
        rows["num_frames"].append(len(frames))
        rows["speaker_embeddings"].append(vector)
        rows["text"].append(text)
        rows["speaker_id"].append(str(speaker))
    counts = Counter(reason.split(":", 1)[0] for reason in reasons if reason)
    examples = [f"row {i}: {r}" for i, r in enumerate(reasons) if r][:5]
    kept = len(rows["text"])
    seconds = sum(rows["num_frames"]) / mel.frames_per_second
    report.add(
        step_name,
        rows_in=len(reasons),
        rows_out=kept,
        examples=examples,
        details={
            "removed_by_reason": dict(counts),
            "resampled_from_hz": dict(resampled),
            "to_sampling_rate": mel.sampling_rate,
            "out_of_vocabulary": dict(oov.most_common(20)),
            "hours_out": round(seconds / 3600, 4),
        },
    )
    if oov:
        logger.warning("Characters outside the vocabulary (read as <unk>): %s", dict(oov.most_common(20)))
    if resampled:
        logger.warning(
            "Resampled %d clips to %d Hz (from %s Hz)",
            sum(resampled.values()),
            mel.sampling_rate,
            ", ".join(resampled),
        )
    if not kept:
        raise RecipeInputError(
            f"No usable utterances ({dict(counts)}); first problems: {examples[:3]}. Raise max_frames / "
            "max_text_tokens or check the audio."
        )
    table = pa.table(
        {
            "input_ids": pa.array(rows["input_ids"], type=pa.list_(pa.int32())),
            "labels": pa.array(rows["labels"], type=pa.list_(pa.float32())),
            "num_frames": pa.array(rows["num_frames"], type=pa.int32()),
            "speaker_embeddings": pa.array(rows["speaker_embeddings"], type=pa.list_(pa.float32())),
            "text": pa.array(rows["text"], type=pa.string()),
            "speaker_id": pa.array(rows["speaker_id"], type=pa.string()),
        }
    )
    return datasets.Dataset(table)


def row_log_mel(row: dict[str, Any], num_mel_bins: int) -> np.ndarray:
    return np.array(row["labels"], dtype=np.float32).reshape(-1, num_mel_bins)  # a writable copy


def mel_statistics(rows: datasets.Dataset, mel: MelConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-band mean and standard deviation of the rows' log-mels and the mean utterance length in frames,
    what `init_from_scratch` starts the output layers from."""
    total = np.zeros(mel.num_mel_bins)
    squares = np.zeros(mel.num_mel_bins)
    frames = 0
    for values in rows.with_format("numpy")["labels"]:
        block = np.asarray(values, dtype=np.float64).reshape(-1, mel.num_mel_bins)
        total += block.sum(0)
        squares += (block**2).sum(0)
        frames += len(block)
    mean = total / max(frames, 1)
    std = np.sqrt(np.maximum(squares / max(frames, 1) - mean**2, 1e-6))
    return mean.astype(np.float32), std.astype(np.float32), frames / max(len(rows), 1)


@dataclass
class TTSCollator:
    """Batches for SpeechT5ForTextToSpeech: input_ids padded with pad_token_id; labels = log-mel frames
    padded with -100 (lengths are already multiples of `reduction_factor`); stop_labels = 1 at each
    utterance's last frame; speaker_embeddings stacked."""

    pad_token_id: int
    num_mel_bins: int
    reduction_factor: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = len(features)
        text_length = max(len(f["input_ids"]) for f in features)
        mels = [row_log_mel(f, self.num_mel_bins) for f in features]
        frames = max(len(m) for m in mels)
        frames += -frames % self.reduction_factor
        input_ids = torch.full((batch, text_length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, text_length), dtype=torch.long)
        labels = torch.full((batch, frames, self.num_mel_bins), -100.0)
        stop_labels = torch.zeros((batch, frames))
        for i, (feature, spectrogram) in enumerate(zip(features, mels, strict=True)):
            ids = torch.as_tensor(np.asarray(feature["input_ids"]), dtype=torch.long)
            input_ids[i, : len(ids)], attention_mask[i, : len(ids)] = ids, 1
            labels[i, : len(spectrogram)] = torch.from_numpy(spectrogram)
            stop_labels[i, len(spectrogram) - 1] = 1.0
        speakers = torch.as_tensor(
            np.stack([np.asarray(f["speaker_embeddings"], dtype=np.float32) for f in features])
        )
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "stop_labels": stop_labels,
            "speaker_embeddings": speakers,
        }


# --------------------------------------------------------------------------------------------- evaluation


def mel_cepstra(log_mel_frames: np.ndarray, num_coefficients: int = 24) -> np.ndarray:
    """Mel-cepstral coefficients c1..c_num_coefficients (c0, the energy, left out as usual for MCD) of the
    natural-log mel amplitude x over N bands, scaled as a real cepstrum (ln|X(w)| = c0 + 2 sum_m c_m cos(m w)):
    c_m = (1/N) sum_k x_k cos(pi m (k + 1/2) / N), i.e. the orthonormal DCT-II divided by sqrt(2N)."""
    from scipy.fft import dct

    natural = np.asarray(log_mel_frames, dtype=np.float64) * math.log(10.0)
    scale = math.sqrt(2.0 * natural.shape[-1])
    return dct(natural, type=2, axis=-1, norm="ortho")[:, 1 : num_coefficients + 1] / scale


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost monotonic alignment of two sequences from their (N, M) frame-distance matrix, with
    steps (1,0), (0,1), (1,1); computed along anti-diagonals so each step is one numpy operation."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for diagonal in range(2, n + m + 1):
        i = np.arange(max(1, diagonal - m), min(n, diagonal - 1) + 1)
        j = diagonal - i
        best = np.minimum(np.minimum(total[i - 1, j], total[i, j - 1]), total[i - 1, j - 1])
        total[i, j] = cost[i - 1, j - 1] + best
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        moves = (
            (total[i - 1, j - 1], i - 1, j - 1),
            (total[i - 1, j], i - 1, j),
            (total[i, j - 1], i, j - 1),
        )
        _, i, j = min(moves, key=lambda move: move[0])
    return path[::-1]


def mel_cepstral_distortion(
    reference: np.ndarray, generated: np.ndarray, num_coefficients: int = 24
) -> dict[str, float]:
    """MCD in dB, (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2) averaged over the DTW path between the two
    utterances' mel-cepstra, and the mean absolute log10-mel difference (L1) along the same path.
    Identical inputs give 0. Computed from 80-band log-mels rather than WORLD/SPTK mel-cepstra, so the
    values are comparable between runs of these recipes, not with papers' MCDs."""
    ref, gen = mel_cepstra(reference, num_coefficients), mel_cepstra(generated, num_coefficients)
    cost = np.sqrt(((ref[:, None, :] - gen[None, :, :]) ** 2).sum(-1))
    path = dtw_path(cost)
    rows, cols = (np.array(axis) for axis in zip(*path, strict=True))
    per_frame = (10.0 / math.log(10.0)) * math.sqrt(2.0) * cost[rows, cols]
    l1 = np.abs(np.asarray(reference)[rows] - np.asarray(generated)[cols]).mean()
    return {"mcd": float(per_frame.mean()), "log_mel_l1": float(l1), "path_length": len(path)}


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Total character edit distance / total reference characters (over the whole set)."""
    edits = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        previous = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, start=1):
            current = [i]
            for j, h in enumerate(hyp, start=1):
                current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
            previous = current
        edits += previous[-1]
        total += len(ref)
    return edits / max(total, 1)


def asr_text(text: str) -> str:
    """What the intelligibility proxy transcribes: lower-case letters, apostrophes and single spaces."""
    text = normalize_transcript(text, lowercase=True)
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


class CTCRecognizer(nn.Module):
    """A small speech recogniser over log-mels: two convolutions (the second halves the frame rate), a
    bidirectional GRU and a linear layer to characters + the CTC blank (id 0)."""

    def __init__(self, alphabet: str, num_mel_bins: int = 80, channels: int = 128, hidden: int = 128) -> None:
        super().__init__()
        self.alphabet = alphabet
        self.config = {
            "alphabet": alphabet,
            "num_mel_bins": num_mel_bins,
            "channels": channels,
            "hidden": hidden,
        }
        self.convs = nn.Sequential(
            nn.Conv1d(num_mel_bins, channels, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2),
            nn.GELU(),
        )
        self.rnn = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(alphabet) + 1)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, mels) standardised log-mels -> (B, ceil(T/2), classes) log-probabilities."""
        hidden = self.convs(mels.transpose(1, 2)).transpose(1, 2)
        return self.out(self.rnn(hidden)[0]).log_softmax(-1)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + 1) // 2


def _standardise(mel_frames: np.ndarray) -> np.ndarray:
    # Per-utterance mean/variance normalisation makes the recogniser indifferent to overall level.
    return (mel_frames - mel_frames.mean(0)) / (mel_frames.std(0) + 1e-3)


def _pad_mels(mels: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(m) for m in mels])
    batch = torch.zeros(len(mels), int(lengths.max()), mels[0].shape[1])
    for i, m in enumerate(mels):
        batch[i, : len(m)] = torch.from_numpy(_standardise(m).astype(np.float32))
    return batch, lengths


def train_ctc_recognizer(
    mels: Sequence[np.ndarray],
    texts: Sequence[str],
    *,
    steps: int = 600,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> tuple[CTCRecognizer, list[float]]:
    """Train the intelligibility proxy on real (mel, transcript) pairs with CTC; returns it and its losses.
    Time and frequency masking keep it from relying on details a vocoder or a TTS model would not copy."""
    targets = [asr_text(t) for t in texts]
    alphabet = "".join(sorted({ch for t in targets for ch in t}))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CTCRecognizer(alphabet, num_mel_bins=mels[0].shape[1])
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=max(steps, 1), pct_start=0.1
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    losses: list[float] = []
    model.train()
    from tqdm.auto import tqdm

    for _ in tqdm(range(steps), desc="intelligibility proxy (CTC)", leave=False):
        picks = torch.randint(len(mels), (batch_size,), generator=generator).tolist()
        batch, lengths = _pad_mels([mels[i] for i in picks])
        for row in range(batch.shape[0]):  # SpecAugment-style masks: one time span, one band
            t0 = int(torch.randint(max(int(lengths[row]) - 8, 1), (1,), generator=generator))
            f0 = int(torch.randint(batch.shape[2] - 10, (1,), generator=generator))
            batch[row, t0 : t0 + 8] = 0.0
            batch[row, :, f0 : f0 + 10] = 0.0
        labels = [torch.tensor([index[ch] for ch in targets[i]]) for i in picks]
        log_probs = model(batch).transpose(0, 1)
        loss = ctc(
            log_probs,
            torch.cat(labels),
            CTCRecognizer.output_lengths(lengths),
            torch.tensor([len(x) for x in labels]),
        )
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return model, losses


@torch.no_grad()
def transcribe(model: CTCRecognizer, mels: Sequence[np.ndarray], batch_size: int = 32) -> list[str]:
    """Greedy CTC decoding: best class per frame, repeats merged, blanks dropped."""
    texts = []
    for start in range(0, len(mels), batch_size):
        batch, lengths = _pad_mels(mels[start : start + batch_size])
        best = model(batch).argmax(-1)
        for row, length in zip(best, CTCRecognizer.output_lengths(lengths), strict=True):
            ids = torch.unique_consecutive(row[: int(length)]).tolist()
            texts.append(" ".join("".join(model.alphabet[i - 1] for i in ids if i > 0).split()))
    return texts


def recognizer_cer(model: CTCRecognizer, mels: Sequence[np.ndarray], texts: Sequence[str]) -> float:
    return character_error_rate([asr_text(t) for t in texts], transcribe(model, mels))


# ------------------------------------------------------------------------------------------- generation


class Vocoder:
    """Log-mel -> waveform: SpeechT5HifiGan when a path is given, else Griffin-Lim (librosa)."""

    def __init__(self, mel: MelConfig, name_or_path: str | None = None, griffin_lim_iters: int = 32) -> None:
        self.mel, self.name_or_path, self.griffin_lim_iters = mel, name_or_path, griffin_lim_iters
        self.hifigan = None
        if name_or_path:
            from transformers import SpeechT5HifiGan

            try:
                self.hifigan = SpeechT5HifiGan.from_pretrained(name_or_path).eval()
            except (OSError, ValueError) as err:
                raise RecipeInputError(
                    f"Could not load a SpeechT5HifiGan vocoder from {name_or_path!r} ({type(err).__name__}: {err}). "
                    "Offline? Download microsoft/speecht5_hifigan first, or leave `vocoder` unset for Griffin-Lim."
                ) from err

    @property
    def name(self) -> str:
        return (
            f"SpeechT5HifiGan ({self.name_or_path})" if self.hifigan is not None else "Griffin-Lim (librosa)"
        )

    @torch.no_grad()
    def __call__(self, log_mel_frames: np.ndarray, seed: int = 0) -> np.ndarray:
        if self.hifigan is not None:
            return (
                self.hifigan(torch.as_tensor(log_mel_frames, dtype=torch.float32)).numpy().astype(np.float32)
            )
        return griffin_lim(log_mel_frames, self.mel, n_iter=self.griffin_lim_iters, seed=seed)


@torch.no_grad()
def generate_log_mels(
    model: Any,
    input_ids: Sequence[Sequence[int]],
    speaker_embeddings: Sequence[Sequence[float]],
    *,
    pad_token_id: int,
    threshold: float = 0.5,
    maxlenratio: float = 20.0,
    batch_size: int = 16,
    seed: int = 0,
) -> list[np.ndarray]:
    """Free-running synthesis of log-mels (batched). SpeechT5 keeps its decoder pre-net dropout on at
    inference (Tacotron 2's trick), so generation is seeded on a private RNG: reproducible, and the
    training RNG stream (which resume restores) is left untouched."""
    model.eval()
    device = next(model.parameters()).device
    outputs: list[np.ndarray] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(input_ids), batch_size):
            chunk = [list(ids) for ids in input_ids[start : start + batch_size]]
            length = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), length), pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(chunk):
                ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
            speakers = torch.as_tensor(
                np.asarray(speaker_embeddings[start : start + batch_size], dtype=np.float32)
            )
            spectrograms, lengths = model.generate(
                ids.to(device),
                attention_mask=mask.to(device),
                speaker_embeddings=speakers.to(device),
                threshold=threshold,
                maxlenratio=maxlenratio,
                return_output_lengths=True,
            )
            outputs.extend(spectrograms[i, : lengths[i]].float().cpu().numpy() for i in range(len(chunk)))
    return outputs


@torch.no_grad()
def teacher_forced_metrics(
    model: Any,
    collator: TTSCollator,
    rows: Sequence[dict[str, Any]],
    *,
    threshold: float = 0.5,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """With the real previous frames as decoder input: loss, log-mel L1 (after the post-net) and stop-token
    accuracy. Stop accuracy is per decoder step (a step predicts `reduction_factor` frames; generation stops
    when their summed stop probability reaches `threshold`, as `generate` does): frame-level accuracy is
    trivially high, so `stop_balanced_accuracy` averages the hit rates on stop and non-stop steps, and
    `stop_end_accuracy` is the share of utterances whose first predicted stop is within one step of the end."""
    model.eval()
    device = next(model.parameters()).device
    r = collator.reduction_factor
    losses, l1_sum, l1_count = [], 0.0, 0
    hits = {True: [0, 0], False: [0, 0]}
    end_hits = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collator(list(rows[start : start + batch_size])).items()}
            output = model(
                **{k: v for k, v in batch.items() if k != "stop_labels"}, output_hidden_states=True
            )
            losses.append(output.loss.item())
            valid = batch["labels"][..., 0] != -100.0
            l1_sum += float((output.spectrogram - batch["labels"]).abs()[valid].sum())
            l1_count += int(valid.sum()) * batch["labels"].shape[-1]
            # The stop logits are not in the output: recompute them from the final decoder states.
            logits = model.speech_decoder_postnet.prob_out(output.decoder_hidden_states[-1])
            step_prob = torch.sigmoid(logits).sum(-1)  # (B, steps)
            for i in range(len(valid)):
                steps = int(valid[i].sum()) // r
                predicted = (step_prob[i, :steps] >= threshold).cpu()
                truth = torch.zeros(steps, dtype=torch.bool)
                truth[-1] = True
                for label in (True, False):
                    selected = truth == label
                    hits[label][0] += int((predicted[selected] == label).sum())
                    hits[label][1] += int(selected.sum())
                first = int(predicted.nonzero()[0]) if predicted.any() else steps + 10
                end_hits += abs(first - (steps - 1)) <= 1
    stop_rate, go_rate = (hits[k][0] / max(hits[k][1], 1) for k in (True, False))
    return {
        "teacher_forced_loss": float(np.mean(losses)),
        "teacher_forced_log_mel_l1": l1_sum / max(l1_count, 1),
        "stop_balanced_accuracy": (stop_rate + go_rate) / 2,
        "stop_end_accuracy": end_hits / max(len(rows), 1),
    }


@dataclass
class TTSEvaluation:
    metrics: dict[str, float]
    generated: list[np.ndarray] = field(default_factory=list)  # log-mels, one per held-out row
    waveforms: list[np.ndarray] = field(default_factory=list)


def evaluate_tts(
    model: Any,
    rows: Sequence[dict[str, Any]],
    collator: TTSCollator,
    vocoder: Vocoder,
    *,
    recognizer: CTCRecognizer | None = None,
    pad_token_id: int = 1,
    threshold: float = 0.5,
    maxlenratio: float = 10.0,
    seed: int = 0,
) -> TTSEvaluation:
    """Held-out metrics of a TTS model against the real utterances `rows` (prepare_tts_features rows):
    teacher-forced loss / log-mel L1 / stop accuracy; free-running MCD and log-mel L1 after DTW, duration
    ratio (generated / real frames) and the share of utterances that stopped before the length limit; with
    a recogniser, the CER of the vocoded synthesis (log-mels re-extracted from the waveform)."""
    mel, bins = vocoder.mel, collator.num_mel_bins
    started = time.perf_counter()
    metrics = teacher_forced_metrics(model, collator, rows, threshold=threshold, seed=seed)
    logger.info("evaluate_tts: teacher-forced metrics in %.1f s", time.perf_counter() - started)
    real = [row_log_mel(row, bins) for row in rows]
    generated = generate_log_mels(
        model,
        [r["input_ids"] for r in rows],
        [r["speaker_embeddings"] for r in rows],
        pad_token_id=pad_token_id,
        threshold=threshold,
        maxlenratio=maxlenratio,
        seed=seed,
    )
    distortions = [mel_cepstral_distortion(a, b) for a, b in zip(real, generated, strict=True)]
    ratios = [len(g) / len(a) for a, g in zip(real, generated, strict=True)]
    limits = [
        int(len(r["input_ids"]) * maxlenratio / collator.reduction_factor) * collator.reduction_factor
        for r in rows
    ]
    metrics.update(
        mcd_dtw=float(np.mean([d["mcd"] for d in distortions])),
        log_mel_l1_dtw=float(np.mean([d["log_mel_l1"] for d in distortions])),
        duration_ratio=float(np.mean(ratios)),
        duration_ratio_abs_log2=float(np.mean(np.abs(np.log2(ratios)))),
        stopped_fraction=float(np.mean([len(g) < limit for g, limit in zip(generated, limits, strict=True)])),
    )
    logger.info(
        "evaluate_tts: generated %d utterances in %.1f s", len(generated), time.perf_counter() - started
    )
    waveforms = [vocoder(g, seed=seed) for g in generated]
    logger.info("evaluate_tts: vocoded with %s in %.1f s", vocoder.name, time.perf_counter() - started)
    if recognizer is not None:
        texts = [r["text"] for r in rows]
        metrics["cer_synthesized"] = recognizer_cer(
            recognizer,
            [log_mel(w, mel) if w.size else np.zeros((2, bins), np.float32) for w in waveforms],
            texts,
        )
    return TTSEvaluation(metrics=metrics, generated=generated, waveforms=waveforms)


def reference_cers(
    recognizer: CTCRecognizer, rows: Sequence[dict[str, Any]], vocoder: Vocoder, bins: int, seed: int = 0
) -> dict[str, float]:
    """The proxy's CER on the real held-out speech, and on the real log-mels passed through the vocoder
    (the ceiling a perfect TTS model could reach with this vocoder)."""
    real = [row_log_mel(row, bins) for row in rows]
    texts = [r["text"] for r in rows]
    vocoded = [log_mel(vocoder(m, seed=seed), vocoder.mel) for m in real]
    return {
        "cer_real": recognizer_cer(recognizer, real, texts),
        "cer_real_vocoded": recognizer_cer(recognizer, vocoded, texts),
    }


def plot_spectrograms(
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str = ""
) -> Path:
    """One row per utterance: the real log-mel on the left, the generated one on the right (PNG)."""
    from hfrecipes.core.reports import _save_figure, plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(10, 2.2 * len(pairs)), dpi=90, squeeze=False)
    low = min(float(np.percentile(m, 1)) for _, a, b in pairs for m in (a, b) if m.size)
    high = max(float(m.max()) for _, a, b in pairs for m in (a, b) if m.size)
    for row, (label, real, generated) in enumerate(pairs):
        for col, (name, frames) in enumerate((("real", real), ("generated", generated))):
            ax = axes[row][col]
            ax.imshow(frames.T, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            ax.set_title(f"{name}: {label[:60]}", fontsize=8)
            ax.set_xlabel("frame")
            ax.set_ylabel("mel band")
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)


def tts_samples(
    rows: Sequence[dict[str, Any]], evaluation: TTSEvaluation, mel: MelConfig
) -> list[dict[str, Any]]:
    """What `write_tts_samples` writes for these utterances (file, text, speaker, lengths), without writing."""
    return [
        {
            "file": f"sample-{i}.wav",
            "text": row["text"],
            "speaker_id": row["speaker_id"],
            "seconds": round(len(waveform) / mel.sampling_rate, 3),
            "real_seconds": round(int(row["num_frames"]) / mel.frames_per_second, 3),
        }
        for i, (row, waveform) in enumerate(zip(rows, evaluation.waveforms[: len(rows)], strict=True))
    ]


def write_tts_samples(
    directory: Path,
    rows: Sequence[dict[str, Any]],
    evaluation: TTSEvaluation,
    mel: MelConfig,
    title: str = "",
) -> list[dict[str, Any]]:
    """sample-<i>.wav for each generated utterance and spectrograms.png (real vs generated log-mels)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = list(rows)  # the first len(rows) utterances of `evaluation`
    written = tts_samples(rows, evaluation, mel)
    for entry, waveform in zip(written, evaluation.waveforms, strict=False):
        write_wav(directory / entry["file"], waveform, mel.sampling_rate)
    pairs = [
        (f"{r['speaker_id']}: {r['text']}", row_log_mel(r, mel.num_mel_bins), g)
        for r, g in zip(rows, evaluation.generated[: len(rows)], strict=True)
    ]
    if pairs:
        plot_spectrograms(pairs, directory / "spectrograms.png", title=title)
    return written


class TTSEvalCallback(TrainerCallback):
    """At each evaluation, synthesise a few fixed held-out utterances and write their WAVs and a real-vs-
    generated spectrogram PNG to <output_dir>/eval_samples/step-<N>/; their MCD, log-mel L1 and duration
    ratio join the log history as `eval_samples_*`."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        collator: TTSCollator,
        vocoder: Vocoder,
        output_dir: str | Path,
        *,
        pad_token_id: int,
        threshold: float = 0.5,
        maxlenratio: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.rows, self.collator, self.vocoder = list(rows), collator, vocoder
        self.output_dir, self.pad_token_id = Path(output_dir), pad_token_id
        self.threshold, self.maxlenratio, self.seed = threshold, maxlenratio, seed

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None or not self.rows:
            return
        evaluation = evaluate_tts(
            model,
            self.rows,
            self.collator,
            self.vocoder,
            pad_token_id=self.pad_token_id,
            threshold=self.threshold,
            maxlenratio=self.maxlenratio,
            seed=self.seed,
        )
        directory = self.output_dir / "eval_samples" / f"step-{state.global_step}"
        write_tts_samples(
            directory, self.rows, evaluation, self.vocoder.mel, title=f"step {state.global_step}"
        )
        keys = ("mcd_dtw", "log_mel_l1_dtw", "duration_ratio")
        state.log_history.append(
            {"step": state.global_step, **{f"eval_samples_{k}": evaluation.metrics[k] for k in keys}}
        )
        model.train()


# ------------------------------------------------------------------------------------- recipe arguments


@dataclass
class TTSArguments:
    dataset_name: str = field(
        default="builtin:espeak", metadata={"help": "builtin:, Hub id, saved dataset or folder."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read."})
    audio_column: str = field(default="audio", metadata={"help": "Column with the audio."})
    text_column: str = field(default="text", metadata={"help": "Column with the transcript."})
    speaker_column: str | None = field(
        default="speaker_id", metadata={"help": "Speaker id column (absent: one speaker)."}
    )
    pipeline: list[str] | None = field(
        default=None, metadata={"help": "Data steps first, e.g. [audio_filter]."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N rows (quick runs)."}
    )
    eval_fraction: float = field(default=0.1, metadata={"help": "Held-out share of the rows."})
    eval_max_samples: int = field(
        default=32, metadata={"help": "Held-out utterances synthesised for the metrics."}
    )
    num_eval_samples: int = field(default=3, metadata={"help": "WAVs + spectrograms written at each eval."})
    sampling_rate: int = field(
        default=16000, metadata={"help": "Audio rate of a preset model (a checkpoint's own wins)."}
    )
    max_frames: int = field(
        default=600, metadata={"help": "Longer utterances (mel frames) are dropped and counted."}
    )
    max_text_tokens: int = field(
        default=300, metadata={"help": "Longer transcripts are dropped and counted."}
    )
    text_frontend: str = field(
        default="characters", metadata={"help": "characters, or phonemes (espeak-ng --ipa)."}
    )
    phoneme_voice: str = field(default="en-us", metadata={"help": "espeak-ng voice for phonemes."})
    lowercase: bool = field(default=True, metadata={"help": "Lower-case transcripts (character front end)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "SpeechT5 TTS checkpoint to fine-tune."}
    )
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "Default: the checkpoint's processor."}
    )
    model_preset: str = field(default="tiny", metadata={"help": "SPEECHT5_PRESETS name, built from scratch."})
    model_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "SpeechT5Config overrides."}
    )
    speaker_embeddings: str = field(
        default="learned", metadata={"help": "learned, or an x-vector model path."}
    )
    vocoder: str | None = field(default=None, metadata={"help": "SpeechT5HifiGan path; unset: Griffin-Lim."})
    griffin_lim_iters: int = field(default=32, metadata={"help": "Griffin-Lim iterations."})
    eval_threshold: float = field(
        default=0.5, metadata={"help": "Stop-probability threshold when generating."}
    )
    eval_maxlenratio: float = field(
        default=10.0, metadata={"help": "Generation limit: decoder steps per token x r."}
    )
    intelligibility_steps: int = field(
        default=600, metadata={"help": "CTC proxy training steps (0: no CER)."}
    )

    def __post_init__(self) -> None:
        if self.text_frontend not in TEXT_FRONTENDS:
            raise RecipeInputError(
                f"text_frontend must be one of {TEXT_FRONTENDS}, got {self.text_frontend!r}."
            )
        if not 0 < self.eval_fraction < 1:
            raise RecipeInputError(f"eval_fraction must be between 0 and 1, got {self.eval_fraction}.")


def tts_processor(args: TTSArguments, train_texts: Iterable[str]):
    """The checkpoint's SpeechT5Processor (`processor_name_or_path`, else `model_name_or_path`), or one built
    here: SpeechT5's feature extractor at `sampling_rate` + a character tokenizer over the training texts."""
    from transformers import SpeechT5Processor

    path = args.processor_name_or_path or args.model_name_or_path
    if path:
        try:
            return SpeechT5Processor.from_pretrained(path)
        except (OSError, ValueError, ImportError) as err:  # SpeechT5Tokenizer also needs sentencepiece
            raise RecipeInputError(
                f"Could not load a SpeechT5Processor from {path!r} ({err}); its SpeechT5Tokenizer needs "
                "`pip install sentencepiece`."
            ) from err
    symbols = [text_symbols(t, args.text_frontend, args.phoneme_voice, args.lowercase) for t in train_texts]
    return SpeechT5Processor(
        feature_extractor=speecht5_feature_extractor(args.sampling_rate),
        tokenizer=build_char_tokenizer(symbols),
    )


def speaker_embedders(
    args: TTSArguments, train: datasets.Dataset, dim: int
) -> tuple[dict[str, list[float]] | None, XVectorEmbedder | None]:
    """(learned one-hot codes per training speaker, None) or (None, an x-vector model of the right size)."""
    if args.speaker_embeddings == "learned":
        speakers = list(train["speaker_id"]) if "speaker_id" in train.column_names else ["speaker"]
        return learned_speaker_codes(speakers, dim), None
    xvectors = XVectorEmbedder(args.speaker_embeddings)
    if xvectors.dim != dim:
        raise RecipeInputError(
            f"{args.speaker_embeddings} gives {xvectors.dim}-d x-vectors; the model's speaker_embedding_dim is {dim}."
        )
    return None, xvectors


def mean_speaker_vectors(rows) -> dict[str, list[float]]:
    """Per-speaker mean x-vector (re-normalised), what synthesize() conditions on for a named speaker."""
    table: dict[str, list[np.ndarray]] = {}
    for speaker, vector in zip(rows["speaker_id"], rows["speaker_embeddings"], strict=True):
        table.setdefault(str(speaker), []).append(np.asarray(vector))
    means = {name: np.mean(vectors, axis=0) for name, vectors in sorted(table.items())}
    return {name: (mean / (np.linalg.norm(mean) + 1e-9)).tolist() for name, mean in means.items()}


def tts_card_description(
    args: TTSArguments, source: str, vocoder: str, metrics: dict, samples: list[dict]
) -> str:
    rows = ["| held-out metric | before training | after training |", "|---|---:|---:|"]
    for key in (
        "mcd_dtw",
        "log_mel_l1_dtw",
        "teacher_forced_log_mel_l1",
        "duration_ratio",
        "stop_balanced_accuracy",
        "stop_end_accuracy",
        "stopped_fraction",
        "cer_synthesized",
    ):
        if key in metrics:
            rows.append(f"| {key} | {metrics.get(key + '_before', float('nan')):.3f} | {metrics[key]:.3f} |")
    if "cer_real" in metrics:
        rows.append(
            f"| cer_real (real speech) / cer_real_vocoded (through the vocoder) | | "
            f"{metrics['cer_real']:.3f} / {metrics['cer_real_vocoded']:.3f} |"
        )
    listing = "\n".join(
        f"- [`samples/{s['file']}`](samples/{s['file']}) ({s['speaker_id']}, {s['seconds']} s, real "
        f'{s["real_seconds"]} s): "{s["text"]}"'
        for s in samples
    )
    return (
        f"SpeechT5 text-to-speech ({source}) trained on `{args.dataset_name}` with a {args.text_frontend} front end "
        f"and {args.speaker_embeddings} speaker embeddings; vocoder for the samples: {vocoder}. MCD is computed "
        "from 80-band log-mels (c1-c24, DTW-aligned), comparable between these runs, not with papers.\n\n"
        + "\n".join(rows)
        + f"\n\n![real vs generated log-mels](samples/spectrograms.png)\n\n{listing}\n\n"
        "Samples written at each evaluation are in `eval_samples/step-<N>/` of the run directory."
    )


def tts_usage(output_dir: Path) -> str:
    return (
        f'from hfrecipes.audio.speech import synthesize\n\nsynthesize("{output_dir}", "the green boat.", "out.wav")\n\n'
        "# or with the standard classes (speaker vectors are in tts_config.json):\n"
        "from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor\n"
        f'model = SpeechT5ForTextToSpeech.from_pretrained("{output_dir}")\n'
        f'processor = SpeechT5Processor.from_pretrained("{output_dir}")'
    )


# -------------------------------------------------------------------------------------------- synthesis


@dataclass
class TTSSettings:
    """tts_config.json: what `synthesize` needs beside the model and processor."""

    text_frontend: str = "characters"
    phoneme_voice: str = "en-us"
    lowercase: bool = True
    speakers: dict[str, list[float]] = field(default_factory=dict)
    default_speaker: str | None = None
    vocoder: str | None = None
    griffin_lim_iters: int = 32
    threshold: float = 0.5
    maxlenratio: float = 20.0

    @classmethod
    def from_args(cls, args: Any, speakers: dict[str, list[float]]) -> TTSSettings:
        """The settings of a train_tts run (TTSArguments) with its speaker table."""
        return cls(text_frontend=args.text_frontend, phoneme_voice=args.phoneme_voice, lowercase=args.lowercase,
                   speakers=speakers, default_speaker=next(iter(speakers)), vocoder=args.vocoder,
                   griffin_lim_iters=args.griffin_lim_iters, threshold=args.eval_threshold)  # fmt: skip

    def save(self, directory: Path) -> None:
        from hfrecipes.core.io import atomic_write_json

        atomic_write_json(Path(directory) / TTS_CONFIG_NAME, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> TTSSettings:
        path = Path(directory) / TTS_CONFIG_NAME
        if not path.is_file():
            return cls()
        values = json.loads(path.read_text())
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def load_tts(
    output_dir: str | os.PathLike, vocoder: str | None = None
) -> tuple[Any, Any, TTSSettings, Vocoder]:
    """(model, processor, settings, vocoder) from a train_tts output directory (or a SpeechT5 checkpoint)."""
    from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor

    directory = Path(output_dir)
    if not (directory / "config.json").is_file():
        raise RecipeInputError(
            f"{directory} is not a model directory (no config.json); pass a train_tts output_dir."
        )
    try:
        model = SpeechT5ForTextToSpeech.from_pretrained(directory).eval()
        processor = SpeechT5Processor.from_pretrained(directory)
    except (OSError, ValueError, ImportError) as err:
        raise RecipeInputError(
            f"Could not load a SpeechT5 text-to-speech model from {directory}: {err}"
        ) from err
    settings = TTSSettings.load(directory)
    mel = MelConfig.from_feature_extractor(processor.feature_extractor)
    return model, processor, settings, Vocoder(mel, vocoder or settings.vocoder, settings.griffin_lim_iters)


def synthesize(
    output_dir: str | os.PathLike,
    text: str,
    wav_path: str | os.PathLike,
    speaker: str | None = None,
    *,
    vocoder: str | None = None,
    seed: int = 0,
    loaded: tuple[Any, Any, TTSSettings, Vocoder] | None = None,
) -> dict[str, Any]:
    """Text -> WAV with a train_tts output directory; returns {path, seconds, speaker, frames, stopped, vocoder}.
    `speaker` is a speaker id seen in training (default: the first); `vocoder` a SpeechT5HifiGan path that
    overrides the one recorded at training (Griffin-Lim when neither is set)."""
    if not text or not text.strip():
        raise RecipeInputError("synthesize needs a non-empty text.")
    model, processor, settings, voc = loaded or load_tts(output_dir, vocoder)
    if not settings.speakers:
        raise RecipeInputError(
            f"{output_dir} has no speaker embeddings in {TTS_CONFIG_NAME}; was it written by train_tts?"
        )
    name = speaker or settings.default_speaker or next(iter(settings.speakers))
    if name not in settings.speakers:
        raise RecipeInputError(f"Unknown speaker {name!r}; this model knows {', '.join(settings.speakers)}.")
    symbols = text_symbols(text, settings.text_frontend, settings.phoneme_voice, settings.lowercase)
    unknown = out_of_vocabulary([symbols], processor.tokenizer)
    if unknown:
        logger.warning("Characters outside the vocabulary are read as <unk>: %s", "".join(sorted(unknown)))
    input_ids = processor.tokenizer(symbols)["input_ids"]
    (frames,) = generate_log_mels(
        model,
        [input_ids],
        [settings.speakers[name]],
        pad_token_id=model.config.pad_token_id,
        threshold=settings.threshold,
        maxlenratio=settings.maxlenratio,
        seed=seed,
    )
    waveform = voc(frames, seed=seed)
    sampling_rate = int(processor.feature_extractor.sampling_rate)
    path = write_wav(wav_path, waveform, sampling_rate)
    limit = (
        int(len(input_ids) * settings.maxlenratio / model.config.reduction_factor)
        * model.config.reduction_factor
    )
    return {
        "path": str(path),
        "seconds": len(waveform) / sampling_rate,
        "speaker": name,
        "frames": len(frames),
        "stopped": len(frames) < limit,
        "vocoder": voc.name,
    }


__all__ = [
    "row_log_mel",
    "tts_samples",
    "write_tts_samples",
    "tts_usage",
    "tts_processor",
    "tts_card_description",
    "speaker_embedders",
    "mean_speaker_vectors",
    "mel_statistics",
    "init_from_scratch",
    "TTSEvalCallback",
    "TTSArguments",
    "SPEECHT5_PRESETS",
    "TEXT_FRONTENDS",
    "TTS_CONFIG_NAME",
    "CTCRecognizer",
    "MelConfig",
    "TTSCollator",
    "TTSEvaluation",
    "TTSSettings",
    "Vocoder",
    "XVectorEmbedder",
    "asr_text",
    "build_char_tokenizer",
    "character_error_rate",
    "dtw_path",
    "evaluate_tts",
    "generate_log_mels",
    "griffin_lim",
    "learned_speaker_codes",
    "load_tts",
    "log_mel",
    "mel_cepstra",
    "mel_cepstral_distortion",
    "normalize_transcript",
    "out_of_vocabulary",
    "plot_spectrograms",
    "prepare_tts_features",
    "recognizer_cer",
    "reference_cers",
    "speecht5_config",
    "speecht5_feature_extractor",
    "synthesize",
    "teacher_forced_metrics",
    "text_symbols",
    "train_ctc_recognizer",
    "transcribe",
    "write_wav",
]
