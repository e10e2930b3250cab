"""Every data step by the name a YAML `pipeline:` list uses, and the parser that builds steps from that list.

The table is the registry. To add a step, write a `FilterStep` or `TransformStep` subclass (hfrecipes.data.steps)
with a `name`, and add it to `STEPS`; a user's own step, in their own code, is added with `register_step`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.converters import ExtractAnswer, RenameColumns, ToMessages, ToPreference
from hfrecipes.data.counterfactual import CountDemographics, CounterfactualAugment
from hfrecipes.data.heuristics import Corrupted, Language, LowInformation, Spam
from hfrecipes.data.labels import ContradictoryLabels
from hfrecipes.data.media import AudioFilter, ImageDedup, ImageFilter, VideoFilter
from hfrecipes.data.mixing import MixDomains
from hfrecipes.data.near_dedup import Decontaminate, NearDedup
from hfrecipes.data.safety import PIIMask, Unsafe
from hfrecipes.data.steps import Step, check_param_types, short_repr
from hfrecipes.data.text import Chunk, DropEmpty, ExactDedup, Normalize
from hfrecipes.data.web_quality import C4Quality, FineWebQuality, GopherQuality, GopherRepetition

STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (
        # text basics (hfrecipes.data.text)
        Normalize,
        DropEmpty,
        ExactDedup,
        Chunk,
        # quality filters (hfrecipes.data.heuristics: ours; hfrecipes.data.web_quality: datatrove's)
        Corrupted,
        GopherQuality,
        GopherRepetition,
        FineWebQuality,
        C4Quality,
        LowInformation,
        Spam,
        Language,
        # dedup, decontamination, safety, bias, labels, mixing
        NearDedup,
        Decontaminate,
        Unsafe,
        PIIMask,
        CounterfactualAugment,
        CountDemographics,
        ContradictoryLabels,
        MixDomains,
        # conversions to the column conventions (hfrecipes.data.converters)
        ToMessages,
        ToPreference,
        RenameColumns,
        ExtractAnswer,
        # media (hfrecipes.data.media)
        ImageFilter,
        ImageDedup,
        AudioFilter,
        VideoFilter,
    )
}


def register_step(cls: type[Step]) -> type[Step]:
    """Add a step class of your own under its `name`, so `pipeline:` lists can use it."""
    STEPS[cls.name] = cls
    return cls


def registered_steps() -> dict[str, type[Step]]:
    """Every step by name, sorted."""
    return dict(sorted(STEPS.items()))


def parse_pipeline(spec: list[Any] | None) -> list[Step]:
    """Build steps from the YAML list, refusing unknown names, unknown parameters and parameters of the wrong
    type (checked against the step's field annotations) with what is available."""
    steps_by_name = registered_steps()
    if isinstance(spec, (str, dict)):
        spec = [spec]  # `pipeline: normalize` or `pipeline: {corrupted: {...}}`: a pipeline of one step
    if spec is not None and not isinstance(spec, (list, tuple)):
        raise RecipeInputError(f"`pipeline` must be a list of steps, got {short_repr(spec)}.")
    steps: list[Step] = []
    for position, item in enumerate(spec or [], start=1):
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = {} if params is None or params in ([], "") else params
        else:
            raise RecipeInputError(
                f"Pipeline item {position} must be a step name or a one-key mapping name: {{params}}, "
                f"got {short_repr(item)}."
            )
        if not isinstance(name, str) or name not in steps_by_name:
            raise RecipeInputError(
                f"Unknown pipeline step {short_repr(name)} (item {position}). Available: {', '.join(steps_by_name)}."
            )
        cls = steps_by_name[name]
        accepted = {f.name for f in dataclasses.fields(cls) if f.init}
        if not isinstance(params, dict):
            raise RecipeInputError(
                f"Step {name!r} (item {position}): its parameters must be a mapping like "
                f"{{{sorted(accepted)[0] if accepted else 'param'}: value}}, got {short_repr(params)}."
            )
        unknown = sorted(map(str, set(params) - accepted))
        if unknown:
            raise RecipeInputError(
                f"Step {name!r} has no parameter(s) {unknown}. Its parameters: {', '.join(sorted(accepted))}."
            )
        # The step's own checks speak first (they know the allowed ranges); the type check catches the rest.
        try:
            step = cls(**params)
        except RecipeInputError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as err:
            check_param_types(cls, params, f"Step {name!r}")
            raise RecipeInputError(f"Step {name!r}: bad parameters {short_repr(params)}: {err}") from err
        check_param_types(cls, params, f"Step {name!r}")
        steps.append(step)
    return steps
