"""tests/ mirrors npresnet/, so a change to a room has one obvious place for its tests (CONTRIBUTING.md).

- ``tests/test_<module>.py`` tests the top-level module ``npresnet/<module>.py``;
- ``tests/<room>/`` tests the package ``npresnet/<room>/``, nested as the package nests
  (``tests/fast/cuda/`` for ``npresnet/fast/cuda/``); ``npresnet/_emulation``'s are in
  ``tests/emulation/``, since a folder named with an underscore is a helper here;
- ``tests/project/`` holds what tests the repository as a whole: the import layering and line
  limits, the documentation's examples, the benchmark harness, hostile arguments across the API.

Every package of npresnet has its tests folder, and a test file says what it tests within its
folder (``tests/functional/test_conv.py``, not ``tests/functional/test_functional_conv.py``).
Helpers are not test modules: ``conftest.py`` and the ``tests/_*`` modules and packages.

The test folders are no Python packages: pytest imports each test file by its path
(``--import-mode=importlib`` in pyproject.toml), and with ``tests/`` on ``sys.path`` for the
helpers, a ``tests/distributed/__init__.py`` would shadow Dask's ``distributed`` package.
"""

from __future__ import annotations

import os

import npresnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(npresnet.__file__)))
PACKAGE = os.path.join(ROOT, "npresnet")
TESTS = os.path.join(ROOT, "tests")
CROSS_CUTTING = "project"


def _packages() -> list[str]:
    """npresnet's subpackages as paths below npresnet/: ``"functional"``, ``"fast/cuda"``, ``"_emulation"``."""
    return sorted(
        os.path.relpath(folder, PACKAGE).replace(os.sep, "/")
        for folder, _, files in os.walk(PACKAGE)
        if "__init__.py" in files and folder != PACKAGE
    )


def _tests_folder(package: str) -> str:
    """Where a package's tests live, below tests/: ``"fast/cuda"`` stays, ``"_emulation"`` -> ``"emulation"``."""
    return "/".join(part.lstrip("_") for part in package.split("/"))


def _test_folders() -> list[str]:
    """Every folder below tests/ that is not a helper (``_helpers``), a cache or a hidden folder."""
    found = []
    for folder, folders, _ in os.walk(TESTS):
        folders[:] = [f for f in folders if not f.startswith(("_", "."))]
        found.append(os.path.relpath(folder, TESTS).replace(os.sep, "/"))
    return sorted(found)


def _test_modules() -> list[str]:
    """Every test module, relative to tests/: ``"test_shapes.py"``, ``"functional/test_conv.py"``."""
    modules = []
    for folder in _test_folders():
        names = os.listdir(os.path.join(TESTS, folder))
        prefix = "" if folder == "." else folder + "/"
        modules += [prefix + name for name in names if name.startswith("test_") and name.endswith(".py")]
    return sorted(modules)


def _misplaced(modules: list[str], packages: list[str], top_level: set[str]) -> list[str]:
    """The test modules that are neither where the room they test is nor cross-cutting, each with why."""
    rooms = {_tests_folder(p) for p in packages}
    wrong = []
    for module in modules:
        folder, _, name = module.rpartition("/")
        if not folder:
            if name.removeprefix("test_") not in top_level:
                wrong.append(f"{module}: tests/test_X.py tests npresnet/X.py, and there is no such module")
        elif folder != CROSS_CUTTING and folder not in rooms:
            wrong.append(f"{module}: tests/{folder}/ is no package of npresnet (nor tests/{CROSS_CUTTING}/)")
        elif name.startswith(f"test_{folder.rpartition('/')[2]}_"):
            wrong.append(f"{module}: within tests/{folder}/ the name need not repeat the folder's")
    return wrong


def test_the_walks_find_the_package_and_the_tests():
    assert {"functional", "fast", "fast/cuda", "_emulation", "weights"} <= set(_packages())
    assert {"test_shapes.py", "functional/test_conv.py", "fast/cuda/test_kernels.py"} <= set(_test_modules())
    assert "project/test_mirror.py" in _test_modules()
    assert not any("_helpers" in m or "_rounding" in m for m in _test_modules())


def test_every_test_module_is_where_what_it_tests_is():
    top_level = {name for name in os.listdir(PACKAGE) if name.endswith(".py") and not name.startswith("_")}
    assert _misplaced(_test_modules(), _packages(), top_level) == []


def test_a_misplaced_test_module_is_found():
    """The checker itself can fail."""
    packages = ["functional", "_emulation", "fast", "fast/cuda"]
    modules = [
        "test_shapes.py",
        "test_nothing.py",
        "functional/test_conv.py",
        "functional/test_functional_pool.py",
        "emulation/test_counts.py",
        "fast/cuda/test_kernels.py",
        "fast/cuda/test_cuda_gemm.py",
        "cuda/test_kernels.py",
        "project/test_imports.py",
        "misc/test_things.py",
    ]
    found = _misplaced(modules, packages, {"shapes.py"})
    assert [w.partition(":")[0] for w in found] == [
        "test_nothing.py",
        "functional/test_functional_pool.py",
        "fast/cuda/test_cuda_gemm.py",
        "cuda/test_kernels.py",
        "misc/test_things.py",
    ]


def test_every_package_has_its_tests_folder():
    """A new room comes with the place of its tests (and at least one test in it)."""
    tested = {module.rpartition("/")[0] for module in _test_modules()}
    missing = [f"npresnet/{p}/ -> tests/{_tests_folder(p)}/" for p in _packages() if _tests_folder(p) not in tested]
    assert missing == []


def test_the_test_folders_are_not_packages():
    """No ``__init__.py`` below tests/ but in the helper packages (see this module's docstring)."""
    packages = [f for f in _test_folders() if os.path.isfile(os.path.join(TESTS, f, "__init__.py"))]
    assert packages == []
