"""The wheel carries the schema migrations (Alembic's env.py, script template, revisions)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    [wheel] = list(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = "bot/store/migrations/"
    revisions = sorted((ROOT / migrations / "versions").glob("*.py"))
    assert revisions, "no revisions found in the checkout"
    expected = {f"{migrations}env.py", f"{migrations}script.py.mako"} | {
        f"{migrations}versions/{p.name}" for p in revisions
    }
    assert expected <= names, sorted(expected - names)
