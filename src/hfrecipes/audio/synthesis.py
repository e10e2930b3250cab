"""Speech from a trained text-to-speech model: batched free-running generation of log-mels, the synthesis
settings saved beside a model (tts_config.json: front end, speaker vectors, vocoder), and
`synthesize(output_dir, text, wav_path, speaker=...)`, what `hfrecipes synthesize` runs on a finished
recipes/audio/train_tts.py output directory."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor

from hfrecipes.audio.features import MelConfig, Vocoder, write_wav
from hfrecipes.audio.frontend import out_of_vocabulary, text_symbols
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_json

logger = logging.getLogger(__name__)

TTS_CONFIG_NAME = (
    "tts_config.json"  # hfrecipes' synthesis settings beside the model (frontend, speakers, vocoder)
)


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


def tts_usage(output_dir: Path) -> str:
    """The model card's usage snippet: `synthesize`, or the standard transformers classes."""
    return (
        f'from hfrecipes.audio.synthesis import synthesize\n\nsynthesize("{output_dir}", "the green boat.", "out.wav")\n\n'
        "# or with the standard classes (speaker vectors are in tts_config.json):\n"
        "from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor\n"
        f'model = SpeechT5ForTextToSpeech.from_pretrained("{output_dir}")\n'
        f'processor = SpeechT5Processor.from_pretrained("{output_dir}")'
    )


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
        """The settings of a train_tts run (the recipe's TTSArguments) with its speaker table."""
        return cls(
            text_frontend=args.text_frontend,
            phoneme_voice=args.phoneme_voice,
            lowercase=args.lowercase,
            speakers=speakers,
            default_speaker=next(iter(speakers)),
            vocoder=args.vocoder,
            griffin_lim_iters=args.griffin_lim_iters,
            threshold=args.eval_threshold,
        )

    def save(self, directory: Path) -> None:
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
