"""Speech features for text-to-speech: log-mel spectrograms, Griffin-Lim, WAV files and the vocoder.

Log-mels are computed with librosa, numerically the SpeechT5FeatureExtractor's (log10 of an 80-band Slaney mel
magnitude spectrogram, 64 ms Hann windows every 16 ms at 16 kHz), so a model trained on them works with
SpeechT5HifiGan; Griffin-Lim (librosa) inverts them with no download. librosa and soundfile are the `audio`
extra, imported where they are used.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import SpeechT5FeatureExtractor, SpeechT5HifiGan

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import UnreadableMediaError


def _librosa():
    try:
        import librosa
    except ImportError as err:
        raise RecipeInputError("Speech features need librosa: pip install 'hfrecipes[audio]'.") from err
    return librosa


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


class Vocoder:
    """Log-mel -> waveform: SpeechT5HifiGan when a path is given, else Griffin-Lim (librosa)."""

    def __init__(self, mel: MelConfig, name_or_path: str | None = None, griffin_lim_iters: int = 32) -> None:
        self.mel, self.name_or_path, self.griffin_lim_iters = mel, name_or_path, griffin_lim_iters
        self.hifigan = None
        if name_or_path:
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
