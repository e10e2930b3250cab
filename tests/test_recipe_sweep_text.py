"""The text recipes of the sweep in `recipe_sweep.py`: before their inputs exist, then trained with planted tokens."""

from __future__ import annotations

import pytest

from .recipe_sweep import CASES, check_stops_before_its_inputs_exist, check_trains_and_keeps_tokens_out

TEXT = [case for case in CASES if case.recipe.startswith("text/")]


@pytest.fixture(scope="module")
def stand_ins(tiny_chat_models, tiny_pretrain_run):
    policy, reward_model = tiny_chat_models
    return {"policy": policy, "reward_model": reward_model, "pretrained": tiny_pretrain_run}


@pytest.mark.parametrize("case", [c for c in TEXT if c.needs], ids=lambda c: c.recipe)
def test_stops_with_one_line_naming_the_missing_stage(case, tmp_path, monkeypatch, capsys):
    check_stops_before_its_inputs_exist(case, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("case", TEXT, ids=lambda c: c.recipe)
def test_trains_from_an_empty_directory_and_keeps_planted_tokens_out(
    case, tmp_path, monkeypatch, capsys, stand_ins
):
    check_trains_and_keeps_tokens_out(case, tmp_path, monkeypatch, capsys, stand_ins)
