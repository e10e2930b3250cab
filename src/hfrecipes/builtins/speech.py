"""Speech data for text-to-speech: the offline `builtin:espeak` corpus and the espeak-ng helpers behind it
(synthesis and IPA phonemes).

`builtin:espeak` synthesises sentences from a small English grammar with Debian's `espeak-ng` (a
subprocess, no network), each speaker being one voice/variant at one speaking rate and pitch, so speaker
conditioning has something to learn. It is deterministic: the same options give the same audio bytes.

    load_source("builtin:espeak?n=240&speakers=4&sampling_rate=16000")
    -> columns audio {array, sampling_rate}, text, speaker_id, voice, words_per_minute

Other sources are anything with `audio` + `text` columns (a Hub id, a saved dataset, an `audiofolder`-style
folder with metadata.csv/jsonl), or an LJSpeech-style folder (`wavs/` + pipe-separated `metadata.csv`
with `id|text|normalized_text`): `hfrecipes.audio.data.load_speech_source` picks the right loader.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import load_audio

ESPEAK_INSTALL_HINT = (
    "install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS), "
    "or set the ESPEAK_NG environment variable to the binary"
)


def espeak_binary() -> str:
    """Path of the espeak-ng executable ($ESPEAK_NG, else PATH); RecipeInputError saying how to install it."""
    configured = os.environ.get("ESPEAK_NG")
    if configured and Path(configured).is_file() and os.access(configured, os.X_OK):
        return configured
    found = shutil.which("espeak-ng")
    if not found:
        raise RecipeInputError(
            f"espeak-ng is not installed (needed by builtin:espeak and phonemes): {ESPEAK_INSTALL_HINT}."
        )
    return found


@dataclass(frozen=True)
class EspeakSpeaker:
    """One synthetic speaker: an espeak-ng voice (+variant), a speaking rate (words/minute) and a pitch (0-99)."""

    name: str
    voice: str
    words_per_minute: int
    pitch: int


# Voices and variants that ship with Debian's espeak-ng package (no mbrola needed); rates and pitches differ
# so that each speaker is audibly distinct.
ESPEAK_SPEAKERS: tuple[EspeakSpeaker, ...] = (
    EspeakSpeaker("us-m-175", "en-us", 175, 50),
    EspeakSpeaker("us-f-150", "en-us+f3", 150, 65),
    EspeakSpeaker("gb-m-200", "en-gb+m3", 200, 40),
    EspeakSpeaker("rp-f-165", "en-gb-x-rp+f2", 165, 55),
    EspeakSpeaker("scot-m-140", "en-gb-scotland", 140, 45),
    EspeakSpeaker("us-f-190", "en-us+f4", 190, 75),
    EspeakSpeaker("carib-m-160", "en-029+m2", 160, 35),
    EspeakSpeaker("nyc-f-180", "en-us-nyc+f1", 180, 60),
)


def espeak_synthesize(
    text: str, voice: str = "en-us", words_per_minute: int = 175, pitch: int = 50
) -> tuple[np.ndarray, int]:
    """One utterance as float32 mono samples and espeak-ng's rate (22,050 Hz). `-z` drops the final pause."""
    command = [espeak_binary(), "--stdout", "-z", "-b", "1", "-v", voice, "-s", str(int(words_per_minute))]
    command += ["-p", str(int(pitch)), "--stdin"]
    result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=60, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RecipeInputError(
            f"espeak-ng failed for voice {voice!r} (exit {result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[:200]}; list voices with `espeak-ng --voices=en`."
        )
    return load_audio({"bytes": result.stdout})


