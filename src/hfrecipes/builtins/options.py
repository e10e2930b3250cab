"""Options of the `builtin:<name>?key=value` corpora, which arrive as strings: parsed and checked, with one
message naming the corpus, the option and what it accepts."""

from __future__ import annotations

from collections.abc import Sequence

from hfrecipes.core.errors import RecipeInputError


def int_option(source: str, name: str, value: int | str, minimum: int) -> int:
    """A whole-number option of `builtin:<source>`, at least `minimum`."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RecipeInputError(f"builtin:{source}: {name} must be an integer, got {value!r}.") from None
    if number < minimum:
        raise RecipeInputError(f"builtin:{source}: {name} must be at least {minimum}, got {number}.")
    return number


def fraction_option(source: str, name: str, value: float | str) -> float:
    """A number option of `builtin:<source>` between 0 and 1."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecipeInputError(f"builtin:{source}: {name} must be a number, got {value!r}.") from None
    if not 0.0 <= number <= 1.0:
        raise RecipeInputError(f"builtin:{source}: {name} must be between 0 and 1, got {number}.")
    return number


def choices_option(source: str, name: str, value: str, allowed: Sequence[str]) -> list[str]:
    """A comma list of names from `allowed`, in the order given, without repeats."""
    chosen = list(dict.fromkeys(part.strip() for part in str(value).split(",") if part.strip()))
    unknown = [part for part in chosen if part not in allowed]
    if unknown or not chosen:
        raise RecipeInputError(
            f"builtin:{source}: {name} must be a comma list of {', '.join(allowed)}; got {value!r}"
            + (f" ({', '.join(unknown)} unknown)." if unknown else ".")
        )
    return chosen


def optional_int_option(builtin: str, name: str, value: int | str | None, low: int) -> int | None:
    """A whole-number option of `builtin:<builtin>`, at least `low`; None (not given) stays None."""
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < low:
        raise RecipeInputError(f"builtin:{builtin}: {name} must be an integer >= {low}, got {value!r}.")
    return number


def subset_option(builtin: str, name: str, value: str | list[str] | None, known: dict | tuple) -> list[str]:
    """A comma-separated subset of `known` (all of it when None), in `known`'s order."""
    if value is None:
        return list(known)
    wanted = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in wanted if v not in known]
    if unknown or not wanted:
        raise RecipeInputError(
            f"builtin:{builtin}: unknown {name} {unknown or value!r}; choose from {', '.join(known)}."
        )
    return [k for k in known if k in wanted]
