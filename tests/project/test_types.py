"""The type checker's configuration: strict on every module of npresnet, nothing exempted.

CI runs ``mypy npresnet`` (``.ci/run``); this guards the configuration it reads, so that a
module cannot quietly leave the check through an override.
"""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _mypy_config():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mypy"]


def test_mypy_is_strict_on_the_whole_package():
    config = _mypy_config()
    assert config["strict"] is True
    assert config["packages"] == ["npresnet"]


def test_no_npresnet_module_is_exempt_from_the_check():
    relaxing = {"ignore_errors", "disallow_untyped_defs", "disallow_incomplete_defs", "check_untyped_defs", "strict"}
    for override in _mypy_config().get("overrides", []):
        modules = override["module"]
        modules = [modules] if isinstance(modules, str) else modules
        ours = [m for m in modules if m == "npresnet" or m.startswith("npresnet.")]
        assert not ours or not relaxing & override.keys(), f"mypy override relaxes {ours}: {override}"
