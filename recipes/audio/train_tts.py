"""Text-to-speech with SpeechT5 (`SpeechT5ForTextToSpeech`): from a tiny preset or fine-tuned from a checkpoint.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/audio/train_tts.py \
        --config recipes/audio/configs/tts_espeak_tiny.yaml [--key value ...]

Data: anything with `audio` + `text` (builtin:espeak, a Hub id, an LJSpeech-style or audio folder), resampled to
the model's rate. Labels are log-mels (-100 padded, frames a multiple of the reduction factor); the loss is
SpeechT5's L1 + stop-token BCE + guided attention. Evaluation on held-out utterances, before and after
training: MCD / log-mel L1 after DTW, duration ratio, stop accuracy, and the CER of a small CTC recogniser
(trained here on the real training speech) on the synthesised speech. WAVs and spectrogram PNGs are written
at each eval. Re-running resumes. Synthesis: `hfrecipes.audio.speech.synthesize(output_dir, text, "out.wav")`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, SpeechT5ForTextToSpeech

from hfrecipes.audio import speech
from hfrecipes.audio.data import check_speech_columns, load_speech_source
from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.io import atomic_write_json
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import parse_pipeline, run_pipeline

logger = logging.getLogger(__name__)
TTSArguments = speech.TTSArguments  # YAML keys of this recipe (tests/test_recipe_configs.py)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((speech.TTSArguments, Seq2SeqTrainingArguments, CardArguments))
    parser.set_defaults(
        **cpu_only_defaults(),
        output_dir="runs/tts",
        eval_strategy="steps",
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
    )
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    args, training_args, card_args = parse_args()
    stage = start_stage(
        "audio/train_tts",
        args,
        training_args,
        card_args,
        inputs={
            "data": args.dataset_name,
            "model": args.model_name_or_path,
            "processor": args.processor_name_or_path,
            "speaker_embedder": None if args.speaker_embeddings == "learned" else args.speaker_embeddings,
            "vocoder": args.vocoder,
        },
    )
    output_dir = Path(training_args.output_dir)

    # --- data ---------------------------------------------------------------------------------------------
    report, problems = DataReport(source=args.dataset_name), []
    dataset = load_speech_source(
        args.dataset_name, split=args.dataset_split, hub_config=args.dataset_config, problems=problems
    )
    if problems:
        report.add(
            "load",
            rows_in=len(dataset) + len(problems),
            rows_out=len(dataset),
            examples=[f"{f}: {r}" for f, r in problems[:5]],
        )
    if args.max_train_samples:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    speaker_column = args.speaker_column if args.speaker_column in dataset.column_names else None
    dataset = check_speech_columns(dataset, args.audio_column, args.text_column, speaker_column)
    dataset = run_pipeline(dataset, parse_pipeline(args.pipeline), report)
    if len(dataset) < 4:
        raise RecipeInputError(
            f"Only {len(dataset)} utterances left: TTS needs at least 4 (train + held out)."
        )
    split = dataset.train_test_split(
        test_size=max(args.eval_fraction, 2 / len(dataset)), seed=training_args.seed
    )

    # --- processor (tokenizer + feature extractor) ------------------------------------------------------------
    processor = speech.tts_processor(args, split["train"]["text"])
    tokenizer, mel = processor.tokenizer, speech.MelConfig.from_feature_extractor(processor.feature_extractor)

    # --- model config (the model itself is initialised from the training data's statistics below) ---------
    if args.model_name_or_path:
        model = SpeechT5ForTextToSpeech.from_pretrained(args.model_name_or_path)
        config, source = model.config, args.model_name_or_path
    else:
        overrides = dict(args.model_overrides)
        config = speech.speecht5_config(args.model_preset, len(tokenizer), mel.num_mel_bins, overrides)
        model, source = None, f"preset:{args.model_preset}"
    if config.num_mel_bins != mel.num_mel_bins:
        raise RecipeInputError(
            f"The model predicts {config.num_mel_bins} mel bins, the processor {mel.num_mel_bins}."
        )

    # --- features and speakers --------------------------------------------------------------------------------
    codes, xvectors = speech.speaker_embedders(args, split["train"], config.speaker_embedding_dim)
    common = dict(
        tokenizer=tokenizer,
        mel=mel,
        report=report,
        reduction_factor=config.reduction_factor,
        max_frames=min(args.max_frames, config.max_speech_positions),
        max_text_tokens=min(args.max_text_tokens, config.max_text_positions),
        frontend=args.text_frontend,
        phoneme_voice=args.phoneme_voice,
        lowercase=args.lowercase,
        speaker_codes=codes,
        xvectors=xvectors,
    )
    train_rows = speech.prepare_tts_features(split["train"], step_name="tts_features_train", **common)
    eval_rows = speech.prepare_tts_features(split["test"], step_name="tts_features_eval", **common)
    train_rows, eval_rows = train_rows.with_format("numpy"), eval_rows.with_format("numpy")
    heldout = [eval_rows[i] for i in range(min(args.eval_max_samples, len(eval_rows)))]
    report.summary.update(
        train_rows=len(train_rows), eval_rows=len(eval_rows), sampling_rate=mel.sampling_rate
    )
    speaker_table = codes or speech.mean_speaker_vectors(train_rows)
    if model is None:
        model = speech.init_from_scratch(
            SpeechT5ForTextToSpeech(config), *speech.mel_statistics(train_rows, mel)
        )
    model.config.use_cache = not training_args.gradient_checkpointing
    # SpeechT5's loss is its own batch mean: taking **kwargs, it would get Trainer's DDP scaling by the world size
    model.accepts_loss_kwargs = False

    # --- evaluation before training, intelligibility proxy --------------------------------------------------------
    collator = speech.TTSCollator(config.pad_token_id, mel.num_mel_bins, config.reduction_factor)
    vocoder = speech.Vocoder(mel, args.vocoder, args.griffin_lim_iters)
    gen = dict(
        pad_token_id=config.pad_token_id,
        threshold=args.eval_threshold,
        maxlenratio=args.eval_maxlenratio,
        seed=training_args.seed,
    )
    recognizer, references = None, {}
    logger.info(
        "%d training / %d held-out utterances; %s", len(train_rows), len(eval_rows), report.steps[-1].details
    )
    if args.intelligibility_steps > 0:
        train_mels = [speech.row_log_mel(r, mel.num_mel_bins) for r in train_rows]
        recognizer, _ = speech.train_ctc_recognizer(
            train_mels, list(train_rows["text"]), steps=args.intelligibility_steps, seed=training_args.seed
        )
        references = speech.reference_cers(
            recognizer, heldout, vocoder, mel.num_mel_bins, seed=training_args.seed
        )
    logger.info("Held-out metrics of the untrained model (%d utterances)...", len(heldout))
    before = speech.evaluate_tts(model, heldout, collator, vocoder, recognizer=recognizer, **gen).metrics

    # --- trainer and training -------------------------------------------------------------------------------------
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=collator,
        callbacks=[
            speech.TTSEvalCallback(heldout[: args.num_eval_samples], collator, vocoder, output_dir, **gen)
        ],
    )
    track_efficiency(trainer, flops="measured", unit="utterances")  # throughput, MFU, energy -> lineage
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -------------------------------------------------------------------------------------------------
    step, history = trainer.state.global_step, trainer.state.log_history  # reuse an eval at this very step
    last = next(
        (e["eval_loss"] for e in reversed(history) if "eval_loss" in e and e.get("step") == step), None
    )
    eval_loss = last if last is not None else trainer.evaluate()["eval_loss"]
    after = speech.evaluate_tts(trainer.model, heldout, collator, vocoder, recognizer=recognizer, **gen)
    metrics = {
        "parameters": model.num_parameters(),
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "eval_loss": eval_loss,
        "heldout_utterances": len(heldout),
        **references,
        **after.metrics,
        **{f"{k}_before": v for k, v in before.items()},
    }

    # --- save (atomically), model card, push ---------------------------------------------------------------------
    shown = heldout[: max(args.num_eval_samples, 1)]
    samples = speech.tts_samples(shown, after, mel)

    def save_more(staging: Path) -> None:
        processor.save_pretrained(staging)
        speech.TTSSettings.from_args(args, speaker_table).save(staging)
        title = f"held-out utterances after {trainer.state.global_step} steps"
        speech.write_tts_samples(staging / "samples", shown, after, mel, title=title)
        atomic_write_json(staging / "samples" / "samples.json", samples)

    lineage = stage.finish_trainer(
        trainer,
        config={"script": args, "training": training_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: SpeechT5 text-to-speech with hfrecipes",
            "description": speech.tts_card_description(args, source, vocoder.name, metrics, samples),
            "usage": speech.tts_usage(output_dir),
            "base_model": args.model_name_or_path,
            "datasets": [args.dataset_name],
            "tags": ["text-to-speech", "speecht5"],
            "pipeline_tag": "text-to-speech",
        },
        loss_title="SpeechT5 TTS loss",
        extra={"resumed_from": resumed_from, "vocoder": vocoder.name},
        save_more=save_more,
    )
    if lineage is not None:  # the main process
        print(
            f"TTS done: MCD {before['mcd_dtw']:.2f} -> {metrics['mcd_dtw']:.2f} dB; outputs in {output_dir}"
        )


if __name__ == "__main__":
    run_main(main)
