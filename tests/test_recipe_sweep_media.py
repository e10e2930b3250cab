"""The image, video, audio and multimodal recipes of the sweep in `recipe_sweep.py`: trained from an empty
directory with planted tokens (none of them reads another stage in its tiny config)."""

from __future__ import annotations

import pytest

from .recipe_sweep import CASES, check_trains_and_keeps_tokens_out

MEDIA = [case for case in CASES if not case.recipe.startswith("text/")]


@pytest.fixture(scope="module")
def stand_ins():
    return {}  # no media recipe reads another stage in its tiny config


@pytest.mark.parametrize("case", MEDIA, ids=lambda c: c.recipe)
def test_trains_from_an_empty_directory_and_keeps_planted_tokens_out(
    case, tmp_path, monkeypatch, capsys, stand_ins
):
    check_trains_and_keeps_tokens_out(case, tmp_path, monkeypatch, capsys, stand_ins)
