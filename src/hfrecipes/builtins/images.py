"""Built-in image–caption datasets generated on the machine itself, so the image recipes run offline.

- `builtin:digits`: the 1,797 8x8 handwritten digits that scikit-learn ships (UCI "optdigits" test set),
  upsampled to `size` pixels (white ink on black), with `label` (a ClassLabel, names "zero".."nine") and
  captions `"a handwritten digit seven"`.
- `builtin:shapes`: coloured shapes on dark gradient backgrounds, drawn at 4x and downsampled (anti-aliased),
  with captions naming colour, shape, size and position (`"a large red circle at the top left"`) and the
  same facts as structured columns `color`, `shape`, `size`, `position` (ClassLabels), which the offline
  evaluation uses to check whether a generated image shows what its prompt asked for.

Options arrive as strings from the source spec, e.g. `builtin:digits?size=16&n=500` or
`builtin:shapes?n=2000&size=32&colors=red,green,blue&positions=center`.
"""

from __future__ import annotations

import random

import datasets
import numpy as np
from PIL import Image, ImageDraw

from hfrecipes.builtins.options import optional_int_option, subset_option
from hfrecipes.core.errors import RecipeInputError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_CAPTION = "a handwritten digit {name}"

# Saturated colours that stay distinguishable at 16 px on the dark backgrounds below.
SHAPE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 95, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 215),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "cyan": (40, 215, 225),
}
SHAPE_KINDS = ("circle", "square", "triangle", "cross")
SHAPE_SIZES: dict[str, float] = {"small": 0.26, "large": 0.46}  # bounding-box side / image side
SHAPE_POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.28, 0.28),
    "top right": (0.72, 0.28),
    "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72),
    "center": (0.5, 0.5),
}
SUPERSAMPLE = 4


