"""Retrieval-augmented SFT: index a corpus (BM25, dense or hybrid), train a generator with TRL's `SFTTrainer` on
prompts that hold the top-k retrieved passages, then score held-out questions closed-book vs with retrieval:
exact match, abstention ("unknown") and hallucination rate (confidently wrong answers).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/rag.py \
        --config recipes/text/configs/rag_tiny.yaml [--key value ...]

Held-out questions (split column == heldout_value) have their answers in the corpus but never in training:
their questions are not trained on, and their passages are kept out of every training prompt. The generator is
a `model_preset` built here with a tokenizer trained on the data, or `model_name_or_path` (a previous stage or a
Hub model); the embedder is any sentence-transformers model (default: the packaged all-MiniLM-L6-v2, or
train_embedder.py's output). The index is saved in `index/` beside the model. Re-running resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, SFTConfig, SFTTrainer

from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import load_source
from hfrecipes.text.models import context_length, model_loading
from hfrecipes.text.posttraining import PlainLossSFTTrainer, get_chat_lm
from hfrecipes.text.rag import (
    check_prompt_length,
    check_top_k,
    column,
    evaluate_rag,
    evaluation_prompts,
    rag_training_rows,
    rag_usage,
    rows_text,
)
from hfrecipes.text.retrieval import (
    DEFAULT_EMBEDDER,
    RetrievalIndex,
    load_passages,
    relevant_passages,
    resolve_embedder_reference,
    retrieval_metrics,
    split_questions,
)
from hfrecipes.text.tokenization import load_or_train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class RagArguments:
    corpus_name: str = field(default="builtin:stdlib-qa?part=corpus", metadata={"help": "Documents."})
    questions_name: str = field(default="builtin:stdlib-qa?part=questions", metadata={"help": "Questions."})
    question_column: str = field(default="question", metadata={"help": "Question text."})
    answer_column: str = field(default="answer", metadata={"help": "Short exact answer."})
    evidence_column: str = field(default="evidence", metadata={"help": "Text the answer's passage holds."})
    kind_column: str = field(default="kind", metadata={"help": "Question kind, if any (counterfactuals)."})
    split_column: str = field(default="split", metadata={"help": "Marks held-out rows (evaluation only)."})
    heldout_value: str = field(default="heldout", metadata={"help": "split_column value of held-out rows."})
    chunk_max_words: int = field(default=40, metadata={"help": "Passage size for the `chunk` data step."})
    chunk_overlap_words: int = field(default=0, metadata={"help": "Overlap of windows of long paragraphs."})
    retriever: str = field(default="bm25", metadata={"help": "bm25, dense or hybrid."})
    embedder_name_or_path: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "For dense / hybrid."})
    top_k: int = field(default=2, metadata={"help": "Passages put into each prompt."})
    counterfactuals: int = field(default=2, metadata={"help": "Answer-swapped copies per question."})
    unknown_fraction: float = field(default=0.1, metadata={"help": "Rows without the evidence -> unknown."})
    closed_book_fraction: float = field(default=0.3, metadata={"help": "Rows without any context."})
    model_preset: str = field(default="tiny", metadata={"help": "Preset when model_name_or_path is unset."})
    model_overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "Preset fields set."})
    tokenizer_vocab_size: int = field(default=2048, metadata={"help": "Vocabulary of a new tokenizer."})
    recall_ks: list[int] = field(default_factory=lambda: [1, 2, 5], metadata={"help": "k of recall@k."})
    eval_max_samples: int = field(default=128, metadata={"help": "Held-out questions generated for EM."})
    eval_max_new_tokens: int = field(default=12, metadata={"help": "Tokens generated per answer."})
    fused_loss: bool = field(default=False, metadata={"help": "TRL's fused LM-head loss (GPU, big vocab)."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((RagArguments, SFTConfig, ModelConfig, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/rag", eval_strategy="no")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    args, training_args, model_args, card_args = parse_args()
    embedder = None if args.retriever == "bm25" else args.embedder_name_or_path
    stage = start_stage(
        "text/rag",
        args,
        training_args,
        model_args,
        card_args,
        inputs={
            "data": [args.corpus_name, args.questions_name],
            "model": model_args.model_name_or_path,
            "embedder": embedder and resolve_embedder_reference(embedder),  # the packaged default's folder
        },
    )
    loading = model_loading(model_args, training_args.trust_remote_code)  # before any work
    output_dir = Path(training_args.output_dir)

    # --- data: passages, index, questions -----------------------------------------------------------------
    passages, report = load_passages(
        args.corpus_name, max_words=args.chunk_max_words, overlap_words=args.chunk_overlap_words
    )
    check_top_k(args.top_k, passages)
    columns = [args.question_column, args.answer_column, args.evidence_column]
    train, heldout = split_questions(
        load_source(args.questions_name), columns, args.split_column, args.heldout_value, args.questions_name
    )
    index = RetrievalIndex.build(passages, args.retriever, embedder)
    texts = index.texts
    heldout_passages = set().union(*relevant_passages(texts, column(heldout, args.evidence_column)))
    heldout = heldout.select(range(min(args.eval_max_samples, len(heldout))))
    questions, answers, evidence = (column(heldout, c) for c in columns)
    retrieval = retrieval_metrics(index, questions, evidence, args.recall_ks)
    rows = rag_training_rows(
        column(train, args.question_column),
        column(train, args.answer_column),
        index,
        relevant_passages(texts, column(train, args.evidence_column)),
        k=args.top_k,
        exclude=heldout_passages,
        unknown_fraction=args.unknown_fraction,
        closed_book_fraction=args.closed_book_fraction,
        counterfactuals=args.counterfactuals,
        kinds=column(train, args.kind_column) if args.kind_column in train.column_names else None,
        seed=training_args.seed,
        report=report,
    )
    prompts = evaluation_prompts(index, questions, args.top_k)

    # --- tokenizer and model ------------------------------------------------------------------------------
    with training_args.main_process_first(desc="tokenizer"):
        tokenizer, tokenizer_source = load_or_train_tokenizer(
            model_name_or_path=model_args.model_name_or_path,
            trained_dir=output_dir / "tokenizer",
            texts=[*texts, *rows_text(rows)],
            vocab_size=args.tokenizer_vocab_size,
            trust_remote_code=loading.trust_remote_code,
            revision=loading.revision,
        )
    limit = context_length(model_args.model_name_or_path, args.model_preset, args.model_overrides)
    check_prompt_length(tokenizer, prompts["rag"], args.eval_max_new_tokens, limit)
    source = model_args.model_name_or_path
    built = get_chat_lm(source, args.model_preset, tokenizer, overrides=args.model_overrides, loading=loading)
    logger.warning(
        "Model %s: %.2f M parameters, %d rows", built.source, built.num_parameters / 1e6, len(rows)
    )

    # --- trainer and training -----------------------------------------------------------------------------
    trainer = (SFTTrainer if args.fused_loss else PlainLossSFTTrainer)(
        model=built.model,
        args=training_args,
        train_dataset=rows.select_columns(["prompt", "completion"]),
        processing_class=tokenizer,
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate: closed-book vs with retrieval on held-out questions ------------------------------------
    rag_metrics, samples = evaluate_rag(
        trainer.model, tokenizer, prompts, questions, answers, args.eval_max_new_tokens
    )
    metrics = {
        "parameters": built.num_parameters,
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "heldout_questions": len(answers),
        **rag_metrics,
        **retrieval,
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={"script": args, "training": training_args, "model": model_args, "card": card_args},
        more_inputs={"embedder": embedder},  # as given: the packaged default by its name
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: retrieval-augmented SFT with hfrecipes",
            "description": f"A generator ({built.source}) trained with TRL's SFTTrainer on prompts holding the top-"
            f"{args.top_k} {args.retriever} passages of `{args.corpus_name}`. Held-out exact match: closed-book "
            f"{metrics['closed_book_exact_match']:.3f}, with retrieval {metrics['rag_exact_match']:.3f}; "
            f"hallucination rate {metrics['closed_book_hallucination_rate']:.3f} -> "
            f"{metrics['rag_hallucination_rate']:.3f}. The retrieval index is in `index/`.",
            "usage": rag_usage(output_dir, args.top_k),
            "base_model": model_args.model_name_or_path,
            "datasets": [args.corpus_name, args.questions_name],
            "tags": ["rag", "retrieval", "sft", "trl"],
        },
        samples=samples,
        loss_title="RAG SFT loss",
        extra=dict(resumed_from=resumed_from, tokenizer=tokenizer_source, model_loading=loading.record()),
        save_more=lambda staging: index.save(staging / "index"),
    )
    if trainer.is_world_process_zero():
        print(
            f"RAG done: held-out {', '.join(f'{k} {v:.3f}' for k, v in rag_metrics.items())}; outputs in {output_dir}"
        )


if __name__ == "__main__":
    run_main(main)
