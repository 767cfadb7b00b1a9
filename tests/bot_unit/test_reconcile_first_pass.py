"""The first background reconciliation pass waits for the ladder's arming.

At a restart with 100,000 open tasks, listing and parsing every pending task competes with
arming their timers for the one event loop; the timers of overdue steps come first
(``bench restart``). When the map needs no rebuilding, the first pass is in the background:
it starts only once ``first_pass_after`` (the ladder's ``armed``) has returned — and still
runs when that failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.reconcile import Reconciler, ReconcileReport


class Scheduler:
    """The parts of APScheduler's scheduler the reconciler uses."""

    running = True

    def add_job(self, *args: Any, **kwargs: Any) -> None:
        return None

    def remove_job(self, job_id: str) -> None:
        return None


class Store:
    """A store that knows tasks, all with messages, and no decision in flight."""

    async def count_tasks(self) -> int:
        return 1

    async def open_tasks_without_message(self) -> list[Any]:
        return []

    async def inflight_decisions(self) -> list[Any]:
        return []


class Bridge:
    store = Store()


def make_reconciler(first_pass_after: Any) -> tuple[Reconciler, list[object]]:
    reconciler = Reconciler(
        Bridge(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        interval_seconds=300,
        history_limit=100,
        scheduler=Scheduler(),  # type: ignore[arg-type]
        first_pass_after=first_pass_after,
    )
    passes: list[object] = []

    async def reconcile(pending: object = None) -> ReconcileReport:
        passes.append(pending)
        return ReconcileReport()

    reconciler.reconcile = reconcile  # type: ignore[method-assign]
    return reconciler, passes


async def settle() -> None:
    """Let every ready task run until none is left to run (no timer involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_first_background_pass_waits_until_the_ladder_is_armed() -> None:
    armed = asyncio.Event()
    reconciler, passes = make_reconciler(armed.wait)
    await reconciler.start()
    try:
        await settle()
        assert passes == []  # still arming: nothing listed
        armed.set()
        await settle()
        assert passes == [None]  # listed once armed
    finally:
        await reconciler.stop()


async def test_a_failed_arming_does_not_stop_reconciliation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failed() -> None:
        raise RuntimeError("arming failed")

    reconciler, passes = make_reconciler(failed)
    await reconciler.start()
    try:
        await settle()
        assert passes == [None]
        assert "reconciling anyway" in caplog.text
    finally:
        await reconciler.stop()
