"""Contrastive training of a sentence-embedding model on (question, passage) pairs with sentence-transformers'
trainer (in-batch negatives, `MultipleNegativesRankingLoss`), with retrieval recall@k on held-out questions
measured before and after, against random retrieval and BM25.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/train_embedder.py \
        --config recipes/text/configs/embedder_tiny.yaml [--key value ...]

Pairs come from a questions source with an `evidence` column (text that the answer-bearing passage contains)
over a corpus chunked into passages; held-out questions (split column == heldout_value) are never trained on.
The output is a sentence-transformers folder (`SentenceTransformer(output_dir)`) with the dense index of the
corpus saved beside it in `index/` (`RetrievalIndex.load(output_dir / "index")`). Re-running resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import load_source
from hfrecipes.text.retrieval import (
    DEFAULT_EMBEDDER,
    RetrievalIndex,
    check_lengths,
    embedder_hub_id,
    load_embedder,
    load_passages,
    relevant_passages,
    resolve_embedder_reference,
    retrieval_metrics,
    split_questions,
)

logger = logging.getLogger(__name__)


@dataclass
class EmbedderArguments:
    corpus_name: str = field(
        default="builtin:stdlib-qa?part=corpus", metadata={"help": "Documents to chunk and index."}
    )
    questions_name: str = field(
        default="builtin:stdlib-qa?part=questions", metadata={"help": "Questions with an evidence column."}
    )
    question_column: str = field(default="question", metadata={"help": "Query text."})
    evidence_column: str = field(default="evidence", metadata={"help": "Text the relevant passage contains."})
    split_column: str = field(
        default="split", metadata={"help": "Rows equal to heldout_value are eval only."}
    )
    heldout_value: str = field(
        default="heldout", metadata={"help": "Value of split_column for held-out rows."}
    )
    chunk_max_words: int = field(default=40, metadata={"help": "Passage size for the `chunk` data step."})
    chunk_overlap_words: int = field(default=0, metadata={"help": "Overlap of windows of long paragraphs."})
    embedder_name_or_path: str = field(
        default=DEFAULT_EMBEDDER, metadata={"help": "sentence-transformers model; default: packaged MiniLM."}
    )
    max_seq_length: int | None = field(default=None, metadata={"help": "Override the embedder's limit."})
    index_kind: str = field(
        default="dense", metadata={"help": "Index saved beside the model: dense or hybrid."}
    )
    recall_ks: list[int] = field(default_factory=lambda: [1, 5, 10], metadata={"help": "k of recall@k."})
    max_train_pairs: int | None = field(default=None, metadata={"help": "Cap on training pairs."})
    eval_max_queries: int | None = field(default=None, metadata={"help": "Cap on held-out queries."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((EmbedderArguments, SentenceTransformerTrainingArguments, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/embedder", batch_sampler="no_duplicates")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, training_args, card_args = parse_args()
    stage = start_stage(
        "text/train_embedder",
        script_args,
        training_args,
        card_args,
        inputs={
            "data": [script_args.corpus_name, script_args.questions_name],
            # the packaged default: its folder (lineage names it as the Hub model it is, see finish below)
            "model": resolve_embedder_reference(script_args.embedder_name_or_path),
        },
    )
    if script_args.index_kind not in ("dense", "hybrid"):
        raise RecipeInputError(f"index_kind must be dense or hybrid, got {script_args.index_kind!r}.")
    output_dir = Path(training_args.output_dir)

    # --- data: passages, training pairs, held-out queries ------------------------------------------------
    passages, report = load_passages(
        script_args.corpus_name,
        max_words=script_args.chunk_max_words,
        overlap_words=script_args.chunk_overlap_words,
    )
    train, heldout = split_questions(
        load_source(script_args.questions_name),
        [script_args.question_column, script_args.evidence_column],
        script_args.split_column,
        script_args.heldout_value,
        script_args.questions_name,
    )
    texts = list(passages["text"])
    # A passage that answers a held-out question is never a training positive: held-out facts stay unseen.
    unseen = set().union(*relevant_passages(texts, heldout[script_args.evidence_column]))
    if script_args.eval_max_queries:
        heldout = heldout.select(range(min(script_args.eval_max_queries, len(heldout))))
    relevant = relevant_passages(texts, train[script_args.evidence_column])
    pairs = [
        (q, texts[min(r)])
        for q, r in zip(train[script_args.question_column], relevant, strict=True)
        if r and not r & unseen
    ]
    pairs = pairs[: script_args.max_train_pairs] if script_args.max_train_pairs else pairs
    if not pairs:
        raise RecipeInputError(
            "No training question's evidence occurs in any passage: check evidence_column."
        )
    report.add("pairs", rows_in=len(train), rows_out=len(pairs), details={"heldout_queries": len(heldout)})
    pair_rows = datasets.Dataset.from_dict(
        {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
    )
    queries, evidence = heldout[script_args.question_column], heldout[script_args.evidence_column]

    # --- model and recall before training -----------------------------------------------------------------
    model = load_embedder(script_args.embedder_name_or_path)
    if script_args.max_seq_length:
        model.max_seq_length = script_args.max_seq_length
    check_lengths(model, texts, "passage")
    check_lengths(model, [q for q, _ in pairs] + list(queries), "query")
    ks = script_args.recall_ks
    bm25 = retrieval_metrics(RetrievalIndex.build(passages, "bm25"), queries, evidence, ks, prefix="bm25_")
    before = retrieval_metrics(
        RetrievalIndex.build(passages, script_args.index_kind, model), queries, evidence, ks
    )

    # --- trainer and training -----------------------------------------------------------------------------
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=pair_rows, loss=MultipleNegativesRankingLoss(model)
    )
    track_efficiency(trainer, flops="measured", unit="pairs")  # -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    index = RetrievalIndex.build(passages, script_args.index_kind, model)
    after = retrieval_metrics(index, queries, evidence, ks)
    recalls = [k for k in after if not k.startswith("random_")]
    metrics = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "train_pairs": len(pairs),
        "heldout_queries": len(queries),
        "passages": len(passages),
        **{f"{k}_before": before[k] for k in recalls},
        **{k: after[k] for k in recalls},
        **{k: v for k, v in after.items() if k.startswith("random_")},
        **{k: v for k, v in bm25.items() if "random" not in k},
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    stage.finish_trainer(
        trainer,
        tokenizer=model.tokenizer,
        config={"script": script_args, "training": training_args, "card": card_args},
        # the packaged default as the Hub model it is, so the card's base_model and license follow it
        more_inputs={"model": embedder_hub_id(script_args.embedder_name_or_path)},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: a sentence embedder trained with hfrecipes",
            "description": f"`{script_args.embedder_name_or_path}` fine-tuned contrastively (in-batch negatives) on "
            f"{len(pairs)} question-passage pairs from `{script_args.questions_name}`; held-out recall@{ks[0]} "
            f"{before[recalls[0]]:.3f} -> {after[recalls[0]]:.3f} (random {after['random_' + recalls[0]]:.3f}). "
            "The dense index of the corpus is in `index/`.",
            "usage": f'from sentence_transformers import SentenceTransformer\n\nmodel = SentenceTransformer("{output_dir}")\n'
            f'print(model.encode(["Which module provides the function `bisect_left`?"]).shape)\n\n'
            f'from hfrecipes.text.retrieval import RetrievalIndex\n\nindex = RetrievalIndex.load("{output_dir}/index", model)\n'
            'print(index.search(["How many parameters does `textwrap.wrap` take?"], k=3))',
            "base_model": embedder_hub_id(script_args.embedder_name_or_path),
            "datasets": [script_args.corpus_name, script_args.questions_name],
            "tags": ["sentence-transformers", "retrieval"],
            "pipeline_tag": "sentence-similarity",
            "library_name": "sentence-transformers",
        },
        loss_title="contrastive loss",
        extra={"resumed_from": resumed_from},
        save_more=lambda staging: index.save(staging / "index", embedder_reference=".."),
    )
    if trainer.is_world_process_zero():
        summary = ", ".join(
            f"{k} {before[k]:.3f} -> {after[k]:.3f} (random {after['random_' + k]:.3f})" for k in recalls
        )
        print(f"Embedder done: held-out {summary}; outputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
