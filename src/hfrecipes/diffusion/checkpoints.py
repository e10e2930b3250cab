"""Checkpoints of the diffusion loop: EMA weights saved as safetensors (`make_ema`, `save_ema`, `load_ema`), the
complete checkpoints of an output directory (`complete_checkpoints`, `prune_checkpoints`) and the resume check
(`config_differences`)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from torch import nn

from hfrecipes.diffusion.args import DiffusionTrainingArguments

logger = logging.getLogger(__name__)


def make_ema(module: nn.Module, args: DiffusionTrainingArguments):
    """EMA weights of `module`'s parameters with the loop's decay and warm-up."""
    return EMAModel(
        module.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=args.ema_power,
    )


def save_ema(ema: Any, path: Path) -> None:
    """Write an EMA's shadow weights as safetensors (`path`.safetensors) and its counters as JSON (`path`.json)."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file(
        {str(i): t.detach().contiguous().cpu() for i, t in enumerate(shadow)},
        str(path.with_suffix(".safetensors")),
    )
    path.with_suffix(".json").write_text(json.dumps(state))


def load_ema(ema: Any, path: Path) -> None:
    """Restore an EMA written by `save_ema`, onto the device its weights are on."""
    tensors = load_file(str(path.with_suffix(".safetensors")))
    state = json.loads(path.with_suffix(".json").read_text())
    device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
    ema.load_state_dict({**state, "shadow_params": [tensors[str(i)].to(device) for i in range(len(tensors))]})


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


STATE_FILE = "training_state.json"


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint whose `training_state.json` says it finished, oldest first."""
    output_dir = Path(output_dir)
    found = []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.is_dir() and (m := _CHECKPOINT.match(path.name)):
                try:
                    ok = json.loads((path / STATE_FILE).read_text()).get("global_step") == int(m.group(1))
                except (OSError, ValueError):
                    ok = False
                if ok:
                    found.append((int(m.group(1)), path))
                else:
                    logger.warning("Ignoring incomplete checkpoint %s", path)
    return sorted(found)


def prune_checkpoints(output_dir: str | Path, limit: int | None) -> list[Path]:
    """Delete all but the newest `limit` complete checkpoints (none when `limit` is None); returns the removed paths."""
    if limit is None:
        return []
    removed = [path for _, path in complete_checkpoints(output_dir)[:-limit]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _public(value: Any) -> Any:
    """A config without its bookkeeping keys: diffusers' `_use_default_values` is a list built from a set, so its
    order changes from one process to the next (string hashing), and `_diffusers_version` is not the model."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    return value


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The keys whose values differ between a checkpoint's fingerprint and the current one (bookkeeping keys
    ignored)."""
    saved, current = (_public(json.loads(json.dumps(c, default=str))) for c in (saved, current))
    return [
        f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if saved.get(k) != current.get(k)
    ]
