"""The CI script fails when any of its steps fails, and runs the README's test command.

``.ci/run`` runs under ``set -euo pipefail``, but ``set -e`` does not stop at a failure on the
left of ``&&``: a line ``ruff check . && ruff format --check .`` let a failing ``ruff check``
through, the run going on and ending green. Each step is therefore its own line, or a
``( … && … )`` subshell, whose failure does stop the run.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "run"


def _statements() -> list[str]:
    """The script's lines with comments, blank lines and continuation lines' breaks removed."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_no_step_can_fail_unnoticed_on_the_left_of_and():
    unguarded = [line for line in _statements() if "&&" in line and not line.startswith(("if ", "("))]
    assert unguarded == [], f".ci/run: a failure left of && would not stop the run: {unguarded}"


def test_the_readme_test_command_runs_in_ci():
    readme = (ROOT / "README.md").read_text()
    command = 'pip install -e ".[test]" && python -m pytest -n 2'
    assert command in readme
    assert f"({command})" in _statements()


def test_a_subshell_stops_the_run_where_a_bare_and_list_does_not():
    """The shell behaviour the two tests above rely on (bash, ``set -euo pipefail``)."""
    bare = subprocess.run(["bash", "-c", "set -euo pipefail; false && true; echo went on"], capture_output=True)
    sub = subprocess.run(["bash", "-c", "set -euo pipefail; (false && true); echo went on"], capture_output=True)
    assert bare.stdout == b"went on\n"
    assert sub.returncode == 1 and sub.stdout == b""
