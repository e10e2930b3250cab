"""Test-only fault hooks for the crash-resume tests (tests/faults.py). Python imports `sitecustomize` at start-up
from sys.path, so a recipe started with this directory on PYTHONPATH runs with them; without the variables
below set, this module does nothing.

HFRECIPES_FAULT_PROGRESS=<file>
    Append "<optimizer steps taken by this process> <time.time()>" to <file> after every optimizer step (a global
    torch optimizer post-hook, so Trainer and custom loops alike): the fault helper reads it to kill the process
    at a random moment measured in training steps, whatever the machine's speed.

HFRECIPES_FAULT_KILL_SAVE_STEP=<N> [HFRECIPES_FAULT_KILL_MODE=before|torn]
    SIGKILL this process inside the save of checkpoint N, after the weights (and optimizer) are written and
    just before the file that marks the checkpoint complete lands: `checkpoint-N/trainer_state.json` (Trainer,
    written with open()) or `.checkpoint-N.tmp/training_state.json` (hfrecipes.diffusion.loop, renamed in with
    os.replace). Mode `torn` first writes half of trainer_state.json (a torn write) and then dies.

HFRECIPES_FAULT_KILL_AFTER_WRITE=<path ending, e.g. tokenizer/tokenizer_config.json>
    SIGKILL this process as soon as the first file (written with open()) whose path ends so is closed: a save of
    several files interrupted after that one.

Each kill first writes a line "FAULT-HOOK: SIGKILL <where>" to stderr.
"""

from __future__ import annotations

import builtins
import os
import re
import signal
import sys
import time

_STATE_FILES = ("trainer_state.json", "training_state.json")
_CHECKPOINT_DIR = re.compile(r"^\.?checkpoint-(\d+)(\.tmp)?$")


def _die(where: str) -> None:
    sys.stderr.write(f"FAULT-HOOK: SIGKILL {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_save_kill(step: int, kill_mode: str) -> None:
    def marks_checkpoint_complete(path) -> bool:
        try:
            path = os.fspath(path)
        except TypeError:
            return False
        if not isinstance(path, str) or os.path.basename(path) not in _STATE_FILES:
            return False
        match = _CHECKPOINT_DIR.match(os.path.basename(os.path.dirname(os.path.abspath(path))))
        return bool(match) and int(match.group(1)) == step

    real_open, real_replace = builtins.open, os.replace

    class _TornFile:
        """Writes half of what it is given, then the process dies: a torn trainer_state.json."""

        def __init__(self, handle, path):
            self._handle, self._path = handle, path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

        def write(self, text):
            self._handle.write(text[: len(text) // 2])
            self._handle.flush()
            os.fsync(self._handle.fileno())
            _die(f"after writing half of {self._path}")

        def __getattr__(self, name):
            return getattr(self._handle, name)

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(mode, str) and ("w" in mode or "x" in mode) and marks_checkpoint_complete(file):
            if kill_mode == "torn":
                return _TornFile(real_open(file, mode, *args, **kwargs), file)
            _die(f"before writing {file}")
        return real_open(file, mode, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if marks_checkpoint_complete(dst):
            _die(f"before renaming {dst} into place")
        return real_replace(src, dst, *args, **kwargs)

    builtins.open = open_
    os.replace = replace


def _install_kill_after_write(ending: str) -> None:
    real_open = builtins.open

    class _DieOnClose:
        def __init__(self, handle, path):
            self._handle, self._path = handle, path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def close(self):
            self._handle.close()
            _die(f"after writing {self._path}")

        def __getattr__(self, name):
            return getattr(self._handle, name)

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(mode, str) and "w" in mode and isinstance(file, str | os.PathLike):
            path = os.path.abspath(os.fspath(file))
            if isinstance(path, str) and path.replace(os.sep, "/").endswith("/" + ending):
                return _DieOnClose(handle, path)
        return handle

    builtins.open = open_


def _install_progress(path: str) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = open(path, "a", buffering=1)  # noqa: SIM115 - kept open for the life of the process
    count = 0

    def after_step(optimizer, args, kwargs) -> None:
        nonlocal count
        count += 1
        handle.write(f"{count} {time.time():.6f}\n")

    register_optimizer_step_post_hook(after_step)


if os.environ.get("HFRECIPES_FAULT_KILL_SAVE_STEP"):
    _install_save_kill(
        int(os.environ["HFRECIPES_FAULT_KILL_SAVE_STEP"]),
        os.environ.get("HFRECIPES_FAULT_KILL_MODE", "before"),
    )
if os.environ.get("HFRECIPES_FAULT_PROGRESS"):
    _install_progress(os.environ["HFRECIPES_FAULT_PROGRESS"])
if os.environ.get("HFRECIPES_FAULT_KILL_AFTER_WRITE"):
    _install_kill_after_write(os.environ["HFRECIPES_FAULT_KILL_AFTER_WRITE"])