def _image_feature_dataset(columns: dict[str, list], class_columns: dict[str, list[str]]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "text": datasets.Value("string"),
            **{name: datasets.ClassLabel(names=list(names)) for name, names in class_columns.items()},
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


def digits(
    size: int | str = 16, n: int | str | None = None, seed: int | str = 0, mode: str = "L"
) -> datasets.Dataset:
    """scikit-learn's bundled 8x8 digits (values 0-16), bicubically upsampled to `size` px.

    Columns: `image` (mode "L", or "RGB" with mode=RGB), `text` ("a handwritten digit seven"), `label`
    (ClassLabel "zero".."nine"). `n` keeps a seeded random subset of that many rows."""
    size = optional_int_option("digits", "size", size, 4)
    n = optional_int_option("digits", "n", n, 1)
    if mode not in ("L", "RGB"):
        raise RecipeInputError(f"builtin:digits: mode must be L or RGB, got {mode!r}.")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # scikit-learn ships the data file; nothing is downloaded
        raise RecipeInputError(
            "builtin:digits reads the digits that scikit-learn ships: pip install scikit-learn."
        ) from err
    bunch = load_digits()
    order = list(range(len(bunch.target)))
    if n is not None and n < len(order):
        order = sorted(random.Random(int(seed)).sample(order, n))
    images, texts, labels = [], [], []
    for index in order:
        pixels = (bunch.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
        image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
        images.append(image.convert(mode) if mode != "L" else image)
        label = int(bunch.target[index])
        texts.append(DIGIT_CAPTION.format(name=DIGIT_NAMES[label]))
        labels.append(label)
    return _image_feature_dataset(
        {"image": images, "text": texts, "label": labels}, {"label": list(DIGIT_NAMES)}
    )


def shape_caption(color: str, shape: str, size: str, position: str) -> str:
    """The caption of one `builtin:shapes` image, e.g. "a small red circle at the top left"."""
    where = "in the center" if position == "center" else f"at the {position}"
    return f"a {size} {color} {shape} {where}"


def gradient_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A dark vertical or horizontal gradient between two random dark colours, with faint noise (float HxWx3)."""
    start, end = rng.integers(0, 70, 3), rng.integers(0, 70, 3)
    ramp = np.linspace(0.0, 1.0, side)[:, None]
    gradient = start[None, :] * (1 - ramp) + end[None, :] * ramp  # side x 3
    array = np.repeat(gradient[:, None, :], side, axis=1)
    if rng.random() < 0.5:
        array = array.transpose(1, 0, 2)
    return array + rng.normal(0.0, 4.0, array.shape)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, fill) -> None:
    """Draw one shape (circle, square, triangle, cross) centred at (cx, cy), `half` its half-width."""
    box = [cx - half, cy - half, cx + half, cy + half]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle([cx - 0.85 * half, cy - 0.85 * half, cx + 0.85 * half, cy + 0.85 * half], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + 0.8 * half), (cx - half, cy + 0.8 * half)], fill=fill)
    else:  # cross
        arm = 0.33 * half
        draw.rectangle([cx - half, cy - arm, cx + half, cy + arm], fill=fill)
        draw.rectangle([cx - arm, cy - half, cx + arm, cy + half], fill=fill)


def shapes(
    n: int | str = 2000,
    size: int | str = 32,
    seed: int | str = 0,
    colors: str | None = None,
    shapes: str | None = None,
    sizes: str | None = None,
    positions: str | None = None,
) -> datasets.Dataset:
    """`n` RGB images of one coloured shape each, at a random (seeded) colour/shape/size/position drawn
    from the given comma-separated subsets (default: all of SHAPE_COLORS, SHAPE_KINDS, SHAPE_SIZES,
    SHAPE_POSITIONS), with a little jitter in size and place.

    Columns: `image`, `text` (caption), `color`, `shape`, `size`, `position` (ClassLabels)."""
    n = optional_int_option("shapes", "n", n, 1)
    side = optional_int_option("shapes", "size", size, 8)
    palette = subset_option("shapes", "colors", colors, SHAPE_COLORS)
    kinds = subset_option("shapes", "shapes", shapes, SHAPE_KINDS)
    scales = subset_option("shapes", "sizes", sizes, SHAPE_SIZES)
    places = subset_option("shapes", "positions", positions, SHAPE_POSITIONS)
    rng = np.random.default_rng(int(seed))
    big = side * SUPERSAMPLE
    columns: dict[str, list] = {k: [] for k in ("image", "text", "color", "shape", "size", "position")}
    for _ in range(n):
        color, kind = palette[rng.integers(len(palette))], kinds[rng.integers(len(kinds))]
        scale, place = scales[rng.integers(len(scales))], places[rng.integers(len(places))]
        background = gradient_background(rng, side)
        half = SHAPE_SIZES[scale] * big / 2 * rng.uniform(0.9, 1.1)
        cx, cy = (c * big + rng.uniform(-0.04, 0.04) * big for c in SHAPE_POSITIONS[place])
        # The shape's coverage drawn at 4x and box-filtered down is its anti-aliased alpha at `side` px.
        mask = Image.new("L", (big, big), 0)
        draw_shape(ImageDraw.Draw(mask), kind, cx, cy, half, 255)
        alpha = np.asarray(mask.resize((side, side), Image.Resampling.BOX), dtype=np.float64)[..., None] / 255
        pixels = background * (1 - alpha) + np.asarray(SHAPE_COLORS[color], dtype=np.float64) * alpha
        columns["image"].append(Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="RGB"))
        columns["text"].append(shape_caption(color, kind, scale, place))
        for column, value in (("color", color), ("shape", kind), ("size", scale), ("position", place)):
            columns[column].append(value)
    class_columns = {"color": palette, "shape": kinds, "size": scales, "position": places}
    for column, names in class_columns.items():
        columns[column] = [names.index(v) for v in columns[column]]
    return _image_feature_dataset(columns, class_columns)


__all__ = [
    "DIGIT_NAMES",
    "SHAPE_COLORS",
    "SHAPE_KINDS",
    "SHAPE_POSITIONS",
    "SHAPE_SIZES",
    "digits",
    "shape_caption",
    "shapes",
]
