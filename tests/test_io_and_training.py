import json
from types import SimpleNamespace

import pytest
import torch

from hfrecipes.core import training
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import COMPLETION_MARKER, staged_output
from hfrecipes.core.training import (
    check_distributed_state,
    check_report_to,
    last_complete_checkpoint,
    ranks_in_sync,
)


def test_staged_output_publishes_everything_with_the_marker(tmp_path):
    out = tmp_path / "stage"
    with staged_output(out) as staging:
        (staging / "model.bin").write_text("weights")
        (staging / COMPLETION_MARKER).write_text("{}")
        assert not out.exists()  # nothing visible until the stage finishes
    assert (out / "model.bin").read_text() == "weights" and (out / COMPLETION_MARKER).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_failed_stage_leaves_no_marker_and_keeps_checkpoints(tmp_path):
    out = tmp_path / "stage"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / COMPLETION_MARKER).write_text("{}")  # from an earlier, finished run
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "model.bin").write_text("half")
        raise RuntimeError("crash while saving")
    assert (out / "checkpoint-10").is_dir() and not (out / "model.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def _checkpoint(root, step, complete=True):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text("x")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_last_complete_checkpoint_skips_partial_saves(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    _checkpoint(tmp_path, 10)
    good = _checkpoint(tmp_path, 20)
    _checkpoint(tmp_path, 30, complete=False)  # killed mid-save
    (tmp_path / "checkpoint-40").mkdir()
    (tmp_path / "checkpoint-40" / "trainer_state.json").write_text('{"global_st')  # truncated write
    assert last_complete_checkpoint(tmp_path) == str(good)


def test_multi_process_launch_without_distributed_state_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeInputError, match="unsynchronised copies.*cpu_ddp.yaml"):
        check_distributed_state(SimpleNamespace(world_size=1))
    check_distributed_state(SimpleNamespace(world_size=2))
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_distributed_state(SimpleNamespace(world_size=1))


def test_ranks_in_sync_single_process():
    assert ranks_in_sync(torch.nn.Linear(2, 2)) == {"world_size": 1, "ranks_in_sync": True}


def test_a_report_to_backend_that_is_not_installed_names_its_extra(monkeypatch):
    monkeypatch.setattr(training, "get_available_reporting_integrations", lambda: ["codecarbon"])
    with pytest.raises(
        RecipeInputError,
        match=r"report_to: tensorboard is not installed: pip install 'hfrecipes\[tracking\]'",
    ):
        check_report_to(["tensorboard"])
    check_report_to("none")
    check_report_to(["none"])
