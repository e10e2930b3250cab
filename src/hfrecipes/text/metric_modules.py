"""The `evaluate` metric modules shipped in the package (`hfrecipes/text/metrics/<name>/<name>.py`), loaded
offline. A module of its own because importing `evaluate` takes seconds, and only this path needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import evaluate

from hfrecipes.core.errors import RecipeInputError

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def load_metric(name: str, **kwargs: Any):
    """Load one of the `evaluate` metric modules shipped in `hfrecipes/text/metrics/<name>/<name>.py`.

    `evaluate.load("exact_match")` fetches its script from the Hub and fails offline; a local module directory
    loads without the network. `kwargs` go to `evaluate.load` (e.g. `experiment_id`).
    """
    available = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
    if name not in available:
        raise RecipeInputError(f"Unknown metric {name!r}; hfrecipes ships: {', '.join(available)}.")
    return evaluate.load(str(METRICS_DIR / name), **kwargs)
