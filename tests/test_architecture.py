"""The layout stays readable: no import cycles, no oversized module or function.

The package's imports are read with ``ast`` (nothing is imported), so these checks cost
milliseconds and hold for lazy imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cifarkit"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            # ``from . import binary`` imports the submodule, not the package's own names
            candidates = submodules or [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != name)
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_oversized(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"


def _long_functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            first = body[1] if docstring and len(body) > 1 else body[0]
            length = node.end_lineno - first.lineno + 1
            if length > MAX_FUNCTION_LINES:
                yield f"{node.name} ({length} lines)"


def test_no_function_body_is_oversized():
    long = [f"{name}.{fn}" for name, path in MODULES.items() for fn in _long_functions(path)]
    assert not long, ", ".join(long)


# The stages, lowest first: a module may import from its own stage and those below it, never from
# one above (docs/ARCHITECTURE.md draws the flow). Stages on one line are side by side.
LAYERS = (
    ("errors", "constants", "_version"),
    ("metadata",),
    ("writers", "runtime"),
    ("sources",),
    ("readers",),
    ("augment", "formats"),
    ("models", "data"),
    ("evaluation", "modelio"),
    ("training",),
    ("cli", "__main__", ""),  # "": the package's own __init__, the public re-exports
)
# Arrows up that are part of the design, each with its reason.
ALLOWED_UP = {
    # A TFRecord export or a TFDS folder read as a source goes through the format's own reader,
    # imported lazily by the one source family that needs it.
    ("cifarkit.sources.registry", "cifarkit.formats.tfrecord_source"),
    # An ArrayRecord export or TFDS folder read as a source, the same way.
    ("cifarkit.sources.registry", "cifarkit.formats.arrayrecord_source"),
    # A WebDataset export read as a source (info, export from it), the same way.
    ("cifarkit.sources.registry", "cifarkit.formats.webdataset_read"),
    # A Parquet export read as a source (info, export from it), the same way.
    ("cifarkit.sources.registry", "cifarkit.formats.parquet_source"),
}


def _stage(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(LAYERS):
        if part in names:
            return level
    raise AssertionError(f"{module} is in no stage of LAYERS; add its package there")


def test_every_module_belongs_to_a_stage():
    for name in MODULES:
        _stage(name)


def test_nothing_imports_from_a_stage_above_it():
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if _stage(target) > _stage(name) and (name, target) not in ALLOWED_UP
    )
    assert not upward, "imports from a higher stage: " + ", ".join(upward)


def test_the_layer_check_catches_an_arrow_up():
    assert _stage("cifarkit.training.loop") > _stage("cifarkit.readers.reader")
    assert _stage("cifarkit.sources.idx") < _stage("cifarkit.formats.tfrecord")


def test_every_module_architecture_md_names_exists():
    """Each `path.py` or `package/` the module list names is in the package."""
    import re

    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Modules", 1)[1].split("## Where to add", 1)[0]
    missing = []
    package = None
    for line in section.splitlines():
        heading = re.search(r"\(`([a-z_]+)/`\)\s*$", line)  # "**Sources ...** (`sources/`)"
        if heading:
            package = heading.group(1)
        for name in re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", line):
            candidates = [PACKAGE / name] + ([PACKAGE / package / name] if package else [])
            if not any(c.is_file() for c in candidates) and not list(PACKAGE.rglob(name.split("/")[-1])):
                missing.append(name)
        for name in re.findall(r"`([a-z_]+)/`", line):
            if not (PACKAGE / name).is_dir() and not list(PACKAGE.rglob(name)):
                missing.append(name + "/")
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {', '.join(sorted(set(missing)))}"
