"""Speech data: the builtin:espeak corpus (rows, rate, speakers, determinism, missing espeak-ng), IPA phonemes,
LJSpeech-style and audio folders, and the column checks TTS runs before any expensive work."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

from hfrecipes.audio.data import check_speech_columns, is_ljspeech_folder, load_speech_source
from hfrecipes.builtins.speech import ESPEAK_SPEAKERS, espeak_phonemes, espeak_sentences
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@needs_espeak
def test_espeak_builtin_rows_rate_and_distinct_speakers():
    dataset = load_source("builtin:espeak?n=8&speakers=4&sampling_rate=16000&seed=3")
    assert len(dataset) == 8
    assert {"audio", "text", "speaker_id", "voice", "words_per_minute"} <= set(dataset.column_names)
    audio = dataset.with_format("numpy")["audio"]
    assert {int(a["sampling_rate"]) for a in audio} == {16000}
    durations = [len(a["array"]) / 16000 for a in audio]
    assert all(0.5 < d < 6.0 for d in durations), durations
    assert len(set(dataset["speaker_id"])) == 4  # round-robin: 2 utterances per speaker
    assert len(set(dataset["text"])) == 8
    assert len(set(dataset["voice"])) == 4
    # Deterministic: the same options give the same samples.
    again = load_source("builtin:espeak?n=2&speakers=4&sampling_rate=16000&seed=3").with_format("numpy")
    np.testing.assert_array_equal(again[0]["audio"]["array"], audio[0]["array"])


@needs_espeak
def test_espeak_native_rate_named_speakers_and_sentence_file(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("hello there.\n\ngood morning.\n")
    names = f"{ESPEAK_SPEAKERS[1].name},{ESPEAK_SPEAKERS[2].name}"
    dataset = load_source(f"builtin:espeak?n=3&speakers={names}&sampling_rate=0&sentences={lines}")
    assert list(dataset["text"]) == ["hello there.", "good morning.", "hello there."]
    assert set(dataset["speaker_id"]) == {ESPEAK_SPEAKERS[1].name, ESPEAK_SPEAKERS[2].name}
    assert {int(a["sampling_rate"]) for a in dataset.with_format("numpy")["audio"]} == {22050}
    with pytest.raises(RecipeInputError, match="speakers"):
        load_source("builtin:espeak?n=2&speakers=nobody")


def test_sentences_are_distinct_and_seeded():
    first = espeak_sentences(50, seed=1)
    assert (
        len(set(first)) == 50
        and first == espeak_sentences(50, seed=1)
        and first != espeak_sentences(50, seed=2)
    )


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no espeak-ng on PATH
    monkeypatch.delenv("ESPEAK_NG", raising=False)
    with pytest.raises(RecipeInputError) as err:
        load_source("builtin:espeak?n=2")
    assert "apt-get install espeak-ng" in str(err.value) and "brew install espeak-ng" in str(err.value)
    with pytest.raises(RecipeInputError, match="apt-get install espeak-ng"):
        espeak_phonemes("hello")


@needs_espeak
def test_ipa_phonemes():
    phonemes = espeak_phonemes("The cat. Hello, world!")
    assert "ð" in phonemes and "\n" not in phonemes and "kˈæt" in phonemes


def _wav(path, seconds=0.6, rate=22050, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def test_ljspeech_folder(tmp_path):
    root = tmp_path / "LJSpeech-mini"
    _wav(root / "wavs" / "LJ001-0001.wav")
    _wav(root / "wavs" / "LJ001-0002.wav", freq=330)
    (root / "wavs" / "LJ001-0004.wav").write_bytes(b"not a wav")
    (root / "metadata.csv").write_text(
        "LJ001-0001|Printing, in 1 sense|Printing, in one sense\n"
        'LJ001-0002|He said "no" twice|He said "no" twice\n'
        "LJ001-0003|missing file|missing file\n"
        "LJ001-0004|broken file|broken file\n"
    )
    assert is_ljspeech_folder(root)
    problems: list = []
    dataset = load_speech_source(str(root), problems=problems)
    assert len(dataset) == 2
    assert list(dataset["text"]) == ["Printing, in one sense", 'He said "no" twice']  # normalised column
    assert set(dataset["speaker_id"]) == {"LJSpeech-mini"}
    reasons = dict(problems)
    assert "not found" in reasons["LJ001-0003.wav"] and "LJ001-0004.wav" in reasons


def test_audiofolder_with_metadata(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav", rate=16000)
    (tmp_path / "metadata.csv").write_text("file_name,text\na.wav,first one\nb.wav,second one\n")
    dataset = load_speech_source(str(tmp_path))
    assert sorted(dataset["text"]) == ["first one", "second one"] and "audio" in dataset.column_names


def test_column_checks():
    import datasets

    good = datasets.Dataset.from_dict({"wav": ["a.wav"], "sentence": ["hi"], "spk": ["x"]})
    renamed = check_speech_columns(good, audio_column="wav", text_column="sentence", speaker_column="spk")
    assert set(renamed.column_names) == {"audio", "text", "speaker_id"}
    with pytest.raises(RecipeInputError, match="audio_column"):
        check_speech_columns(datasets.Dataset.from_dict({"text": ["hi"]}))
    with pytest.raises(RecipeInputError, match="text_column"):
        check_speech_columns(datasets.Dataset.from_dict({"audio": ["a.wav"], "sentence": ["hi"]}))
    with pytest.raises(RecipeInputError, match="empty transcript"):
        check_speech_columns(datasets.Dataset.from_dict({"audio": ["a.wav", "b.wav"], "text": ["hi", "  "]}))
