"""One exception type for bad input, so every recipe can stop early with a single clear message."""


class RecipeInputError(ValueError):
    """Raised before any expensive work when the user's input cannot work; the message says how to fix it."""


class NonFiniteError(FloatingPointError):
    """A NaN or inf loss or gradient stopped training (`hfrecipes.core.guards`); the message names the step."""
