"""No module of the product is over 500 lines, except the emulators (issue: "easy to enter").

A module that grows past it holds more than one concern: split it where the concern changes
(as ``bot/reconcile/rebuild.py`` left ``reconciler.py``). The emulators in ``sandbox/`` speak
whole external APIs (Discord, the factory) and are exempt; so are the benchmarks and tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500
PACKAGES = ("bot", "escalation", "batching", "sandbox")
#: The emulators of external services (each mirrors one published API).
EXEMPT = frozenset(
    {"discord_emulator.py", "factory_emulator.py", "discord_spec.py", "twilio_emulator.py"}
)


def modules() -> list[Path]:
    """The product's Python modules, emulators excepted."""
    return sorted(
        p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if not (package == "sandbox" and p.name in EXEMPT)
    )


def test_the_product_has_modules_to_check() -> None:
    assert len(modules()) > 50


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LIMIT, f"{path.relative_to(ROOT)} has {lines} lines (limit {LIMIT})"
