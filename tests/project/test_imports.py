"""No import circle in npresnet: every module imports alone, and the intra-package import graph is acyclic.

The graph is read from the source (``ast``), not from what happens to be imported at run
time, and it counts imports inside functions too (a lazy import is still a dependency; the
only ones allowed are downward, which the acyclicity check enforces like any other).
It also pins the layering the README's architecture section states: the lower layers
never import the higher ones.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import npresnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(npresnet.__file__)))
MODULES = sorted(["npresnet"] + [m.name for m in pkgutil.walk_packages(npresnet.__path__, "npresnet.")])


def _source_path(module: str) -> str:
    base = os.path.join(ROOT, *module.split("."))
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def _imports(module: str) -> set[str]:
    """npresnet modules that ``module`` imports anywhere in its source (top level or inside functions)."""
    path = _source_path(module)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # "from . import functional" names a module; "from .shapes import pair" names the module shapes
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # "npresnet.nn.layers.Conv2d" -> "npresnet.nn.layers"
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    """Explicit imports only. Python also runs a module's parent ``__init__`` first, but that implicit
    step names nothing from the parent, so it cannot close a circle by itself; an explicit import of a
    package (``from ..nn import Conv2d``) is an edge to its ``__init__`` and is counted."""
    return {m: _imports(m) for m in MODULES}


def _find_cycle(graph):
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack = []

    def visit(node):
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt) :] + [nxt]
            if colour[nxt] == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walk_found_the_package():
    assert {
        "npresnet.functional",
        "npresnet.fast.model",
        "npresnet.models.resnet",
        "npresnet.nn.layers",
        "npresnet.shapes",
        "npresnet.workspace",
    } <= set(MODULES)


def test_the_import_graph_is_acyclic():
    graph = _graph()
    assert graph["npresnet.fast.model"] >= {"npresnet.nn.inputs", "npresnet.shapes"}  # the parser sees edges
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_a_planted_cycle_is_found():
    """The checker itself can fail."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


LAYERS = [
    {"npresnet.backend", "npresnet.errors", "npresnet._atomic", "npresnet.limits", "npresnet._args"},
    {"npresnet.shapes", "npresnet.formulas", "npresnet.workspace", "npresnet.weights"},
    {"npresnet.functional"},
    {"npresnet.nn"},
    {"npresnet.models"},
    {"npresnet.fast"},
]


def _layer(module: str):
    for index, layer in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return index
    return None


def test_imports_point_down_the_layers():
    """backend → shapes/workspace/weights → functional → nn → models → fast: no module imports a higher layer."""
    graph = _graph()
    wrong = []
    for module, targets in graph.items():
        here = _layer(module)
        if here is None:
            continue
        for target in targets:
            there = _layer(target)
            if there is not None and there > here:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


# The emulated CuPy is test infrastructure beside the layers, not one of them: only backend reaches it (lazily, when
# the "cupy-emulated" backend is asked for), and it reaches into the library for one thing, what its RawModule runs:
# the CUDA kernels' sources and NumPy twins (fast.cuda's SOURCES and TWINS, and grid's Buffer and Launch).
EMULATION = "npresnet._emulation"
EMULATION_REACHES = {"npresnet.fast.cuda", "npresnet.fast.cuda.grid"}


def _in_emulation(module: str) -> bool:
    return module == EMULATION or module.startswith(EMULATION + ".")


def test_only_backend_reaches_the_emulation_and_it_reaches_only_the_kernel_twins():
    graph = _graph()
    importers = sorted(m for m, targets in graph.items() if not _in_emulation(m) and any(map(_in_emulation, targets)))
    assert importers == ["npresnet.backend"]
    reached = {t for m, targets in graph.items() if _in_emulation(m) for t in targets if not _in_emulation(t)}
    assert reached == EMULATION_REACHES, "update EMULATION_REACHES, CONTRIBUTING.md's layer map, or the import"


