"""Text-to-speech: features (librosa log-mel = SpeechT5's), Griffin-Lim, MCD/DTW maths, tokenizer, collator,
feature preparation with per-reason removals, speaker embeddings, vocoders, and one tiny train_tts run (loss
falls, held-out metrics beat the untrained model, WAVs written, output loads with the standard classes,
`synthesize` writes a WAV, resume works) plus its bad-input errors."""

from __future__ import annotations

import json
import math
import shutil

import datasets
import numpy as np
import pytest
import soundfile

from hfrecipes.audio.evaluation import character_error_rate, dtw_path, mel_cepstral_distortion
from hfrecipes.audio.features import MelConfig, Vocoder, griffin_lim, log_mel, speecht5_feature_extractor
from hfrecipes.audio.frontend import (
    build_char_tokenizer,
    normalize_transcript,
    out_of_vocabulary,
    text_symbols,
)
from hfrecipes.audio.models import XVectorEmbedder, learned_speaker_codes
from hfrecipes.audio.preparation import TTSCollator, prepare_tts_features
from hfrecipes.audio.synthesis import TTS_CONFIG_NAME, synthesize
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError

from .conftest import ROOT, read_json, run_recipe

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
MEL = MelConfig()


def chirp(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t)).astype(np.float32)


def test_log_mel_matches_speecht5_feature_extractor():
    extractor = speecht5_feature_extractor(16000)
    waveform = chirp()
    ours = log_mel(waveform, MelConfig.from_feature_extractor(extractor))
    theirs = extractor(audio_target=waveform, sampling_rate=16000)["input_values"][0]
    assert ours.shape == theirs.shape == (1 + len(waveform) // 256, 80)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    with pytest.raises(RecipeInputError, match="whole number"):
        speecht5_feature_extractor(22050)


def test_griffin_lim_reconstructs_the_spectrogram():
    frames = log_mel(chirp(), MEL)
    waveform = griffin_lim(frames, MEL, n_iter=16)
    assert abs(len(waveform) - 16000) <= 256 and np.abs(waveform).max() <= 1.0
    again = log_mel(waveform, MEL)[: len(frames)]
    error = np.abs(again - frames).mean()  # log10 units
    assert error < 0.3 and error < 0.5 * np.abs(frames - frames.mean(0)).mean(), error


def test_mcd_and_dtw_on_hand_examples():
    # DTW: a 3x3 cost matrix whose cheapest monotonic path is not the diagonal.
    cost = np.array([[0.0, 0.0, 5.0], [5.0, 5.0, 0.0], [5.0, 5.0, 0.0]])
    assert dtw_path(cost) == [(0, 0), (0, 1), (1, 2), (2, 2)]
    rng = np.random.default_rng(0)
    reference = rng.normal(-2.0, 0.5, size=(40, 80))
    same = mel_cepstral_distortion(reference, reference)
    assert same["mcd"] == 0.0 and same["log_mel_l1"] == 0.0
    # Repeating every frame (slower speech) costs nothing once DTW aligns it.
    assert mel_cepstral_distortion(reference, np.repeat(reference, 2, axis=0))["mcd"] < 1e-9
    # A known cepstral difference: shifting c1 by delta on every frame gives MCD = 10/ln10 * sqrt(2) * delta.
    delta, bands = 0.05, np.arange(80)
    shifted = reference + 2 * delta * np.cos(np.pi * (bands + 0.5) / 80) / math.log(10)
    expected = 10 / math.log(10) * math.sqrt(2) * delta
    assert mel_cepstral_distortion(reference, shifted)["mcd"] == pytest.approx(expected, rel=1e-6)
    assert character_error_rate(["abc", "hello"], ["abd", "hello"]) == pytest.approx(1 / 8)
    assert character_error_rate(["abc"], [""]) == 1.0


def test_text_normalisation_tokenizer_and_oov(tmp_path):
    assert normalize_transcript("It’s  3 Dogs!") == "it's three dogs!"
    tokenizer = build_char_tokenizer(["the cat.", "a dog"])
    ids = tokenizer("the dog")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id == 2 and tokenizer.pad_token_id == 1
    assert tokenizer.convert_ids_to_tokens(ids[:4]) == ["t", "h", "e", "▁"]
    assert tokenizer("zebra")["input_ids"][0] == tokenizer.unk_token_id == 3
    assert out_of_vocabulary(["zebra!"], tokenizer) == {"z": 1, "b": 1, "r": 1, "!": 1}
    from transformers import SpeechT5Processor

    processor = SpeechT5Processor(feature_extractor=speecht5_feature_extractor(), tokenizer=tokenizer)
    processor.save_pretrained(tmp_path)
    assert SpeechT5Processor.from_pretrained(tmp_path)(text="the dog")["input_ids"] == ids


@needs_espeak
def test_phoneme_frontend():
    symbols = text_symbols("The 2 cats.", frontend="phonemes")
    assert "ð" in symbols and "t" in symbols and "2" not in symbols
    with pytest.raises(RecipeInputError, match="text_frontend"):
        text_symbols("x", frontend="graphemes")


def test_collator_pads_with_minus_100_and_marks_stops():
    collator = TTSCollator(pad_token_id=1, num_mel_bins=80, reduction_factor=2)
    rows = [
        {"input_ids": [5, 6, 2], "labels": np.zeros(6 * 80), "speaker_embeddings": [1.0, 0.0]},
        {"input_ids": [5, 2], "labels": np.ones(4 * 80), "speaker_embeddings": [0.0, 1.0]},
    ]
    batch = collator(rows)
    assert batch["labels"].shape == (2, 6, 80) and batch["labels"].shape[1] % 2 == 0
    assert (batch["labels"][1, 4:] == -100).all() and (batch["labels"][1, :4] == 1).all()
    assert batch["input_ids"].tolist() == [[5, 6, 2], [5, 2, 1]] and batch["attention_mask"][1].tolist() == [
        1,
        1,
        0,
    ]
    assert batch["stop_labels"].tolist() == [[0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0]]
    assert batch["speaker_embeddings"].shape == (2, 2)


def test_prepare_features_counts_removals_and_resampling():
    rows = {
        "audio": [
            {"array": chirp(1.0, 22050), "sampling_rate": 22050},  # resampled to 16 kHz
            {"array": chirp(1.0), "sampling_rate": 16000},
            {"array": chirp(4.0), "sampling_rate": 16000},  # 251 frames > max_frames
            {"array": np.zeros(0, np.float32), "sampling_rate": 16000},  # zero-length
        ],
        "text": ["a cat.", "a dog.", "a long one.", "nothing"],
        "speaker_id": ["x", "y", "x", "y"],
    }
    features = datasets.Features(
        {
            "audio": {
                "array": datasets.List(datasets.Value("float32")),
                "sampling_rate": datasets.Value("int64"),
            },
            "text": datasets.Value("string"),
            "speaker_id": datasets.Value("string"),
        }
    )
    dataset = datasets.Dataset.from_dict(rows, features=features)
    tokenizer = build_char_tokenizer(["a cat. dog long one nothing"])
    codes = learned_speaker_codes(["x", "y"], 4)
    report = DataReport()
    prepared = prepare_tts_features(
        dataset,
        tokenizer=tokenizer,
        mel=MEL,
        report=report,
        reduction_factor=2,
        max_frames=200,
        max_text_tokens=50,
        speaker_codes=codes,
    )
    assert len(prepared) == 2 and all(n % 2 == 0 for n in prepared["num_frames"])
    details = report.steps[0].details
    assert details["removed_by_reason"] == {"too_long": 1, "too_short": 1}
    assert details["resampled_from_hz"] == {"22050": 1}
    assert prepared.with_format("numpy")[0]["speaker_embeddings"].tolist() == [1.0, 0.0, 0.0, 0.0]
    paths = datasets.Dataset.from_dict(
        {"audio": ["/nonexistent/broken.wav", "/nonexistent/b.wav"], "text": ["b", "c"]}
    )
    with pytest.raises(RecipeInputError, match="No usable utterances"):
        prepare_tts_features(
            paths,
            tokenizer=tokenizer,
            mel=MEL,
            report=report,
            reduction_factor=2,
            max_frames=200,
            max_text_tokens=50,
            speaker_codes=codes,
        )
    assert report.steps[-1].details["removed_by_reason"] == {"unreadable": 2}
    with pytest.raises(RecipeInputError, match="speaker_embedding_dim"):
        learned_speaker_codes(["a", "b", "c"], 2)


def test_xvectors_and_hifigan_from_local_paths(tmp_path):
    from transformers import (
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
        WavLMForXVector,
    )

    config = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        tdnn_dim=(32, 32),
        tdnn_kernel=(3, 1),
        tdnn_dilation=(1, 1),
        xvector_output_dim=16,
        num_buckets=8,
        max_bucket_distance=16,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    WavLMForXVector(config).save_pretrained(tmp_path / "xvector")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "xvector")
    embedder = XVectorEmbedder(str(tmp_path / "xvector"))
    vector = embedder(chirp(1.0, 22050), 22050)
    assert vector.shape == (16,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(RecipeInputError, match="Offline"):
        XVectorEmbedder(str(tmp_path / "missing"))
    SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]]
        )
    ).save_pretrained(tmp_path / "hifigan")
    vocoder = Vocoder(MEL, str(tmp_path / "hifigan"))
    assert vocoder(np.full((10, 80), -2.0, np.float32)).shape == (10 * 256,) and "HifiGan" in vocoder.name
    with pytest.raises(RecipeInputError, match="Griffin-Lim"):
        Vocoder(MEL, str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- the recipe, end to end

TINY = [
    *("--config", str(ROOT / "recipes/audio/configs/tts_espeak_tiny.yaml")),
    *("--dataset_name", "builtin:espeak?n=48&speakers=2&style=phrases&seed=0", "--eval_fraction", "0.1"),
    *("--eval_max_samples", "4", "--num_eval_samples", "2", "--intelligibility_steps", "40"),
    *("--per_device_train_batch_size", "8", "--warmup_steps", "5", "--logging_steps", "5"),
    *("--eval_steps", "15", "--save_steps", "15", "--eval_maxlenratio", "6"),
]


@pytest.fixture
def one_thread():
    """torch with 2 threads on 2 shared cores can run ~10x slower than with 1 (see STACK-NOTES)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@needs_espeak
def test_train_tts_tiny_run_resume_and_synthesize(tmp_path, one_thread):
    output_dir = tmp_path / "tts"
    run_recipe("audio/train_tts.py", *TINY, "--max_steps", "15", "--output_dir", output_dir)
    assert (output_dir / "checkpoint-15").is_dir() and (
        output_dir / "eval_samples/step-15/sample-0.wav"
    ).is_file()
    # Resume: the same command with more steps continues from checkpoint-15.
    run_recipe("audio/train_tts.py", *TINY, "--max_steps", "30", "--output_dir", output_dir)
    lineage = read_json(output_dir / "lineage.json")
    assert lineage["resumed_from"].endswith("checkpoint-15")
    metrics = read_json(output_dir / "metrics.json")
    history = read_json(output_dir / "log_history.json")
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < 0.75 * losses[0], losses  # the loss falls (30 steps of batch 8)
    # Held-out metrics beat the untrained model.
    assert metrics["teacher_forced_log_mel_l1"] < metrics["teacher_forced_log_mel_l1_before"]
    assert metrics["log_mel_l1_dtw"] < metrics["log_mel_l1_dtw_before"]
    for key in (
        "mcd_dtw",
        "duration_ratio",
        "stop_balanced_accuracy",
        "cer_synthesized",
        "cer_real",
        "cer_real_vocoded",
    ):
        assert math.isfinite(metrics[key]) and math.isfinite(metrics.get(f"{key}_before", 0.0)), key
    assert any("eval_samples_mcd_dtw" in entry for entry in history)
    samples = json.loads((output_dir / "samples/samples.json").read_text())
    assert (output_dir / "samples" / samples[0]["file"]).is_file() and (
        output_dir / "samples/spectrograms.png"
    ).is_file()
    card = (output_dir / "README.md").read_text()
    assert "mcd_dtw" in card and "samples/spectrograms.png" in card and "pipeline_tag: text-to-speech" in card

    # The output loads with the standard classes; synthesize writes a non-silent WAV of plausible length.
    from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor

    model = SpeechT5ForTextToSpeech.from_pretrained(output_dir)
    processor = SpeechT5Processor.from_pretrained(output_dir)
    assert model.config.vocab_size == len(processor.tokenizer)
    settings = read_json(output_dir / TTS_CONFIG_NAME)
    assert len(settings["speakers"]) == 2
    speaker = sorted(settings["speakers"])[1]
    result = synthesize(output_dir, "the old dog saw a green boat.", tmp_path / "out.wav", speaker=speaker)
    samples_out, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == 16000 and result["speaker"] == speaker and 0.2 < result["seconds"] <= 30
    assert np.sqrt(np.mean(samples_out**2)) > 1e-3  # not silent
    with pytest.raises(RecipeInputError, match="Unknown speaker"):
        synthesize(output_dir, "hello", tmp_path / "x.wav", speaker="nobody")
    with pytest.raises(RecipeInputError, match="non-empty"):
        synthesize(output_dir, "  ", tmp_path / "x.wav")


def test_train_tts_bad_inputs(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"audio": "a.wav", "sentence": "hello"}\n{"audio": "b.wav", "sentence": "there"}\n')
    base = [
        "--config",
        str(ROOT / "recipes/audio/configs/tts_espeak_tiny.yaml"),
        "--output_dir",
        tmp_path / "o",
    ]
    with pytest.raises(RecipeInputError, match="text_column"):
        run_recipe("audio/train_tts.py", *base, "--dataset_name", rows)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"audio": "a.wav", "text": "hello"}\n{"audio": "b.wav", "text": ""}\n')
    with pytest.raises(RecipeInputError, match="empty transcript"):
        run_recipe("audio/train_tts.py", *base, "--dataset_name", empty)
    with pytest.raises(RecipeInputError, match="text_frontend"):
        run_recipe("audio/train_tts.py", *base, "--text_frontend", "graphemes")


def _tiny_xvector_and_hifigan(root):
    from transformers import (
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
        WavLMForXVector,
    )

    config = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        tdnn_dim=(32, 32),
        tdnn_kernel=(3, 1),
        tdnn_dilation=(1, 1),
        xvector_output_dim=16,
        num_buckets=8,
        max_bucket_distance=16,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    WavLMForXVector(config).save_pretrained(root / "xvector")
    Wav2Vec2FeatureExtractor().save_pretrained(root / "xvector")
    hifigan = SpeechT5HifiGanConfig(
        upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]]
    )
    SpeechT5HifiGan(hifigan).save_pretrained(root / "hifigan")
    return str(root / "xvector"), str(root / "hifigan")


@needs_espeak
def test_train_tts_ljspeech_folder_phonemes_xvectors_hifigan(tmp_path, one_thread):
    """The real-data path: an LJSpeech-style folder at 22,050 Hz (resampled and reported), IPA phonemes,
    x-vector speaker embeddings from a model path and a SpeechT5HifiGan vocoder (tiny local stand-ins)."""
    from hfrecipes.data import load_source

    corpus = tmp_path / "LJSpeech-mini"
    clips = load_source("builtin:espeak?n=12&speakers=1&style=phrases&sampling_rate=0").with_format("numpy")
    lines = []
    for i, row in enumerate(clips):
        (corpus / "wavs").mkdir(parents=True, exist_ok=True)
        soundfile.write(
            corpus / "wavs" / f"LJ{i:03d}.wav", row["audio"]["array"], int(row["audio"]["sampling_rate"])
        )
        lines.append(f"LJ{i:03d}|{row['text']}|{row['text']}")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    xvector, hifigan = _tiny_xvector_and_hifigan(tmp_path)
    config = tmp_path / "tts.yaml"
    config.write_text(
        (ROOT / "recipes/audio/configs/tts_espeak_tiny.yaml").read_text()
        + "model_overrides:\n  speaker_embedding_dim: 16\n"
    )
    output_dir = tmp_path / "out"
    run_recipe(
        "audio/train_tts.py",
        "--config",
        config,
        "--dataset_name",
        corpus,
        "--output_dir",
        output_dir,
        "--text_frontend",
        "phonemes",
        "--speaker_embeddings",
        xvector,
        "--vocoder",
        hifigan,
        "--intelligibility_steps",
        "0",
        "--max_steps",
        "4",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--eval_fraction",
        "0.2",
        "--eval_max_samples",
        "2",
    )
    report = read_json(output_dir / "data_report.json")
    features = next(s for s in report["steps"] if s["step"] == "tts_features_train")
    assert features["details"]["resampled_from_hz"] == {"22050": features["rows_out"]}
    settings = read_json(output_dir / TTS_CONFIG_NAME)
    assert settings["text_frontend"] == "phonemes" and settings["vocoder"] == hifigan
    assert (
        list(settings["speakers"]) == ["LJSpeech-mini"] and len(settings["speakers"]["LJSpeech-mini"]) == 16
    )
    metrics = read_json(output_dir / "metrics.json")
    assert "cer_synthesized" not in metrics and math.isfinite(metrics["mcd_dtw"])
    assert "ð" in "".join(read_json(output_dir / "tokenizer.json")["model"]["vocab"])  # an IPA vocabulary
    result = synthesize(output_dir, "the green house.", tmp_path / "x.wav")
    assert "HifiGan" in result["vocoder"] and soundfile.info(tmp_path / "x.wav").samplerate == 16000
