"""Intervals and the expectation judge (hfrecipes.core.stats): known values, determinism and the rules."""

from __future__ import annotations

import numpy as np
import pytest

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.stats import (
    Expectation,
    Interval,
    bootstrap_interval,
    difference_is_real,
    paired_difference_interval,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),
        (50, 100, 0.4038, 0.5962),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_known_values(successes, n, low, high):
    interval = wilson_interval(successes, n)
    assert interval.value == pytest.approx(successes / n)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_confidence_and_bad_input():
    assert wilson_interval(8, 10, confidence=0.99).low < wilson_interval(8, 10).low
    assert wilson_interval(4.5, 9).value == 0.5  # a tie counted as half a success
    for bad in [(1, 0), (11, 10), (-1, 10)]:
        with pytest.raises(RecipeInputError):
            wilson_interval(*bad)
    with pytest.raises(RecipeInputError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


def test_bootstrap_interval_is_seeded_and_sized_like_the_standard_error():
    values = np.arange(100, dtype=float)
    interval = bootstrap_interval(values, seed=3)
    assert interval == bootstrap_interval(values, seed=3)
    assert interval.value == pytest.approx(49.5)
    # standard error 28.87 / 10 = 2.89: a 95% interval about 2 * 1.96 * 2.89 = 11.3 wide
    assert 9.5 < interval.high - interval.low < 13.0
    assert interval.contains(49.5)
    assert bootstrap_interval([2.0] * 20) == Interval(2.0, 2.0, 2.0)
    median = bootstrap_interval([1.0, 2.0, 3.0, 100.0], statistic=np.median, resamples=500)
    assert median.value == 2.5
    with pytest.raises(RecipeInputError, match="empty"):
        bootstrap_interval([])


def test_paired_difference_interval_pairs_items():
    rng = np.random.default_rng(0)
    before = rng.normal(0.0, 5.0, size=200)  # items vary a lot ...
    after = before - 0.5 + rng.normal(0.0, 0.1, size=200)  # ... but every item drops by 0.5
    difference = paired_difference_interval(before, after)
    assert difference.value == pytest.approx(-0.5, abs=0.02)
    assert difference.high < 0 and difference_is_real(difference)
    assert paired_difference_interval([1.0, 2.0], [1.0, 2.0]) == Interval(0.0, 0.0, 0.0)
    assert not difference_is_real(Interval(0.1, -0.2, 0.3))
    assert difference_is_real((0.2, 0.1, 0.3)) and difference_is_real((-0.2, -0.3, -0.1))
    with pytest.raises(RecipeInputError, match="pair up"):
        paired_difference_interval([1.0], [1.0, 2.0])


def test_expectation_rules():
    down = Expectation("bias_score", "down")
    verdict = down.judge(
        Interval(0.1, 0.0, 0.2), before=Interval(0.9, 0.8, 1.0), difference=(-0.8, -0.9, -0.6)
    )
    assert verdict.passed and verdict.mark == "✓" and verdict.line().startswith("✓ bias_score down")
    assert not down.judge(
        0.4, before=0.5, difference=(-0.1, -0.3, 0.1)
    ).passed  # within noise: not a real drop
    assert down.judge(0.4, before=0.5).passed  # bare numbers compare directly
    assert not down.judge(Interval(0.4, 0.3, 0.5), before=Interval(0.5, 0.45, 0.55)).passed  # overlapping
    assert Expectation("accuracy", "up").judge(0.9, before=0.5, difference=(0.4, 0.2, 0.6)).passed

    not_down = Expectation("accuracy", "not_down")
    assert not_down.judge(0.48, before=0.5, difference=(-0.02, -0.1, 0.06)).passed  # noise is no regression
    failed = not_down.judge(0.3, before=0.5, difference=(-0.2, -0.3, -0.1))
    assert not failed.passed and failed.mark == "✗"
    assert not Expectation("refusal_gap", "not_up").judge(0.3, before=0.1, difference=(0.2, 0.1, 0.3)).passed

    at_least = Expectation("accuracy", "at_least", threshold=0.8)
    assert at_least.judge(Interval(0.7, 0.6, 0.85)).passed  # the interval reaches 0.8
    assert not at_least.judge(Interval(0.7, 0.6, 0.75)).passed
    assert not Expectation("accuracy", "at_least", 0.8, strict=True).judge(Interval(0.9, 0.75, 0.95)).passed
    assert Expectation("bias_score", "at_most", threshold=0.2).judge(0.1).passed
    assert Expectation("accuracy", "at_least", 0.8).judge(0.8).to_dict()["mark"] == "✓"


def test_expectation_refuses_bad_declarations():
    with pytest.raises(RecipeInputError, match="direction"):
        Expectation("x", "sideways")
    with pytest.raises(RecipeInputError, match="threshold"):
        Expectation("x", "at_least")
    with pytest.raises(RecipeInputError, match="no threshold"):
        Expectation("x", "up", threshold=1.0)
    with pytest.raises(RecipeInputError, match="before"):
        Expectation("x", "up").judge(1.0)