def test_the_emulation_loads_the_fused_path_only_to_run_a_kernel():
    """Emulated arrays, ufuncs and products load nothing of npresnet.fast; only a RawModule reads fast.cuda's twins."""
    code = (
        "import sys, numpy; from npresnet._emulation import cupy; "
        "x = cupy.asarray(numpy.ones((2, 2), numpy.float32)); float((x @ x + 1).sum()); "
        "print(sorted(m for m in sys.modules if m.startswith('npresnet.fast')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


# Public names at the import paths they have always had: a module split into rooms keeps them.
PUBLIC_PATHS = {
    "npresnet.weights.pth": ["read_pth", "RestrictedUnpickler", "LEGACY_MAGIC"],
    "npresnet.nn.module": ["Module", "Sequential", "capture_intermediates", "check_state_dict", "state_dict_report"],
    "npresnet.nn": ["Module", "check_state_dict", "state_dict_report"],
    "npresnet.distributed.store": [
        "OutputMismatchError",
        "FeatureStore",
        "PredictionStore",
        "FORMAT",
        "manifest_digest",
        "storage_rows",
        "STORAGE_CHUNK_BYTES",
    ],
    "npresnet.functional.conv": ["im2col", "col2im", "conv2d_output_shape", "conv2d", "conv2d_backward"],
    "npresnet.functional": ["im2col", "col2im", "conv2d", "conv2d_backward", "MAX_CHUNKS", "MAX_ELEMENTS"],
    "npresnet.summary.formulas": ["conv2d_macs", "linear_macs", "ReceptiveField", "layer_field"],
    "npresnet.summary": ["ReceptiveField", "conv2d_macs", "linear_macs"],
    "npresnet.workspace": ["workspace_chunks", "resolve_workspace_bytes", "NUMPY_WORKSPACE_BYTES"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_PATHS))
def test_public_names_keep_their_import_paths(module):
    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC_PATHS[module] if not hasattr(imported, name)]
    assert not missing, f"{module} no longer has {missing}"
    exported = getattr(imported, "__all__", None)
    if exported is not None:
        assert set(PUBLIC_PATHS[module]) <= set(exported)


def test_the_fused_path_does_not_load_the_summary():
    """npresnet.fast takes its MAC formula from npresnet.formulas, not from the summary package."""
    code = "import sys, npresnet.fast; print(sorted(m for m in sys.modules if m.startswith('npresnet.summary')))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    """In a fresh interpreter, importing the module first (nothing else preloaded) succeeds."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


MAX_MODULE_LINES = 500
# Modules allowed over MAX_MODULE_LINES, each with its reason. models/resnet.py mirrors
# torchvision's file.
LONG_MODULES = {
    "npresnet.models.resnet": "mirrors torchvision/models/resnet.py, section by section",
}


def _line_count(module: str) -> int:
    with open(_source_path(module), encoding="utf-8") as f:
        return sum(1 for _ in f)


def test_no_module_is_over_the_line_limit():
    """One room per idea: a module past MAX_MODULE_LINES lines mixes ideas (or needs a listed reason)."""
    long = {m: _line_count(m) for m in MODULES if _line_count(m) > MAX_MODULE_LINES}
    assert sorted(set(long) - set(LONG_MODULES)) == [], long
    stale = sorted(m for m in LONG_MODULES if m not in long)
    assert stale == [], f"{stale} are within {MAX_MODULE_LINES} lines now: remove them from LONG_MODULES"


def test_no_test_module_imports_another():
    """Shared test helpers live in tests/_helpers (or conftest.py), so each test module stands alone."""
    tests = os.path.join(ROOT, "tests")
    paths = {  # every test module, in tests/ and its folders (tests/functional/test_conv.py: "functional/test_conv")
        os.path.relpath(os.path.join(folder, f), tests)[:-3]: os.path.join(folder, f)
        for folder, _, files in os.walk(tests)
        for f in files
        if f.startswith("test_") and f.endswith(".py")
    }
    names = {os.path.basename(name) for name in paths} | {"tests"}  # "tests": tests.functional.test_conv
    assert "functional/test_conv" in {name.replace(os.sep, "/") for name in paths}  # the walk found the folders
    found = []
    for name in sorted(paths):
        tree = ast.parse(open(paths[name], encoding="utf-8").read())
        for node in ast.walk(tree):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                imported = [node.module or ""]
            found += [f"{name} imports {m}" for m in imported if m.split(".")[0] in names]
    assert found == []
