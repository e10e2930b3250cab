"""95% intervals and the judge of a stage's expectation: is the measured value what the stage exists for?

- `wilson_interval(successes, n)`: the Wilson score interval of a proportion (accuracy, refusal rate, the share
  of pairs where a model prefers the stereotype). Unlike the normal approximation it stays inside [0, 1] and
  behaves at 0/n and n/n.
- `bootstrap_interval(values, statistic)`: the percentile bootstrap of any statistic of independent items.
- `paired_difference_interval(before, after, statistic)`: the bootstrap of statistic(after) - statistic(before)
  when both were measured on the same items (the same prompts before and after mitigation): each resample
  draws the same items for both, so item-to-item variation cancels. `difference_is_real(interval)` says
  whether that interval excludes zero.
- `Expectation(metric, direction, threshold).judge(...)` returns a `Verdict`: passed or not, ✓ / ✗, and one
  line of explanation for report.md. How the interval is used (the rule) is in `Expectation`'s docstring.

Every function is deterministic given `seed` and returns plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

from hfrecipes.core.errors import RecipeInputError

DEFAULT_RESAMPLES = 2000


class Interval(NamedTuple):
    """A point estimate with the bounds of its confidence interval (`low <= value <= high` as a rule)."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        """Whether `x` lies inside the interval, bounds included."""
        return self.low <= x <= self.high

    def to_dict(self) -> dict[str, float]:
        """`{"value", "low", "high"}` for metrics.json."""
        return {"value": self.value, "low": self.low, "high": self.high}

    def format(self, digits: int = 3) -> str:
        """`0.800 [0.490, 0.943]`, the form report.md prints."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise RecipeInputError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}.")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of the proportion successes / n (e.g. 8/10 -> 0.8 [0.490, 0.943]).

    `successes` may be fractional (a tie counted as half a success). Refuses n < 1 or successes outside [0, n].
    """
    if n < 1:
        raise RecipeInputError(f"A proportion needs at least one item, got n={n}.")
    if not 0 <= successes <= n:
        raise RecipeInputError(f"successes must be between 0 and n={n}, got {successes}.")
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _as_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise RecipeInputError(f"{name} is empty: an interval needs at least one item.")
    if not np.isfinite(array).all():
        raise RecipeInputError(f"{name} holds NaN or infinite values.")
    return array


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    if resamples < 1:
        raise RecipeInputError(f"resamples must be >= 1, got {resamples}.")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    _z(confidence)  # checks the range
    alpha = 1.0 - confidence
    low, high = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The percentile bootstrap interval of `statistic(values)`: `resamples` draws of len(values) items with
    replacement (seeded), the statistic of each, and its alpha/2 and 1 - alpha/2 quantiles (widened, if need be,
    to hold the point value, which is the statistic of the values themselves)."""
    array = _as_array(values, "values")
    indices = _resample_indices(array.size, resamples, seed)
    estimates = np.array([statistic(array[row]) for row in indices], dtype=np.float64)
    low, high = _percentiles(estimates, confidence)
    value = float(statistic(array))
    return Interval(value, min(low, value), max(high, value))


