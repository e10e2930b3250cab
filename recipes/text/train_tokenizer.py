"""Train a tokenizer (byte-level BPE or character-level) on any source with the `tokenizers` library.

    python recipes/text/train_tokenizer.py --config recipes/text/configs/tokenizer_tiny.yaml [--key value ...]

Saves a `PreTrainedTokenizerFast` (BOS/EOS/PAD, ChatML chat template with `{% generation %}` markers for
assistant-only SFT loss) plus lineage, data report, fertility metrics and a card. Next stage:
`pretrain.py --tokenizer_name_or_path <output_dir>`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfrecipes.core.args import DataArguments, PublishArguments, TokenizerArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.stages import start_stage
from hfrecipes.data import prepare_text_splits
from hfrecipes.text.tokenization import fertility, train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TokenizerScriptArguments:
    output_dir: str = field(default="runs/tokenizer", metadata={"help": "Where the tokenizer is written."})
    seed: int = field(default=42, metadata={"help": "Seed of the train/validation split."})
    max_heldout_documents: int = field(
        default=500, metadata={"help": "Held-out documents used to measure fertility."}
    )


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((DataArguments, TokenizerArguments, TokenizerScriptArguments, PublishArguments))
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args -------------------------------------------------------------------------------------------
    data_args, tok_args, script_args, publish_args = parse_args()
    stage = start_stage(
        "text/train_tokenizer",
        data_args,
        tok_args,
        script_args,
        publish_args,
        inputs={"data": data_args.dataset_name},
    )
    if publish_args.hub_model_id and stage.push is None:  # this field alone used to mean "push"
        logger.warning("hub_model_id is set without push_to_hub: nothing is pushed (add push_to_hub: true).")

    # --- data ---------------------------------------------------------------------------------------------
    train_text, heldout_text, report = prepare_text_splits(data_args, seed=script_args.seed)

    # --- train --------------------------------------------------------------------------------------------
    started = time.perf_counter()
    tokenizer = train_tokenizer(
        train_text["text"], tok_args.tokenizer_type, tok_args.vocab_size, tok_args.min_frequency
    )
    seconds = time.perf_counter() - started

    # --- evaluate -----------------------------------------------------------------------------------------
    heldout = heldout_text[: script_args.max_heldout_documents]["text"]
    metrics = {
        "vocab_size": len(tokenizer),
        "train_seconds": seconds,
        **fertility(tokenizer, heldout),
        "heldout_roundtrip_exact": all(
            tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"]) == t for t in heldout
        ),
    }
    logger.warning(
        "Tokenizer: %d tokens, %.3f tokens/word, %.3f tokens/char on held-out text (%.1f s)",
        len(tokenizer),
        metrics["tokens_per_word"],
        metrics["tokens_per_char"],
        seconds,
    )

    # --- save (atomically), card, push --------------------------------------------------------------------
    with stage.staging() as staging:
        stage.finish(
            staging,
            tokenizer=tokenizer,
            config={"data": data_args, "tokenizer": tok_args, "script": script_args, "publish": publish_args},
            report=report,
            metrics=metrics,
            card={
                "title": f"{Path(script_args.output_dir).name}: a {tok_args.tokenizer_type} tokenizer",
                "description": f"A {len(tokenizer)}-token {tok_args.tokenizer_type} tokenizer trained on "
                f"`{data_args.dataset_name}`, with a ChatML chat template whose assistant turns are marked for "
                "assistant-only loss.",
                "usage": "from transformers import AutoTokenizer\n\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{script_args.output_dir}")\n'
                'print(tokenizer("Hello world").input_ids)',
                "datasets": [data_args.dataset_name],
                "pipeline_tag": None,
            },
        )
    print(
        f"Tokenizer with {len(tokenizer)} tokens in {script_args.output_dir}: {metrics['tokens_per_char']:.3f} tokens/char, "
        f"{metrics['tokens_per_word']:.3f} tokens/word on held-out text"
    )


if __name__ == "__main__":
    run_main(main)
