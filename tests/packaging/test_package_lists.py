"""Every top-level package of the project is shipped, type-checked and layered.

A package added at the top (as ``batching/`` was, out of ``escalation/``) must appear in the
wheel (``[tool.hatch.build.targets.wheel] packages``), in mypy's ``packages`` and in
import-linter's ``root_packages``; the benchmarks (``bench/``) are type-checked but not shipped.
The Dockerfile side (every wheel package copied) is checked in ``test_dockerfile.py``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Top-level packages that are not part of the product.
NOT_SHIPPED = frozenset({"bench"})


def pyproject() -> dict[str, Any]:
    """The parsed ``pyproject.toml``."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def top_level_packages() -> set[str]:
    """Directories at the project root holding an ``__init__.py`` (tests/ has none)."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py")}


def test_every_top_level_package_is_in_the_wheel() -> None:
    wheel = set(pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert wheel == top_level_packages() - NOT_SHIPPED


def test_every_top_level_package_is_type_checked() -> None:
    assert set(pyproject()["tool"]["mypy"]["packages"]) == top_level_packages()


def test_every_shipped_package_is_under_the_import_contracts() -> None:
    roots = set(pyproject()["tool"]["importlinter"]["root_packages"])
    assert roots == top_level_packages() - NOT_SHIPPED


def test_the_pure_cores_are_forbidden_the_adapters() -> None:
    forbidden = {
        tuple(c["source_modules"]): set(c["forbidden_modules"])
        for c in pyproject()["tool"]["importlinter"]["contracts"]
        if c["type"] == "forbidden"
    }
    adapters = {"bot", "sandbox", "discord", "twilio", "httpx", "aiohttp", "sqlalchemy"}
    assert forbidden[("escalation",)] >= adapters | {"batching"}
    assert forbidden[("batching",)] >= adapters
