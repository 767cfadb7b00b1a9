"""Which items of a batch action still need a message (re-read from the store).

Helpers of :mod:`bot.discord.batching_runtime`: a batch message only lists tasks that still
need a decision (README "Smart batching"), and every shown item's row points at its message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batching import Action, Batcher, EditBatch, PostBatch, PostSingle

if TYPE_CHECKING:
    from bot.store import Store

__all__ = ["leave_out", "mark_decided", "split_pending", "unshown_edits"]


async def split_pending(store: Store, action: PostBatch) -> tuple[list[str], list[str]]:
    """The items of a post still pending, and those decided or gone meanwhile (or unknown).

    Parameters
    ----------
    store : Store
        Where the task rows are re-read.
    action : PostBatch
        The post about to be made.

    Returns
    -------
    tuple of list of str
        ``(pending, left_out)``, each in the post's order.
    """
    rows = {r.task_id: r for r in await store.tasks_by_ids(action.task_ids)}
    pending = [
        t
        for t in action.task_ids
        if t in rows
        and not rows[t].is_decided
        # posted alone meanwhile (it became a deploy or urgent): not this message's item
        and not (rows[t].has_message and rows[t].batch_id != action.batch_id)
    ]
    return pending, [t for t in action.task_ids if t not in pending]


def mark_decided(task_ids: list[str]) -> Callable[[Batcher, datetime], list[Action]]:
    """A batcher step reporting ``task_ids`` decided (:meth:`Batcher.mark_decided`): items
    a message will not ask about (decided, gone, or shown elsewhere), so that a batch whose
    every item is settled closes instead of taking in later tasks.

    Parameters
    ----------
    task_ids : list of str
        The items.

    Returns
    -------
    callable
        The step, for ``BatchingRuntime._apply``.
    """

    def step(b: Batcher, now: datetime) -> list[Action]:
        return [a for t in task_ids for a in b.mark_decided(t, now)]

    return step


def leave_out(
    action: PostBatch, left_out: list[str], *, skip: list[bool], alone: list[str] | None = None
) -> Callable[[Batcher, datetime], list[Action]]:
    """A batcher step reporting ``left_out`` decided (:meth:`Batcher.mark_decided`).

    When no item of ``action`` is pending and no addition waits for its message, the post is
    not made: ``skip`` gets ``True`` and the batch is reported :meth:`Batcher.posted` with no
    message, which makes the batcher forget the closed batch. So it is when one item only is
    left and no addition waits: that task gets the normal single-task message (README "Smart
    batching": a task left alone), through a :class:`PostSingle`, not a batch of one.

    Parameters
    ----------
    action : PostBatch
        The post.
    left_out : list of str
        Its items decided or gone.
    skip : list of bool
        Receives whether the post is skipped (filled when the step runs).
    alone : list of str, optional
        Receives the task left alone, posted by the :class:`PostSingle` the step returns.

    Returns
    -------
    callable
        The step, for ``BatchingRuntime._apply``.
    """

    def step(b: Batcher, now: datetime) -> list[Action]:
        actions = [a for t in left_out for a in b.mark_decided(t, now)]
        batches: list[dict[str, Any]] = b.snapshot()["batches"]
        waiting = any(raw["added"] for raw in batches if raw["id"] == action.batch_id)
        rest = [t for t in action.task_ids if t not in left_out]
        single = rest if len(rest) == 1 and not waiting else []
        for task_id in single:  # out of the batch, as if decided: it is posted on its own
            actions.extend(b.mark_decided(task_id, now))
        skip.append(len(left_out) + len(single) == len(action.task_ids) and not waiting)
        if skip[-1]:
            actions.extend(b.posted(action.batch_id, "", now))
        actions.extend(PostSingle(task_id) for task_id in single)
        if alone is not None:
            alone.extend(single)
        return actions

    return step


async def unshown_edits(store: Store, batcher: Batcher) -> list[EditBatch]:
    """An edit again for each posted batch that shows an open task whose row has no message.

    A stop between saving an edit (the batcher counts its items as shown) and carrying it out
    leaves such rows; re-issuing the edit (idempotent) shows them.

    Parameters
    ----------
    store : Store
        Where the task rows are read.
    batcher : Batcher
        The restored batcher.

    Returns
    -------
    list of EditBatch
        One per batch to repair.
    """
    edits = []
    for raw in batcher.snapshot()["batches"]:
        if raw["posted_at"] is None:
            continue  # an unconfirmed post: confirmed or re-posted at start
        rows = await store.tasks_by_ids(raw["shown"])
        if any(not r.has_message and not r.is_decided for r in rows):
            shown = tuple(raw["shown"])
            edits.append(EditBatch(raw["id"], raw["key"], shown, raw["message_ref"] or ""))
    return edits