def espeak_phonemes(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of `text` (espeak-ng --ipa); clauses espeak puts on separate lines are joined by spaces."""
    command = [espeak_binary(), "-q", "--ipa", "-b", "1", "-v", voice, "--stdin"]
    result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RecipeInputError(
            f"espeak-ng --ipa failed for voice {voice!r}: {result.stderr.decode(errors='replace').strip()[:200]}"
        )
    return " ".join(result.stdout.decode("utf-8").split())


# ---------------------------------------------------------------------------------------------- sentences

_NAMES = ["anna", "peter", "maria", "john", "lucy", "david", "emma", "oscar", "nora", "felix"]
_ADJECTIVES = [
    "small",
    "big",
    "old",
    "young",
    "happy",
    "quiet",
    "green",
    "bright",
    "cold",
    "warm",
    "lazy",
    "quick",
]
_NOUNS = [
    "dog",
    "cat",
    "house",
    "garden",
    "river",
    "teacher",
    "window",
    "letter",
    "boat",
    "city",
    "apple",
    "horse",
]
_PLURALS = ["dogs", "birds", "books", "children", "flowers", "boxes", "trees", "friends", "shoes", "cups"]
_VERBS_PAST = [
    "saw",
    "found",
    "painted",
    "visited",
    "carried",
    "opened",
    "liked",
    "cleaned",
    "followed",
    "watched",
]
_VERBS = ["sees", "finds", "paints", "visits", "carries", "opens", "likes", "cleans", "follows", "watches"]
_PLACES = ["near the river", "in the garden", "at the station", "by the window", "on the hill", "after lunch"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]


def _sentence(rng: random.Random) -> str:
    pick = rng.choice
    templates = (
        lambda: f"the {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_VERBS)} the {pick(_NOUNS)}.",
        lambda: f"{pick(_NAMES)} {pick(_VERBS_PAST)} {pick(_NUMBERS)} {pick(_ADJECTIVES)} {pick(_PLURALS)}.",
        lambda: (
            f"a {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_VERBS_PAST)} the {pick(_PLURALS)} {pick(_PLACES)}."
        ),
        lambda: f"did {pick(_NAMES)} see the {pick(_ADJECTIVES)} {pick(_NOUNS)}?",
        lambda: f"{pick(_NAMES)} and {pick(_NAMES)} {pick(_VERBS_PAST)} the {pick(_NOUNS)} {pick(_PLACES)}.",
        lambda: f"{pick(_NUMBERS)} {pick(_PLURALS)} are {pick(_ADJECTIVES)} today.",
    )
    return pick(templates)()


def _phrase(rng: random.Random) -> str:
    pick = rng.choice
    templates = (
        lambda: f"the {pick(_ADJECTIVES)} {pick(_NOUNS)}.",
        lambda: f"a {pick(_ADJECTIVES)} {pick(_NOUNS)}.",
        lambda: f"{pick(_NAMES)} {pick(_VERBS_PAST)} it.",
        lambda: f"{pick(_NUMBERS)} {pick(_ADJECTIVES)} {pick(_PLURALS)}.",
        lambda: f"{pick(_NAMES)} {pick(_VERBS)} {pick(_PLURALS)}.",
    )
    return pick(templates)()


def espeak_sentences(n: int, seed: int = 0, style: str = "sentences") -> list[str]:
    """`n` distinct texts from a small English grammar (10-12 words per slot), the same for a seed:
    `sentences` (5-9 words, ~2 s of speech) or `phrases` (2-4 words, ~1 s; about 900 distinct)."""
    makers = {"sentences": _sentence, "phrases": _phrase}
    if style not in makers:
        raise RecipeInputError(f"builtin:espeak style must be one of {', '.join(makers)}, got {style!r}.")
    rng = random.Random(f"hfrecipes-espeak-{seed}")
    texts: list[str] = []
    seen: set[str] = set()
    for _ in range(200 * n):
        text = makers[style](rng)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            if len(texts) == n:
                return texts
    raise RecipeInputError(
        f"builtin:espeak cannot make {n} distinct {style}; ask for fewer (n) or use sentences."
    )


def _pick_speakers(speakers: str | int) -> list[EspeakSpeaker]:
    by_name = {s.name: s for s in ESPEAK_SPEAKERS}
    text = str(speakers).strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= len(ESPEAK_SPEAKERS):
            raise RecipeInputError(
                f"builtin:espeak has 1-{len(ESPEAK_SPEAKERS)} speakers, got speakers={count}."
            )
        return list(ESPEAK_SPEAKERS[:count])
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise RecipeInputError(
            f"builtin:espeak speakers {unknown or text!r} unknown; use a count or names from {', '.join(by_name)}."
        )
    return [by_name[name] for name in names]


def espeak(
    n: int | str = 240,
    speakers: int | str = 4,
    sampling_rate: int | str = 16000,
    seed: int | str = 0,
    style: str = "sentences",
    sentences: str | None = None,
) -> datasets.Dataset:
    """`n` utterances synthesised by espeak-ng, round-robin over `speakers` (a count or comma-separated names
    from ESPEAK_SPEAKERS), resampled to `sampling_rate` (0 keeps espeak's 22,050 Hz). Texts come from a
    built-in grammar (seeded; `style=sentences` or the shorter `phrases`) or, with `sentences=<file>`, from a
    text file (one per line, cycled)."""
    n, seed, sampling_rate = int(n), int(seed), int(sampling_rate)
    if n < 1:
        raise RecipeInputError(f"builtin:espeak needs n >= 1 utterances, got {n}.")
    chosen = _pick_speakers(speakers)
    espeak_binary()  # fail with the install hint before any work
    if sentences:
        path = Path(sentences)
        if not path.is_file():
            raise RecipeInputError(f"builtin:espeak sentences file {path} does not exist.")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise RecipeInputError(f"builtin:espeak sentences file {path} has no non-empty lines.")
        texts = [lines[i % len(lines)] for i in range(n)]
    else:
        texts = espeak_sentences(n, seed, style)
    jobs = [(text, chosen[i % len(chosen)]) for i, text in enumerate(texts)]

    def synthesise(job: tuple[str, EspeakSpeaker]) -> dict[str, Any]:
        text, speaker = job
        samples, rate = espeak_synthesize(text, speaker.voice, speaker.words_per_minute, speaker.pitch)
        if sampling_rate and sampling_rate != rate:
            samples, rate = load_audio({"array": samples, "sampling_rate": rate}, target_sr=sampling_rate)
        return {
            "audio": {"array": samples, "sampling_rate": rate},
            "text": text,
            "speaker_id": speaker.name,
            "voice": speaker.voice,
            "words_per_minute": speaker.words_per_minute,
        }

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # subprocess-bound
        rows = list(pool.map(synthesise, jobs))
    # Built through Arrow directly: Dataset.from_list converts every sample to a Python float (10x slower).
    audio = pa.StructArray.from_arrays(
        [
            pa.array([row["audio"]["array"] for row in rows], type=pa.list_(pa.float32())),
            pa.array([row["audio"]["sampling_rate"] for row in rows], type=pa.int64()),
        ],
        names=["array", "sampling_rate"],
    )
    table = pa.table(
        {
            "audio": audio,
            "text": pa.array([row["text"] for row in rows], type=pa.string()),
            "speaker_id": pa.array([row["speaker_id"] for row in rows], type=pa.string()),
            "voice": pa.array([row["voice"] for row in rows], type=pa.string()),
            "words_per_minute": pa.array([row["words_per_minute"] for row in rows], type=pa.int32()),
        }
    )
    return datasets.Dataset(table)


__all__ = [
    "ESPEAK_INSTALL_HINT",
    "ESPEAK_SPEAKERS",
    "EspeakSpeaker",
    "espeak",
    "espeak_binary",
    "espeak_phonemes",
    "espeak_sentences",
    "espeak_synthesize",
]
