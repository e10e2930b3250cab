"""Every corpus the package generates on the machine itself, by its `builtin:<name>`, so every recipe runs offline.

The table is the registry: `hfrecipes.data.sources.load_source("builtin:<name>?key=value")` calls
`BUILTINS[name](key=value, ...)`. To add a corpus, write a generator `fn(**options) -> datasets.Dataset` in
a module here and add one line to the table.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets

from hfrecipes.builtins.bias import bias_pairs, bias_questions, people_stories
from hfrecipes.builtins.heldout import heldout_eval
from hfrecipes.builtins.images import digits, shapes
from hfrecipes.builtins.instructions import arithmetic, python_qa
from hfrecipes.builtins.noisy_web import noisy_web
from hfrecipes.builtins.preferences import chat_mix, preferences
from hfrecipes.builtins.qa import stdlib_qa
from hfrecipes.builtins.safety import safety
from hfrecipes.builtins.speech import espeak
from hfrecipes.builtins.text import python_stdlib, tinyshakespeare
from hfrecipes.builtins.videos import moving_shapes

BUILTINS: dict[str, Callable[..., datasets.Dataset]] = {
    "arithmetic": arithmetic,
    "bias-pairs": bias_pairs,
    "bias-questions": bias_questions,
    "chat-mix": chat_mix,
    "digits": digits,
    "espeak": espeak,
    "heldout-eval": heldout_eval,
    "moving-shapes": moving_shapes,
    "noisy-web": noisy_web,
    "people-stories": people_stories,
    "preferences": preferences,
    "python-qa": python_qa,
    "python-stdlib": python_stdlib,
    "safety": safety,
    "shapes": shapes,
    "stdlib-qa": stdlib_qa,
    "tinyshakespeare": tinyshakespeare,
}
