"""Copy-and-modify holds for the recipes with their own training step: `hfrecipes copy` brings the module that holds
the loss along, a change to the loss in the copy takes effect in a run of the copied script, and the installed
library is untouched by it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hfrecipes.cli.commands import copy_recipe

from .conftest import ROOT

LIBRARY = ROOT / "src" / "hfrecipes"

# recipe, the module beside it that holds the loss, the loss function, and a 2-step tiny run (paths relative to the
# copy's folder, which is the working directory of the run).
CASES = {
    "ppo": (
        "text/ppo.py",
        "ppo_training",
        "ppo_loss",
        [
            *("--config", "configs/ppo_tiny.yaml", "--model_name_or_path", "{policy}"),
            *("--reward_model_path", "{reward_model}", "--dataset_name"),
            "builtin:chat-mix?arithmetic_rows=60&safety_rows=20&digits=1&seed=11&ops=add,sub",
            *("--eval_fraction", "0.1", "--num_updates", "2", "--batch_size", "4", "--mini_batch_size", "2"),
            *("--ppo_epochs", "1", "--max_new_tokens", "6", "--save_steps", "0", "--eval_max_samples", "2"),
            *("--eval_max_new_tokens", "4"),
        ],
    ),
    "image": (
        "image/train_diffusion.py",
        "diffusion_training",
        "denoising_loss",
        [
            *(
                "--config",
                "configs/diffusion_digits_tiny.yaml",
                "--dataset_name",
                "builtin:digits?size=16&n=200",
            ),
            *("--max_steps", "2", "--per_device_train_batch_size", "8", "--logging_steps", "1"),
            *("--save_steps", "0", "--eval_before_training", "false", "--num_eval_prompts", "2"),
            *("--eval_samples_per_prompt", "1", "--num_inference_steps", "2"),
        ],
    ),
    "video": (
        "video/train_video_diffusion.py",
        "video_training",
        "denoising_loss",
        [
            *("--config", "configs/video_shapes_tiny.yaml", "--dataset_name"),
            "builtin:moving-shapes?n=120&size=16&frames=6&colors=red,green&shapes=square&background=black",
            *("--max_steps", "2", "--per_device_train_batch_size", "8", "--logging_steps", "1"),
            *("--save_steps", "0", "--eval_before_training", "false", "--num_eval_prompts", "2"),
            *("--eval_samples_per_prompt", "1", "--num_inference_steps", "2"),
        ],
    ),
    "tts": (
        "audio/train_tts.py",
        "tts_training",
        "tts_loss",
        [
            *("--config", "configs/tts_espeak_tiny.yaml", "--dataset_name"),
            "builtin:espeak?n=24&speakers=2&style=phrases&seed=0",
            *("--max_steps", "2", "--logging_steps", "1", "--eval_steps", "2", "--save_steps", "2"),
            *("--intelligibility_steps", "0", "--eval_max_samples", "2", "--num_eval_samples", "1"),
            *("--eval_maxlenratio", "2", "--griffin_lim_iters", "2", "--per_device_train_batch_size", "4"),
            *("--eval_fraction", "0.2", "--warmup_steps", "0"),
        ],
    ),
    "clip": (
        "multimodal/train_clip.py",
        "clip_training",
        "contrastive_loss",
        [
            *("--config", "configs/clip_shapes_tiny.yaml", "--dataset_name", "builtin:shapes?n=120&size=32"),
            *("--max_steps", "2", "--logging_steps", "1", "--eval_steps", "2", "--save_steps", "2"),
            *(
                "--per_device_train_batch_size",
                "16",
                "--per_device_eval_batch_size",
                "16",
                "--warmup_steps",
                "0",
            ),
        ],
    ),
}


def _library_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(LIBRARY.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run_copied(script: Path, args: list[str], module: str) -> None:
    """Run the copied script in this process as `python script ...` would: its folder first on sys.path and its
    modules imported from there (not the originals another test may have imported)."""
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    saved_module = sys.modules.pop(module, None)
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *args]
    try:
        spec = importlib.util.spec_from_file_location(f"copied_{script.stem}", script)
        recipe = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = recipe
        spec.loader.exec_module(recipe)
        recipe.main()
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv
        sys.modules.pop(module, None)
        if saved_module is not None:
            sys.modules[module] = saved_module


def logged_losses(output_dir: Path) -> list[float]:
    """Every training loss the run logged: log_history.json is the Trainer's log history, or the diffusion
    loop's {"train": [...], "eval": [...]}."""
    history = json.loads((output_dir / "log_history.json").read_text())
    if isinstance(history, dict):
        history = history["train"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_changed_loss_in_a_copy_takes_effect(tmp_path, case, request):
    recipe, module, loss, args = CASES[case]
    if case == "ppo":  # PPO starts from a chat policy and a reward model
        policy, reward_model = request.getfixturevalue("tiny_chat_models")
        args = [arg.format(policy=policy, reward_model=reward_model) for arg in args]
    before = _library_digest()
    copy = tmp_path / "mine"
    copied = copy_recipe(recipe, copy)
    assert copy / f"{module}.py" in copied, "the module with the loss must come along"
    source = (copy / f"{module}.py").read_text()
    assert f"def {loss}(" in source
    # The user's change: scale the loss by zero, in the copy only.
    (copy / f"{module}.py").write_text(
        source + f"\n\n_original_{loss} = {loss}\n\n\ndef {loss}(*args, **kwargs):\n"
        f"    return 0 * _original_{loss}(*args, **kwargs)\n"
    )
    output_dir = tmp_path / "out"
    args = [str(copy / arg) if arg.startswith("configs/") else arg for arg in args]
    _run_copied(copy / Path(recipe).name, [*args, "--output_dir", str(output_dir)], module)
    losses = logged_losses(output_dir)
    assert losses, "the run logged no training loss"
    assert all(value == 0.0 for value in losses), losses
    assert _library_digest() == before
