"""The Dockerfile cannot be built here (no Docker engine); check what can be checked."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


def test_dockerfile_uses_a_slim_python_base_matching_the_package() -> None:
    steps = instructions()
    assert steps[0][0] == "FROM" and "python:3.11-slim" in steps[0][1]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_dockerfile_installs_this_package_and_runs_as_non_root() -> None:
    steps = instructions()
    runs = [args for kw, args in steps if kw == "RUN"]
    copies = [args for kw, args in steps if kw == "COPY"]
    assert any("pip install ." in r for r in runs)
    assert any(c.startswith("pyproject.toml") for c in copies)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    for package in packages:
        assert any(c.startswith(package) for c in copies), f"{package} is not copied"
    users = [args for kw, args in steps if kw == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_leaves_the_emulators_out_of_the_image() -> None:
    runs = " ".join(args for kw, args in instructions() if kw == "RUN")
    assert "rm -rf ./sandbox" in runs and "sandbox.__file__" in runs


def test_dockerfile_runs_the_service_with_healthcheck_and_volume() -> None:
    steps = dict(instructions())
    assert steps["CMD"] == '["factory-bridge", "run"]'
    assert "/healthz" in steps["HEALTHCHECK"]
    assert "/data" in steps["VOLUME"]
    env = steps["ENV"]
    assert "DATABASE_URL=sqlite:////data/bridge.db" in env
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["factory-bridge"] == "bot.cli:main"
