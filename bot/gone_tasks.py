"""Tasks the factory no longer has: closed here too, so nothing escalates a ghost.

A task the bridge has open whose ``GET /v1/tasks/{id}`` answers 404 or 410 (deleted at the
factory without an event, contract §1.5) would otherwise stay open for ever: its buttons live,
its ladder paging people for a decision nobody can make. Reconciliation
(:mod:`bot.reconcile.reconciler`) and a decision's read back (:mod:`bot.decision_send`) close
it with :func:`close_gone`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from bot.actions import Actions
from bot.decision_context import Escalation
from bot.store import GONE, Store, TrackedTask

__all__ = ["GoneBoard", "close_gone"]

log = logging.getLogger(__name__)


class GoneBoard(Protocol):
    """What closing a task needs of the bridge (:class:`bot.bridge.Bridge`)."""

    store: Store
    actions: Actions
    escalation: Escalation
    clock: Callable[[], datetime]

    async def refresh_message(self, task_id: str) -> None:
        """Re-render the task's message from the store."""
        ...


async def close_gone(bridge: GoneBoard, task_id: str, reason: str) -> TrackedTask | None:
    """Close an open task the factory no longer has: store it closed
    (:meth:`bot.store.Store.close_gone`, decision :data:`~bot.store.GONE`), audit
    ``task.gone``, wake whoever waits for a decision on it, show it on its message (no
    buttons) and stop its ladder. A task decided meanwhile is left alone.

    Parameters
    ----------
    bridge:
        The bridge (store, messages, ladder hooks).
    task_id:
        The task.
    reason:
        Why, shown on its message and in the audit (e.g. ``the factory answers 404 for it``).

    Returns
    -------
    TrackedTask | None
        The task as stored now; ``None`` for a task the bridge does not know.
    """
    known = await bridge.store.get_task(task_id)
    if known is None or known.is_decided:
        return known
    tracked = await bridge.store.close_gone(task_id, reason=reason, at=bridge.clock())
    if tracked is None or tracked.decision != GONE:
        return tracked
    log.warning("task %s is no longer at the factory (%s): closed", task_id, reason)
    await bridge.store.audit(
        actor_name="system",
        via="system",
        action="task.gone",
        task_id=task_id,
        outcome="ok",
        detail=reason[:500],
    )
    bridge.actions._settle(task_id)
    await bridge.refresh_message(task_id)
    await bridge.escalation.task_changed(task_id)
    return tracked
