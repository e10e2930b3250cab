"""One exception type for bad input, so every recipe can stop early with a single clear message."""


class RecipeInputError(ValueError):
    """Raised before any expensive work when the user's input cannot work; the message says how to fix it."""


class NonFiniteError(FloatingPointError):
    """A NaN or inf loss or gradient stopped training (`hfrecipes.guards`); the message names the step."""


def run_main(main) -> None:
    """Run a recipe's `main()`; bad input ends with one line on stderr and exit status 2, not a traceback; a
    numerical fault (`NonFiniteError`) ends with one line and exit status 3.

    The configuration is checked as it is parsed (`hfrecipes.args.checked_config_parsing`): a missing or invalid
    YAML file, an unknown key or a value of the wrong type is bad input too."""
    import sys

    from hfrecipes.args import checked_config_parsing

    try:
        with checked_config_parsing():
            main()
    except RecipeInputError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        sys.exit(3)
