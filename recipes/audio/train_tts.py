"""Text-to-speech with SpeechT5 (`SpeechT5ForTextToSpeech`): from a tiny preset or fine-tuned from a checkpoint.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/audio/train_tts.py \
        --config recipes/audio/configs/tts_espeak_tiny.yaml [--key value ...]

Data: anything with `audio` + `text` (builtin:espeak, a Hub id, an LJSpeech-style or audio folder), resampled to
the model's rate. Labels are log-mels (-100 padded, frames a multiple of the reduction factor); the loss
(`tts_loss` in tts_training.py beside this script) is SpeechT5's L1 + stop-token BCE + guided attention.
Evaluation (tts_evaluation.py) on held-out utterances, before and after training: MCD / log-mel L1 after DTW,
duration ratio, stop accuracy, and the CER of a small CTC recogniser (trained here on the real training
speech) on the synthesised speech. WAVs and spectrogram PNGs are written at each eval. Re-running resumes. Synthesis: `hfrecipes.audio.synthesis.synthesize(output_dir, text, "out.wav")`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from transformers import Seq2SeqTrainingArguments, SpeechT5ForTextToSpeech
from tts_evaluation import evaluate_tts
from tts_training import TTSArguments, TTSTrainer

from hfrecipes.audio import evaluation, models
from hfrecipes.audio.data import load_speech_splits
from hfrecipes.audio.features import MelConfig, Vocoder
from hfrecipes.audio.preparation import TTSCollator, mel_statistics, prepare_tts_features
from hfrecipes.audio.synthesis import TTSSettings, tts_usage
from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.io import atomic_write_json
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((TTSArguments, Seq2SeqTrainingArguments, CardArguments))
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
    train, test, report = load_speech_splits(
        args.dataset_name,
        split=args.dataset_split,
        hub_config=args.dataset_config,
        audio_column=args.audio_column,
        text_column=args.text_column,
        speaker_column=args.speaker_column,
        pipeline=args.pipeline,
        max_samples=args.max_train_samples,
        eval_fraction=args.eval_fraction,
        seed=training_args.seed,
    )

    # --- processor (tokenizer + feature extractor) and model config (a preset's model is built further down) ---
    processor = models.tts_processor(
        train["text"],
        name_or_path=args.processor_name_or_path or args.model_name_or_path,
        sampling_rate=args.sampling_rate,
        frontend=args.text_frontend,
        phoneme_voice=args.phoneme_voice,
        lowercase=args.lowercase,
    )
    tokenizer, mel = processor.tokenizer, MelConfig.from_feature_extractor(processor.feature_extractor)
    model, config, source = models.tts_model_config(
        args.model_name_or_path, args.model_preset, args.model_overrides, len(tokenizer), mel.num_mel_bins
    )

    # --- features and speakers --------------------------------------------------------------------------------
    codes, xvectors = models.speaker_embedders(args.speaker_embeddings, train, config.speaker_embedding_dim)
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
    train_rows = prepare_tts_features(train, step_name="tts_features_train", **common).with_format("numpy")
    eval_rows = prepare_tts_features(test, step_name="tts_features_eval", **common).with_format("numpy")
    heldout = [eval_rows[i] for i in range(min(args.eval_max_samples, len(eval_rows)))]
    report.summary.update(
        train_rows=len(train_rows), eval_rows=len(eval_rows), sampling_rate=mel.sampling_rate
    )
    speaker_table = codes or models.mean_speaker_vectors(train_rows)
    if model is None:
        model = models.init_from_scratch(SpeechT5ForTextToSpeech(config), *mel_statistics(train_rows, mel))
    model.config.use_cache = not training_args.gradient_checkpointing

    # --- evaluation before training, intelligibility proxy --------------------------------------------------------
    collator = TTSCollator(config.pad_token_id, mel.num_mel_bins, config.reduction_factor)
    vocoder = Vocoder(mel, args.vocoder, args.griffin_lim_iters)
    evaluate = functools.partial(
        evaluate_tts,
        collator=collator,
        vocoder=vocoder,
        threshold=args.eval_threshold,
        maxlenratio=args.eval_maxlenratio,
        seed=training_args.seed,
    )
    logger.info(
        "%d training / %d held-out utterances; %s", len(train_rows), len(eval_rows), report.steps[-1].details
    )
    recognizer, references = evaluation.intelligibility_proxy(
        train_rows, heldout, vocoder, steps=args.intelligibility_steps, seed=training_args.seed
    )
    logger.info("Held-out metrics of the untrained model (%d utterances)...", len(heldout))
    before = evaluate(model, heldout, recognizer=recognizer).metrics

    # --- trainer and training -------------------------------------------------------------------------------------
    trainer = TTSTrainer(  # the loss: tts_training.tts_loss
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=collator,
        callbacks=[evaluation.TTSEvalCallback(heldout[: args.num_eval_samples], evaluate, mel, output_dir)],
    )
    track_efficiency(trainer, flops="measured", unit="utterances")  # throughput, MFU, energy -> lineage
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -------------------------------------------------------------------------------------------------
    step, history = trainer.state.global_step, trainer.state.log_history  # reuse an eval at this very step
    last = [e["eval_loss"] for e in history if "eval_loss" in e and e.get("step") == step]
    eval_loss = last[-1] if last else trainer.evaluate()["eval_loss"]
    after = evaluate(trainer.model, heldout, recognizer=recognizer)
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
    samples = evaluation.tts_samples(shown, after, mel)

    def save_more(staging: Path) -> None:
        processor.save_pretrained(staging)
        TTSSettings.from_args(args, speaker_table).save(staging)
        title = f"held-out utterances after {trainer.state.global_step} steps"
        evaluation.write_tts_samples(staging / "samples", shown, after, mel, title=title)
        atomic_write_json(staging / "samples" / "samples.json", samples)

    lineage = stage.finish_trainer(
        trainer,
        config={"script": args, "training": training_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: SpeechT5 text-to-speech with hfrecipes",
            "description": evaluation.tts_card_description(
                metrics,
                samples,
                source=source,
                dataset=args.dataset_name,
                text_frontend=args.text_frontend,
                speaker_embeddings=args.speaker_embeddings,
                vocoder=vocoder.name,
            ),
            "usage": tts_usage(output_dir),
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
