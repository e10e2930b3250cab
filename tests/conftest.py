from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

# huggingface_hub and datasets read these when they are imported: set before the imports below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per test worker (pytest -n auto runs one worker per core); the subprocesses tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from accelerate.state import AcceleratorState, GradientState  # noqa: E402

from hfrecipes.data import load_source, row_text  # noqa: E402
from hfrecipes.text.evaluation import stop_token_ids  # noqa: E402
from hfrecipes.text.models import get_causal_lm, special_token_ids  # noqa: E402
from hfrecipes.text.tokenization import train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "tests" / "data" / "tinyshakespeare_excerpt.txt"  # see tests/data/README.md


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps its state (mixed precision, device) in process-wide singletons: a test that builds a bf16
    Accelerator would otherwise silently run every later test of the same worker under bf16 autocast."""
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def load_recipe(relative_path: str):
    """Import a recipe script as a module so tests call its main() in-process (imports paid once)."""
    path = ROOT / "recipes" / relative_path
    if str(path.parent) not in sys.path:  # as `python recipe.py` puts it: the modules beside a recipe import
        sys.path.insert(0, str(path.parent))
    name = "recipe_" + relative_path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_recipe(relative_path: str, *args: str, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    module = load_recipe(relative_path)
    argv = [str(ROOT / "recipes" / relative_path), *map(str, args)]
    old = sys.argv
    sys.argv = argv
    try:
        module.main()
    finally:
        sys.argv = old


# Small enough for seconds on 2 cores, big enough that the loss clearly falls.
TINY_PRETRAIN = [
    *("--config", str(ROOT / "recipes/text/configs/pretrain_tiny.yaml")),
    *("--max_documents", "60", "--vocab_size", "512", "--block_size", "64", "--validation_fraction", "0.1"),
    *("--per_device_train_batch_size", "16", "--max_steps", "60", "--warmup_steps", "5"),
    *("--eval_steps", "30", "--save_steps", "30", "--logging_steps", "5", "--sample_max_new_tokens", "8"),
]


@pytest.fixture(scope="session")
def tiny_pretrain_run(tmp_path_factory) -> Path:
    """One tiny pretraining run shared by the tests that only read its outputs."""
    output_dir = tmp_path_factory.mktemp("pretrain") / "out"
    run_recipe("text/pretrain.py", *TINY_PRETRAIN, "--output_dir", output_dir)
    return output_dir


def read_json(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def tiny_chat_models(tmp_path_factory) -> tuple[Path, Path]:
    """Untrained tiny models saved as directories (DPO, GRPO and PPO start from paths): a chat policy and a reward
    model of the `tiny` preset sharing a byte-BPE tokenizer trained on the built-in chat data (ChatML template).
    The random reward model scores every completion differently, so GRPO's groups have non-zero advantages."""
    rows = load_source("builtin:chat-mix?arithmetic_rows=300&safety_rows=100&digits=1&seed=0&ops=add,sub")
    tokenizer = train_tokenizer((row_text(r, ["messages"]) for r in rows), "byte-bpe", 512, 2)
    root, saved = tmp_path_factory.mktemp("start"), []
    for head, name in (("causal-lm", "policy"), ("reward", "reward_model")):
        torch.manual_seed(0)
        model = get_causal_lm(
            model_name_or_path=None,
            preset="tiny",
            vocab_size=len(tokenizer),
            special_ids=special_token_ids(tokenizer),
            head=head,
        ).model
        if head == "causal-lm":
            model.generation_config.eos_token_id = stop_token_ids(tokenizer)
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(root / name)  # TRL names the reward model's log columns after its directory
        tokenizer.save_pretrained(root / name)
        saved.append(root / name)
    return saved[0], saved[1]
