"""How recipes/audio/train_tts.py evaluates a model on held-out utterances, copied along by `hfrecipes copy
audio/train_tts.py DIR`: teacher-forced metrics, free-running generation (threshold and length limit as set
in the recipe's arguments), MCD / log-mel L1 after DTW, duration ratio, and the intelligibility proxy's CER on
the vocoded synthesis. The measuring instruments themselves are the library's (hfrecipes.audio.evaluation)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hfrecipes.audio.evaluation import (
    CTCRecognizer,
    TTSEvaluation,
    mel_cepstral_distortion,
    recognizer_cer,
    teacher_forced_metrics,
)
from hfrecipes.audio.features import Vocoder, log_mel
from hfrecipes.audio.preparation import TTSCollator, row_log_mel
from hfrecipes.audio.synthesis import generate_log_mels

logger = logging.getLogger(__name__)


def evaluate_tts(
    model: Any,
    rows: Sequence[dict[str, Any]],
    collator: TTSCollator,
    vocoder: Vocoder,
    *,
    recognizer: CTCRecognizer | None = None,
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
        pad_token_id=model.config.pad_token_id,
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
