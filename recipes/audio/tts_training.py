"""How recipes/audio/train_tts.py trains, copied along by `hfrecipes copy audio/train_tts.py DIR`: the loss
(`tts_loss`, SpeechT5's L1 + stop-token BCE + guided attention), the Trainer that backpropagates and logs it
(`TTSTrainer`), and the recipe's arguments (`TTSArguments`). Its evaluation is in tts_evaluation.py; the
library keeps the plumbing: features, data preparation, the model, the metrics and the stage life cycle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Seq2SeqTrainer
from transformers.models.speecht5.modeling_speecht5 import SpeechT5GuidedMultiheadAttentionLoss

from hfrecipes.audio.frontend import TEXT_FRONTENDS
from hfrecipes.core.errors import RecipeInputError


def tts_loss(
    before_postnet: torch.Tensor,
    after_postnet: torch.Tensor,
    stop_logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor,
    cross_attentions: Sequence[torch.Tensor] | None,
    config: Any,
) -> torch.Tensor:
    """SpeechT5's training loss, as SpeechT5ForTextToSpeech computes it from `labels` (B, frames, mels; -100 =
    padding): L1 of the log-mels before and after the post-net, the stop-token BCE (positive weight 5, stop
    target at each utterance's last frame), and the guided-attention loss that keeps the first heads'
    cross-attention near the diagonal."""
    frames = labels != -100.0
    target = labels.masked_select(frames)
    l1 = torch.nn.functional.l1_loss(after_postnet.masked_select(frames), target)
    l1 = l1 + torch.nn.functional.l1_loss(before_postnet.masked_select(frames), target)
    valid = frames[:, :, 0]
    stops = torch.cat([~valid * 1.0, torch.ones(valid.size(0), 1, device=valid.device)], dim=1)[:, 1:]
    pos_weight = torch.tensor(5.0, device=stop_logits.device)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        stop_logits.masked_select(valid), stops.masked_select(valid), pos_weight=pos_weight
    )
    loss = l1 + bce
    if config.use_guided_attention_loss:
        heads, r = config.guided_attention_loss_num_heads, config.reduction_factor
        attention = torch.cat([layer[:, :heads] for layer in cross_attentions], dim=1)
        steps = valid[:, r - 1 :: r] if r > 1 else valid  # one decoder step per r frames
        loss = loss + SpeechT5GuidedMultiheadAttentionLoss(config)(attention, attention_mask == 1, steps)
    return loss


class TTSTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` for SpeechT5ForTextToSpeech whose training and evaluation loss is `tts_loss` (looked up
    at each call), computed from the post-net's outputs (log-mels before and after it, stop logits), which a
    forward hook reads during the wrapped model's forward pass."""

    # tts_loss is a per-batch mean: the Trainer divides it by the gradient accumulation steps, never scales it
    # by the world size (DDP averages the ranks' gradients).
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        postnet_outputs = []
        hook = unwrapped.speech_decoder_postnet.register_forward_hook(
            lambda module, args, output: postnet_outputs.append(output)
        )
        try:
            # With labels, SpeechT5 teacher-forces its decoder on them (shifted right), returns the
            # cross-attentions, and computes its own loss, unused here but among its outputs, where DDP looks for
            # the parameters a step uses (the stop-token layer would otherwise count as unused).
            outputs = model(**{k: v for k, v in inputs.items() if k != "stop_labels"})
        finally:
            hook.remove()
        before_postnet, after_postnet, stop_logits = postnet_outputs[-1]
        loss = tts_loss(
            before_postnet,
            after_postnet,
            stop_logits,
            inputs["labels"],
            inputs["attention_mask"],
            outputs.cross_attentions,
            unwrapped.config,
        )
        return (loss, outputs) if return_outputs else loss


@dataclass
class TTSArguments:
    """The recipe's own settings (YAML keys / --key value); training settings are Seq2SeqTrainingArguments."""

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
