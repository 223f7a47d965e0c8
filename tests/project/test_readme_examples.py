"""The README's and the user guide's Python examples run as written, each in a fresh interpreter after
nothing but its own imports.

Every ```python block of README.md and of the Markdown pages under docs/ (the user guide the README's
sections moved to) is extracted and run in a temporary directory that holds what the pages say to
make first (``resnet18.pth`` from ``torch.manual_seed(0)``, the
``embed`` outputs). A bare ``` block right after a Python block is its printed output and must
match. Blocks with a GPU part guard it themselves (``if "cupy" in available_backends()``).
The modules' ``>>>`` examples run under doctest.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import npresnet

ROOT = Path(npresnet.__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
# README.md, then every Markdown page of the documentation except the build output and docs/testing.md,
# whose examples tests/testing/test_docs.py runs (with its "# needs: LIB" skips).
PAGES = [ROOT / "README.md"] + sorted(
    p
    for p in (ROOT / "docs").rglob("*.md")
    if "_build" not in p.relative_to(ROOT / "docs").parts and p != ROOT / "docs" / "testing.md"
)


def python_blocks(page):
    """``(where, code, expected_output_or_None)`` for each ```python block of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    fences = list(FENCE.finditer(text))
    blocks = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        after = fences[i + 1] if i + 1 < len(fences) else None
        output = None
        if after is not None and after.group(1) == "" and not text[fence.end() : after.start()].strip():
            output = after.group(2)
        where = f"{page.relative_to(ROOT).as_posix()}:{text.count(chr(10), 0, fence.start()) + 1}"
        blocks.append((where, fence.group(2), output))
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]


def test_the_pages_have_their_examples():
    assert python_blocks(ROOT / "README.md")  # the front page keeps a runnable example
    assert len(PAGES) >= 10 and all(p.is_relative_to(ROOT / "docs") for p in PAGES[1:])  # the guide was found
    assert len(BLOCKS) >= 8  # the extraction found the blocks (a changed fence style would hide them all)
    assert any("resnet18.pth" in code for _, code, _ in BLOCKS)
    assert any("features.zarr" in code for _, code, _ in BLOCKS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding the files the examples read, made as the pages say."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    directory = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), directory / "resnet18.pth")
    return directory


def make_embed_outputs(directory):
    """``features.zarr`` and ``predictions.parquet``, as the README's ``npresnet embed`` command makes them."""
    pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    pytest.importorskip("distributed")
    if (directory / "features.zarr").exists():
        return
    import numpy as np
    from PIL import Image

    photos = directory / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    npresnet.distributed.embed(
        str(photos),
        "resnet18",
        directory / "resnet18.pth",
        features=directory / "features.zarr",
        predictions=directory / "predictions.parquet",
        n_workers=1,
        processes=False,
        batch_size=2,
    )


def run(code, cwd):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )


@pytest.mark.parametrize("where,code,output", BLOCKS, ids=[where for where, _, _ in BLOCKS])
def test_readme_block_runs(workdir, where, code, output):
    if "features.zarr" in code:
        make_embed_outputs(workdir)
    tests = re.findall(r"^def (test_\w+)\(", code, re.M)
    if tests:  # a block that defines a test: run it as pytest would, and print how it fails
        pytest.importorskip("hypothesis")
        report = "except AssertionError as err:\n    print('AssertionError:', str(err).splitlines()[0])\n"
        code += "".join(f"\ntry:\n    {name}()\n{report}" for name in tests)
    proc = run(code, workdir)
    assert proc.returncode == 0, f"{where}:\n{proc.stderr[-3000:]}"
    if output is not None:
        assert proc.stdout == output, f"{where} prints\n{proc.stdout}\nnot\n{output}"
    if tests:  # the README's test passes (it checks torch's conv2d): nothing reported
        assert "AssertionError" not in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "expression", ["npresnet.fast.fuse", "npresnet.summary.summarize", "npresnet.distributed.embed"]
)
def test_submodules_the_readme_calls_work_after_import_npresnet(expression):
    """The README calls these after ``import npresnet`` alone; they used to need an explicit submodule import."""
    if "distributed" in expression:
        pytest.importorskip("distributed")
    proc = run(f"import npresnet; print(callable({expression}))", ROOT)
    assert proc.returncode == 0 and proc.stdout == "True\n", proc.stderr[-2000:]


def test_import_npresnet_loads_no_tool_dependency():
    code = (
        "import sys, npresnet; print(sorted(m for m in ('PIL', 'dask', 'torch', 'zarr', 'scipy') if m in sys.modules))"
    )
    proc = run(code, ROOT)
    assert proc.returncode == 0 and proc.stdout == "[]\n", proc.stdout + proc.stderr


# Examples known to fail, in modules this test does not own; strict, so a fix turns them into an error to remove here.
KNOWN_FAILURES: dict[str, str] = {}  # module -> why its docstring examples fail (a strict xfail)


def doctest_modules():
    names = ["npresnet"] + [m.name for m in pkgutil.walk_packages(npresnet.__path__, "npresnet.")]
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[n])) if n in KNOWN_FAILURES else n
        for n in names
        if ".cuda" not in n and "_emulation" not in n
    ]


@pytest.mark.parametrize("name", doctest_modules())
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:  # an optional extra that is not installed
        pytest.skip(f"{name}: {err}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # each example sees a copy of its module's globals, as doctest's own
        if test.filename and not os.path.abspath(test.filename).startswith(str(ROOT / "npresnet")):
            continue  # re-exported from another package
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
