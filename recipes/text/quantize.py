"""Post-training int8 quantisation of a causal-LM stage for CPU deployment (torchao, or torch's built-ins), with
size on disk, generation tokens/s and held-out nats per character before and after.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/quantize.py \
        --config recipes/text/configs/quantize_tiny.yaml [--key value ...]

`model_name_or_path` is a previous stage's output directory (pretrain.py, sft.py with a merged model,
distill.py). The output is safetensors only: with `backend: torchao` it holds int8 weights and loads with
`AutoModelForCausalLM.from_pretrained`; with `backend: torch` it keeps float weights and
`hfrecipes.text.quantization.load_quantized(dir)` quantises at load (see src/hfrecipes/text/quantization.py for why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForCausalLM
from trl import ModelConfig

from hfrecipes.core.args import DataArguments, PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.stages import start_stage
from hfrecipes.data import prepare_text_splits
from hfrecipes.text.evaluation import language_model_loss
from hfrecipes.text.models import model_loading
from hfrecipes.text.quantization import (
    check_quantizable,
    check_quantize_options,
    generation_speed,
    load_quantized,
    quantize_model,
    save_quantized,
    weights_bytes,
)
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class QuantizeArguments:
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    backend: str = field(default="torchao", metadata={"help": "torchao (int8 on disk) or torch (built-ins)."})
    method: str = field(
        default="int8_dynamic", metadata={"help": "int8_dynamic or int8_weight_only (torchao)."}
    )
    output_dir: str = field(
        default="runs/quantize", metadata={"help": "Where the quantised model is written."}
    )
    eval_block_size: int = field(default=128, metadata={"help": "Window of the held-out loss."})
    eval_max_documents: int = field(default=200, metadata={"help": "Held-out documents measured."})
    speed_prompts: int = field(
        default=4, metadata={"help": "Held-out document openings decoded for tokens/s."}
    )
    speed_prompt_chars: int = field(default=64, metadata={"help": "Characters of each speed prompt."})
    speed_max_new_tokens: int = field(default=64, metadata={"help": "Tokens generated per speed prompt."})
    speed_repeats: int = field(default=3, metadata={"help": "Timed rounds (median), after one warm-up."})
    seed: int = field(default=42, metadata={"help": "Seed (the held-out split when it is random)."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    # ModelConfig's model_name_or_path is the float causal-LM stage to quantise.
    parser = RecipeParser((QuantizeArguments, ModelConfig, DataArguments, PublishArguments))
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args -----------------------------------------------------------------------------------------------
    args, model_args, data_args, publish_args = parse_args()
    if not model_args.model_name_or_path:
        raise RecipeInputError("Set model_name_or_path: the output directory of the stage to quantise.")
    check_quantize_options(args.backend, args.method)
    stage = start_stage(
        "text/quantize",
        args,
        model_args,
        data_args,
        publish_args,
        inputs={"model": model_args.model_name_or_path, "data": data_args.dataset_name},
    )
    source = model_args.model_name_or_path
    check_quantizable(source, args.backend, args.method)  # before any weights are read
    loading = model_loading(model_args, args.trust_remote_code)
    float32 = loading.float32_kwargs()

    # --- held-out data --------------------------------------------------------------------------------------
    _, heldout, report = prepare_text_splits(data_args, seed=args.seed)
    texts = list(heldout["text"][: args.eval_max_documents])
    prompts = [t[: args.speed_prompt_chars] for t in texts if t.strip()][: args.speed_prompts]

    # --- models: float and quantised ------------------------------------------------------------------------
    tokenizer = load_tokenizer(source, loading.trust_remote_code, loading.revision)
    original = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, **float32).eval()
    quantized = quantize_model(source, args.backend, args.method, loading)

    output_dir = Path(args.output_dir)
    with stage.staging() as staging:
        # --- save, then evaluate what was saved (the reloaded model is what deployment runs) -------------------
        recipe = save_quantized(quantized, staging, backend=args.backend, method=args.method, source=source)
        tokenizer.save_pretrained(staging)
        reloaded = load_quantized(staging)
        before = language_model_loss(original, tokenizer, texts, block_size=args.eval_block_size)
        after = language_model_loss(reloaded, tokenizer, texts, block_size=args.eval_block_size)
        speed = generation_speed(
            {"float": original, "int8": reloaded},
            tokenizer,
            prompts,
            args.speed_max_new_tokens,
            args.speed_repeats,
        )
        size_before, size_after = weights_bytes(source), weights_bytes(staging)
        metrics = {
            "parameters": original.num_parameters(),
            "quantized_layers": recipe["quantized_layers"],
            "size_bytes_before": size_before,
            "size_bytes": size_after,
            "size_ratio": size_after / size_before,
            "tokens_per_second_before": speed["float"],
            "tokens_per_second": speed["int8"],
            "speedup": speed["int8"] / speed["float"],
            "heldout_nats_per_char_before": before["nats_per_char"],
            "heldout_nats_per_char": after["nats_per_char"],
            "heldout_nats_per_char_delta": after["nats_per_char"] - before["nats_per_char"],
        }
        table = "\n".join(
            [
                "| model | weights on disk | tokens/s (greedy, batch 1, CPU) | held-out nats/char |",
                "|---|---|---|---|",
                f"| float32 | {size_before / 1e6:.2f} MB | {speed['float']:.1f} | {before['nats_per_char']:.4f} |",
                f"| int8 ({args.backend}, {args.method}) | {size_after / 1e6:.2f} MB | {speed['int8']:.1f} | "
                f"{after['nats_per_char']:.4f} |",
            ]
        )

        # --- lineage, model card, push ---------------------------------------------------------------------------
        load = (
            f'model = AutoModelForCausalLM.from_pretrained("{output_dir}")  # int8 weights; needs torchao'
            if args.backend == "torchao"
            else f'model = load_quantized("{output_dir}")  # float weights on disk, int8 at load'
        )
        stage.finish(
            staging,
            config={"script": args, "model": model_args, "data": data_args, "publish": publish_args},
            report=report.to_dict(),
            metrics=metrics,
            extra={"quantization": recipe, "model_loading": loading.record()},
            card={
                "title": f"{output_dir.name}: int8 quantisation of {Path(source).name}",
                "description": f"Post-training int8 quantisation ({args.backend}, {args.method}) of "
                f"`{source}` for CPU inference; {recipe['quantized_layers']} linear layers "
                f"quantised, embeddings and LM head kept in float.\n\n{table}",
                "usage": "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                "from hfrecipes.text.quantization import load_quantized\n\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{output_dir}")\n{load}',
                "tags": ["quantized", "int8", args.backend],
                "base_model": source,
                "datasets": [data_args.dataset_name],
            },
        )
    print(f"\n{table}\n\nOutputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
