"""Every Python example of docs/testing.md runs; one marked ``# needs: LIB`` is skipped (and reported
as skipped) where LIB is missing, or for CuPy where no GPU is usable."""

import importlib.util
import pathlib
import re

import pytest

from npresnet.backend import available_backends

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "testing.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_its_examples():
    assert len(BLOCKS) >= 7


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("code", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_example_runs(code):
    need = re.match(r"# needs: (\w+)", code)
    if need:
        lib = need.group(1)
        if importlib.util.find_spec(lib) is None:
            pytest.skip(f"{lib} is not installed")
        if lib == "cupy" and "cupy" not in available_backends():
            pytest.skip("CuPy cannot run here (no usable GPU)")
    exec(compile(code, str(PAGE), "exec"), {"__name__": "docs_example"})
