"""Measuring text-to-speech: mel-cepstral distortion with DTW, log-mel L1, character error rate, an
intelligibility proxy (a small CTC recogniser trained on the real training speech, CER on real vs synthesised
speech), teacher-forced loss / L1 / stop-token accuracy, and the samples (WAVs + spectrogram PNG) and model-card
table that show the results. What a run evaluates, and how it generates, is the recipe's
(recipes/audio/tts_training.py); these are the measuring instruments."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.fft import dct
from torch import nn
from tqdm.auto import tqdm
from transformers import TrainerCallback

from hfrecipes.audio.features import MelConfig, Vocoder, log_mel, write_wav
from hfrecipes.audio.frontend import normalize_transcript
from hfrecipes.audio.preparation import TTSCollator, row_log_mel
from hfrecipes.core.reports import plt, save_figure


def mel_cepstra(log_mel_frames: np.ndarray, num_coefficients: int = 24) -> np.ndarray:
    """Mel-cepstral coefficients c1..c_num_coefficients (c0, the energy, left out as usual for MCD) of the
    natural-log mel amplitude x over N bands, scaled as a real cepstrum (ln|X(w)| = c0 + 2 sum_m c_m cos(m w)):
    c_m = (1/N) sum_k x_k cos(pi m (k + 1/2) / N), i.e. the orthonormal DCT-II divided by sqrt(2N)."""
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
    """The recogniser's character error rate on these log-mels against their transcripts."""
    return character_error_rate([asr_text(t) for t in texts], transcribe(model, mels))


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
    """What an evaluation of a TTS model found: its metrics, and the generated log-mels and waveforms."""

    metrics: dict[str, float]
    generated: list[np.ndarray] = field(default_factory=list)  # log-mels, one per held-out row
    waveforms: list[np.ndarray] = field(default_factory=list)


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
    return save_figure(fig, path)


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
    """At each evaluation, synthesise a few fixed held-out utterances with `evaluate(model, rows)` (a
    TTSEvaluation) and write their WAVs and a real-vs-generated spectrogram PNG to
    <output_dir>/eval_samples/step-<N>/; their MCD, log-mel L1 and duration ratio join the log history as
    `eval_samples_*`."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        evaluate: Callable[[Any, Sequence[dict[str, Any]]], TTSEvaluation],
        mel: MelConfig,
        output_dir: str | Path,
    ) -> None:
        self.rows, self.evaluate, self.mel, self.output_dir = list(rows), evaluate, mel, Path(output_dir)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None or not self.rows:
            return
        evaluation = self.evaluate(model, self.rows)
        directory = self.output_dir / "eval_samples" / f"step-{state.global_step}"
        write_tts_samples(directory, self.rows, evaluation, self.mel, title=f"step {state.global_step}")
        keys = ("mcd_dtw", "log_mel_l1_dtw", "duration_ratio")
        state.log_history.append(
            {"step": state.global_step, **{f"eval_samples_{k}": evaluation.metrics[k] for k in keys}}
        )
        model.train()


def intelligibility_proxy(
    train_rows: Sequence[dict[str, Any]],
    heldout: Sequence[dict[str, Any]],
    vocoder: Vocoder,
    *,
    steps: int,
    seed: int = 0,
) -> tuple[CTCRecognizer | None, dict[str, float]]:
    """The CTC recogniser trained on the real training speech, and its CERs on the real held-out speech
    (`reference_cers`); (None, {}) when `steps` is 0 (no CER)."""
    if steps <= 0:
        return None, {}
    bins = vocoder.mel.num_mel_bins
    mels = [row_log_mel(row, bins) for row in train_rows]
    recognizer, _ = train_ctc_recognizer(mels, [row["text"] for row in train_rows], steps=steps, seed=seed)
    return recognizer, reference_cers(recognizer, heldout, vocoder, bins, seed=seed)


def tts_card_description(
    metrics: dict,
    samples: list[dict],
    *,
    source: str,
    dataset: str,
    text_frontend: str,
    speaker_embeddings: str,
    vocoder: str,
) -> str:
    """The model card's description of a TTS run: held-out metrics before and after training, the spectrogram
    PNG and the sample WAVs (`tts_samples` entries)."""
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
        f"SpeechT5 text-to-speech ({source}) trained on `{dataset}` with a {text_frontend} front end "
        f"and {speaker_embeddings} speaker embeddings; vocoder for the samples: {vocoder}. MCD is computed "
        "from 80-band log-mels (c1-c24, DTW-aligned), comparable between these runs, not with papers.\n\n"
        + "\n".join(rows)
        + f"\n\n![real vs generated log-mels](samples/spectrograms.png)\n\n{listing}\n\n"
        "Samples written at each evaluation are in `eval_samples/step-<N>/` of the run directory."
    )
