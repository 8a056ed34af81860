"""The shape of the package: one-way imports between layers, no cycles, a torch-only core.

Every import of every module under ``hdm/`` is read with ``ast``, function-local imports
included, and resolved to a module of the package (``from hdm.a import b`` is the module
``hdm.a.b`` when it exists, else ``hdm.a``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hdm"

#: a module may import from its own package and from packages of a lower layer only
LAYERS = {
    "hilbert": 0,
    "data": 1,
    "conditioning": 2,
    "metrics": 2,
    "domains": 2,
    "plotting": 2.5,
    "downscaling": 3,
    "pipelines": 4,
}
#: top-level helpers any layer may use (no hdm imports of their own)
SHARED = {"hdm._version", "hdm.allocator"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The hdm modules (and other top-level names) a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found


GRAPH = {name: {m for m in _imports(path) if m.startswith("hdm")} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_found_and_parsed():
    assert {"hdm.hilbert.grids", "hdm.downscaling.core", "hdm.pipelines.cli"} <= set(MODULES)
    assert any("hdm.hilbert.grids" in deps for deps in GRAPH.values())


def test_no_import_cycles():
    """A depth-first search over the module graph finds no back edge."""
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH.get(module, ())):
            if dep not in MODULES or dep == module:
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [module, dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_imports_point_down_the_layers(module):
    """pipelines -> downscaling -> conditioning, metrics, domains -> data -> hilbert."""
    mine = _layer(module)
    for dep in GRAPH[module]:
        if dep in SHARED:
            continue
        theirs = _layer(dep)
        assert theirs is not None, f"{module} imports {dep}, outside the layers"
        ok = theirs == mine or LAYERS[theirs] < LAYERS[mine]
        assert ok, f"{module} ({mine}) imports {dep} ({theirs}): imports point down only"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "hdm"))
def test_no_module_below_the_top_imports_hdm_itself(module):
    assert "hdm" not in GRAPH[module], f"{module} imports hdm: use hdm._version"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "hilbert"))
def test_the_core_imports_neither_xarray_nor_other_hdm_packages(module):
    imports = _imports(MODULES[module])
    assert not any(m == "xarray" or m.startswith("xarray.") for m in imports), module
    others = {m for m in GRAPH[module] if _layer(m) not in ("hilbert", None)}
    assert not others, f"{module} imports {sorted(others)}"


def test_nothing_in_the_package_imports_the_benchmarks():
    for module, path in MODULES.items():
        bad = {m for m in _imports(path) if m == "benchmarks" or m.startswith("benchmarks.")}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_import_hdm_loads_neither_torch_nor_xarray():
    import subprocess
    import sys

    code = (
        "import sys, hdm; print(hdm.__version__, 'torch' in sys.modules, 'xarray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, torch_loaded, xarray_loaded = out.stdout.split()
    assert version and torch_loaded == "False" and xarray_loaded == "False"


def _layout_entries() -> list[tuple[str, list[str]]]:
    """(module, the backticked names on its lines) from the layout block of
    docs/ARCHITECTURE.md; continuation lines belong to the module above them."""
    import re

    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("```", 2)[1]
    entries: list[tuple[str, list[str]]] = []
    package = ""
    for line in block.splitlines():
        names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line)
        head = line.strip().split()
        if not head:
            continue
        if line.startswith("  ") and head[0].endswith("/") and len(line) - len(line.lstrip()) == 2:
            package = head[0].rstrip("/")
            continue
        files = [w for w in head if w.endswith(".py")] if not line.startswith(" " * 26) else []
        if files:
            indent = len(line) - len(line.lstrip())
            prefix = "hdm." + package + "." if indent == 4 else "hdm."
            for f in files:
                stem = f[: -len(".py")]
                entries.append(("hdm" if stem == "__init__" else prefix + stem, []))
        if entries and names:
            entries[-1][1].extend(names)
    return entries


def test_architecture_doc_lists_modules_and_names_that_exist():
    import importlib

    entries = _layout_entries()
    assert len(entries) > 40
    for module, names in entries:
        assert module in MODULES, f"docs/ARCHITECTURE.md lists {module}, which does not exist"
        mod = importlib.import_module(module)
        for name in names:
            assert hasattr(mod, name), f"docs/ARCHITECTURE.md: {module} has no {name!r}"
