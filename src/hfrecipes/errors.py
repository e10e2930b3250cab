"""One exception type for bad input, so every recipe can stop early with a single clear message."""


class RecipeInputError(ValueError):
    """Raised before any expensive work when the user's input cannot work; the message says how to fix it."""


def run_main(main) -> None:
    """Run a recipe's `main()`; bad input ends with one line on stderr and exit status 2, not a traceback."""
    import sys

    try:
        main()
    except RecipeInputError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        sys.exit(2)