def paired_difference_interval(
    before: Sequence[float] | np.ndarray,
    after: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The bootstrap interval of statistic(after) - statistic(before), items paired by position (the same
    prompt scored before and after): every resample draws the same items from both lists."""
    first, second = _as_array(before, "before"), _as_array(after, "after")
    if first.size != second.size:
        raise RecipeInputError(
            f"before and after must pair up item by item; got {first.size} and {second.size} values."
        )
    indices = _resample_indices(first.size, resamples, seed)
    estimates = np.array(
        [statistic(second[row]) - statistic(first[row]) for row in indices], dtype=np.float64
    )
    low, high = _percentiles(estimates, confidence)
    value = float(statistic(second) - statistic(first))
    return Interval(value, min(low, value), max(high, value))


def bias_score_statistic(preferences: Sequence[float] | np.ndarray) -> float:
    """bias_score of per-pair preferences (1 stereotyped preferred, 0 anti, 0.5 tie): |2 * mean - 1|, 0 for an
    unbiased model and 1 for one that always prefers the same side."""
    return float(abs(2.0 * np.mean(preferences) - 1.0))


def difference_is_real(interval: Interval | Sequence[float]) -> bool:
    """Whether an interval of a difference excludes zero (entirely above or entirely below it)."""
    low, high = (interval.low, interval.high) if isinstance(interval, Interval) else interval[-2:]
    return low > 0 or high < 0


DIRECTIONS = ("up", "down", "not_down", "not_up", "at_least", "at_most")
PASS_MARK, FAIL_MARK = "✓", "✗"


@dataclass(frozen=True)
class Verdict:
    """The judgement of one expectation: whether it holds, its mark (✓ / ✗) and one line saying why."""

    metric: str
    passed: bool
    explanation: str

    @property
    def mark(self) -> str:
        """✓ when the expectation holds, ✗ otherwise."""
        return PASS_MARK if self.passed else FAIL_MARK

    def line(self) -> str:
        """`✓ bias_score down: ...`, one line for report.md."""
        return f"{self.mark} {self.explanation}"

    def to_dict(self) -> dict[str, Any]:
        """`{"metric", "passed", "mark", "explanation"}` for metrics.json and the lifecycle report."""
        return {
            "metric": self.metric,
            "passed": self.passed,
            "mark": self.mark,
            "explanation": self.explanation,
        }


def _interval(value: float | Interval | Sequence[float]) -> Interval:
    if isinstance(value, Interval):
        return value
    if isinstance(value, (int, float)):
        return Interval(float(value), float(value), float(value))
    if len(value) == 3:
        return Interval(*map(float, value))
    raise RecipeInputError(f"Expected a number or an Interval (value, low, high), got {value!r}.")


@dataclass(frozen=True)
class Expectation:
    """What a stage exists to do to one metric, judged from the measured value and its 95% interval.

    `direction` is one of:
    - "up" / "down": the stage must move the metric, and the move must be real. With the interval of the
      paired difference (after - before, `difference=`), it holds when that interval lies entirely above 0
      ("up") or entirely below 0 ("down"). Without it, the before and after intervals must not overlap
      (after.low > before.high for "up"), a conservative stand-in; with bare numbers, after > before.
    - "not_down" / "not_up": the stage must not make the metric worse. It holds unless the interval of the
      difference lies entirely below 0 ("not_down") or entirely above 0 ("not_up"): noise is not a regression.
      Without a difference interval: unless after.high < before.low ("not_down"); bare numbers compare directly.
    - "at_least" / "at_most" with `threshold`: a level to reach or stay under. It holds unless the measured
      interval lies entirely on the wrong side of the threshold (high < threshold for "at_least"); with
      `strict=True` the whole interval must be on the right side (low >= threshold). Bare numbers compare directly.
    """

    metric: str
    direction: str
    threshold: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise RecipeInputError(
                f"Expectation for {self.metric!r}: direction must be one of {', '.join(DIRECTIONS)}, "
                f"got {self.direction!r}."
            )
        needs_threshold = self.direction in ("at_least", "at_most")
        if needs_threshold != (self.threshold is not None):
            raise RecipeInputError(
                f"Expectation for {self.metric!r}: "
                + (
                    f"{self.direction} needs a threshold."
                    if needs_threshold
                    else f"{self.direction} compares with the value before and takes no threshold."
                )
            )

    def describe(self) -> str:
        """The expectation in words: `bias_score down`, `accuracy at least 0.9`."""
        words = self.direction.replace("_", " ")
        return f"{self.metric} {words}" + (f" {self.threshold:g}" if self.threshold is not None else "")

    def judge(
        self,
        measured: float | Interval | Sequence[float],
        before: float | Interval | Sequence[float] | None = None,
        difference: Interval | Sequence[float] | None = None,
    ) -> Verdict:
        """Judge the measured value (a number or an Interval) against the expectation; "up", "down",
        "not_down" and "not_up" need `before` (and use `difference`, the paired interval, when given)."""
        after = _interval(measured)
        if self.direction in ("at_least", "at_most"):
            return self._judge_threshold(after)
        if before is None:
            raise RecipeInputError(f"Expectation {self.describe()!r} needs the value before the stage.")
        prior = _interval(before)
        if difference is not None:
            diff = _interval(difference)
            above, below = diff.low > 0, diff.high < 0
            evidence = f"difference {diff.format()}"
        else:
            point = prior.low == prior.high and after.low == after.high
            above = after.value > prior.value if point else after.low > prior.high
            below = after.value < prior.value if point else after.high < prior.low
            evidence = "intervals " + ("compared as points" if point else "compared for overlap")
        passed = {"up": above, "down": below, "not_down": not below, "not_up": not above}[self.direction]
        change = f"{prior.format()} -> {after.format()}"
        if self.direction in ("up", "down"):
            reason = "a real change" if passed else "no real change in that direction"
        else:
            reason = "no real change the wrong way" if passed else "a real change the wrong way"
        return Verdict(self.metric, passed, f"{self.describe()}: {change}, {evidence}: {reason}")

    def _judge_threshold(self, after: Interval) -> Verdict:
        t = float(self.threshold)
        upward = self.direction == "at_least"
        if after.low == after.high:
            passed = after.value >= t if upward else after.value <= t
            reason = "the value" + (" reaches" if passed else " misses") + " the threshold"
        elif self.strict:
            passed = after.low >= t if upward else after.high <= t
            reason = "the whole interval " + ("clears" if passed else "does not clear") + " the threshold"
        else:
            passed = after.high >= t if upward else after.low <= t
            reason = (
                "the interval reaches the threshold"
                if passed
                else "the whole interval lies beyond the threshold"
            )
        return Verdict(self.metric, passed, f"{self.describe()}: measured {after.format()}, {reason}")
