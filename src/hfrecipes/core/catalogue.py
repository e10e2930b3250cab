"""Where the shipped recipes, their configs, the lifecycle files and the accelerate configs are, in a checkout and
in an installed wheel alike, and what the catalogue knows about them (which config makes which stage directory)."""

from __future__ import annotations

import ast
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

# grpo.py also runs RLOO (`algorithm: rloo`) and the video recipe's configs are video_*.yaml; configs are otherwise
# named after their recipe.
EXTRA_CONFIG_PREFIXES = {"grpo": ("rloo",), "train_video_diffusion": ("video",)}

# The checkout (an editable install or a source tree on sys.path): src/hfrecipes/core/ -> the repository root.
CHECKOUT_ROOT = Path(__file__).resolve().parents[3]


def _shipped_or_checkout(name: str) -> Path:
    """A wheel carries recipes/ and accelerate_configs/ inside the package (hfrecipes/<name>, see pyproject.toml);
    an editable install imports src/hfrecipes, which has no such folder, and uses the checkout's own."""
    shipped = Path(str(resources.files("hfrecipes").joinpath(name))).resolve()
    return shipped if shipped.is_dir() else CHECKOUT_ROOT / name


def recipes_dir() -> Path:
    """The `recipes/` tree: the checkout's own, or the copy shipped inside the installed package."""
    return _shipped_or_checkout("recipes")


def accelerate_configs_dir() -> Path:
    """The `accelerate_configs/` folder, in a checkout or shipped inside the installed package."""
    return _shipped_or_checkout("accelerate_configs")


def shipped_lifecycles() -> dict[str, Path]:
    """The shipped lifecycle files by catalogue name (`text_tiny` -> recipes/lifecycle/text_tiny.yaml)."""
    return {path.stem: path for path in sorted((recipes_dir() / "lifecycle").glob("*.yaml"))}


def shipped_file(reference: str | Path) -> Path | None:
    """`recipes/...` or `accelerate_configs/...` (as lifecycle files write them) in the shipped trees, if there."""
    parts = Path(reference).parts
    roots = {"recipes": recipes_dir, "accelerate_configs": accelerate_configs_dir}
    if len(parts) < 2 or parts[0] not in roots:
        return None
    candidate = roots[parts[0]]().joinpath(*parts[1:])
    return candidate if candidate.exists() else None


def _is_script(tree: ast.Module) -> bool:
    """A recipe script ends with `if __name__ == "__main__":`; the modules beside it do not."""
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def recipe_modules(script: Path) -> list[Path]:
    """The modules beside a recipe script that it imports (`import x` / `from x import ...` of a file next to
    it): the part of a recipe a user changes, which `hfrecipes copy` brings along."""
    tree = ast.parse(script.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    found = [script.parent / f"{name}.py" for name in sorted(names)]
    return [path for path in found if path.is_file() and path != script]


def recipe_catalogue(root: Path | None = None) -> list[tuple[str, str, list[str]]]:
    """(recipe path relative to recipes/, first docstring line, config file names) for every recipe script."""
    root = root or recipes_dir()
    entries = []
    for script in sorted(root.rglob("*.py")):
        tree = ast.parse(script.read_text())
        if script.name.startswith("_") or not _is_script(tree):
            continue  # a module beside a recipe (its loss, sampling, evaluation), brought along by `copy`
        doc = ast.get_docstring(tree) or ""
        configs_dir = script.parent / "configs"
        # Configs are named after the recipe: pretrain_tiny.yaml, tokenizer_tiny.yaml (train_tokenizer.py),
        # prepare_tiny.yaml (prepare_data.py).
        prefixes = tuple(
            {script.stem, script.stem.removeprefix("train_"), script.stem.split("_")[0]} - {"train"}
        ) + EXTRA_CONFIG_PREFIXES.get(script.stem, ())
        configs = (
            sorted(p.name for p in configs_dir.glob("*.yaml") if p.name.startswith(prefixes))
            if configs_dir.is_dir()
            else []
        )
        entries.append((str(script.relative_to(root)), doc.splitlines()[0] if doc else "", configs))
    return entries


@cache
def stage_producers() -> dict[str, str]:
    """Each shipped config's `output_dir` -> the command that makes that stage directory."""
    root = recipes_dir()
    producers = {}
    for recipe, _, configs in recipe_catalogue(root):
        script = Path(recipe)
        for config in configs:
            path = root / script.parent / "configs" / config
            try:
                output_dir = (yaml.safe_load(path.read_text()) or {}).get("output_dir")
            except (OSError, yaml.YAMLError):
                continue
            if output_dir:
                producers[str(Path(output_dir))] = (
                    f"accelerate launch recipes/{recipe} --config recipes/{script.parent}/configs/{config}"
                )
    return producers


def stage_producer(reference: str) -> str | None:
    """The command that makes a shipped stage directory such as runs/sft_chat_tiny, if the catalogue has one."""
    return stage_producers().get(str(Path(reference)))
