"""The batching state machine: when routine tasks are posted, alone or as batch messages.

Timing rules (:class:`Batcher`)
-------------------------------
* **Group wait.** The first task of a key opens a pending group with deadline
  ``now + group_wait_seconds`` (setting ``BATCH_GROUP_WAIT_SECONDS``, default 30). Tasks of the
  key arriving before the deadline join it. At the deadline a group of one task becomes
  :class:`PostSingle` (the normal single-task message), a larger group :class:`PostBatch`.
* **Capacity.** A message holds at most ``max_items`` (default 20). A group that reaches
  ``max_items`` is posted at once, without waiting for its deadline; the next task opens a new
  group. This is what turns a burst into few, full messages: N routine tasks of one key arriving
  together give ``ceil(N / max_items)`` messages (with the default 20: 200 → 10). The Discord
  runtime (``bot/discord/batching_runtime.py``) sets ``max_items`` to 10,000 and shows a message
  in pages of 20, so that a burst of one kind is ONE message (README "Smart batching").
* **Group interval.** A posted batch message stays *open* for additions while it is younger than
  ``group_interval_seconds`` (setting ``BATCH_GROUP_INTERVAL_SECONDS``, default 300, counted from
  :meth:`Batcher.posted`, i.e. from when the message exists), still has undecided items and holds
  fewer than ``max_items``. New tasks of the key are then added to it with :class:`EditBatch`
  (the full item list). Otherwise the next task opens a new pending group with the normal wait.
  A batch whose post is not yet confirmed (between :class:`PostBatch` and
  :meth:`Batcher.posted`) also accepts additions; they are shown by the first edit after the post.
* **Edit coalescing.** Edits cost rate limit too, so additions are accumulated and one
  :class:`EditBatch` per message is emitted at most once per ``edit_coalesce_seconds``
  (default 2), counting the post itself as the first "edit": an addition at least that long
  after the previous edit is emitted at once, otherwise at ``previous + edit_coalesce_seconds``
  (reported by :meth:`Batcher.next_wakeup`). Edits only ever add items to the same message;
  no task moves between messages.
* **Decisions.** :meth:`Batcher.mark_decided` removes a task that is still waiting in a pending
  group (or an addition not yet shown) and marks a shown item decided; a message whose items are
  all decided is closed, and the next task of its key opens a new group.
* **Posted alone after all.** :meth:`Batcher.remove` takes back a task not shown yet whose
  :func:`batch_key` became ``None`` (escalated to critical or high, or guarded) and returns
  :class:`PostSingle` for it: README "Smart batching" posts those alone, at once.

Restarts and the adapter contract: see :mod:`batching`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batching.actions import Action, EditBatch, PostBatch, PostSingle
from batching.policy import BatchingPolicy
from batching.state import Batch as _Batch
from batching.state import Group as _Group
from batching.state import aware as _aware
from batching.state import from_iso as _from_iso
from batching.state import iso as _iso

__all__ = ["SNAPSHOT_VERSION", "Batcher"]

#: Version of the dict produced by :meth:`Batcher.snapshot`.
SNAPSHOT_VERSION = 1


class Batcher:
    """State machine deciding when routine tasks are posted, alone or as batch messages.

    The rules and the adapter contract are in the module docstring. The object is mutable but
    does no I/O and reads no clock: every method takes ``now``.

    Parameters
    ----------
    policy : BatchingPolicy, optional
        Timing and size; defaults to ``BatchingPolicy()``.
    """

    def __init__(self, policy: BatchingPolicy | None = None) -> None:
        self._policy = policy if policy is not None else BatchingPolicy()
        self._seq = 0
        self._groups: dict[str, _Group] = {}  # key -> pending group
        self._batches: dict[str, _Batch] = {}  # batch id -> batch still tracked
        self._open: dict[str, str] = {}  # key -> id of the batch accepting additions
        self._where: dict[str, str] = {}  # task id -> group id or batch id holding it

    @property
    def policy(self) -> BatchingPolicy:
        """The policy in force."""
        return self._policy

    # ------------------------------------------------------------------ events

    def add(self, task_id: str, key: str, now: datetime) -> list[Action]:
        """Take in a new routine task.

        Parameters
        ----------
        task_id : str
            The task's id. An id the batcher still holds is ignored (redelivery).
        key : str
            Its :func:`batch_key` (never ``None``: such tasks bypass the batcher).
        now : datetime
            Current time, aware UTC.

        Returns
        -------
        list of Action
            Whatever was due at ``now`` (as :meth:`tick`), then possibly a :class:`PostBatch`
            (this task filled its group) or an :class:`EditBatch` (it was added to an open
            message whose previous edit is at least ``edit_coalesce_seconds`` old).

        Raises
        ------
        ValueError
            If ``now`` is naive.
        """
        actions = self.tick(now)
        if task_id in self._where:
            return actions
        batch = self._accepting_batch(key, now)
        if batch is not None:
            batch.added.append(task_id)
            self._where[task_id] = batch.batch_id
            if batch.size >= self._policy.max_items:
                self._retire(batch)
            actions.extend(self._edit_if_due(batch, now))
            return actions
        group = self._groups.get(key)
        if group is None:
            group = _Group(self._new_id(task_id), key, now + self._policy.group_wait)
            self._groups[key] = group
        group.task_ids.append(task_id)
        self._where[task_id] = group.group_id
        if len(group.task_ids) >= self._policy.max_items:
            actions.append(self._flush(group))
        return actions

    def tick(self, now: datetime) -> list[Action]:
        """Carry out everything due at ``now``: ended group waits and coalesced edits.

        Parameters
        ----------
        now : datetime
            Current time, aware UTC.

        Returns
        -------
        list of Action
            :class:`PostSingle` / :class:`PostBatch` for groups whose deadline is ``<= now``
            and :class:`EditBatch` for messages whose coalesced edit is due, ordered by due time.

        Raises
        ------
        ValueError
            If ``now`` is naive.
        """
        _aware(now)
        due: list[tuple[datetime, int, Action]] = []
        for group in [g for g in self._groups.values() if g.deadline <= now]:
            due.append((group.deadline, len(due), self._flush(group)))
        for batch in list(self._batches.values()):
            edit_at = self._edit_due_at(batch)
            if edit_at is not None and edit_at <= now:
                due.extend((edit_at, len(due), a) for a in self._edit_if_due(batch, now))
            if (
                self._open.get(batch.key) == batch.batch_id
                and batch.posted_at is not None
                and now >= batch.posted_at + self._policy.group_interval
            ):
                self._retire(batch)
        due.sort(key=lambda item: (item[0], item[1]))
        return [action for _, _, action in due]

    def posted(self, batch_id: str, message_ref: str, now: datetime) -> list[Action]:
        """Record that the message of a :class:`PostBatch` now exists.

        Its group interval and its edit coalescing start at ``now``. A second report for the
        same batch only updates ``message_ref``; an unknown id is ignored.

        Parameters
        ----------
        batch_id : str
            From the :class:`PostBatch`.
        message_ref : str
            The adapter's reference to the message (e.g. ``"channel_id/message_id"``); echoed in
            :class:`EditBatch`.
        now : datetime
            When the message was created, aware UTC.

        Returns
        -------
        list of Action
            Whatever was due at ``now`` (as :meth:`tick`), plus an :class:`EditBatch` at once
            when additions are waiting and ``edit_coalesce_seconds`` is 0.

        Raises
        ------
        ValueError
            If ``now`` is naive.
        """
        actions = self.tick(now)
        batch = self._batches.get(batch_id)
        if batch is None:
            return actions
        batch.message_ref = message_ref
        if batch.posted_at is None:
            batch.posted_at = now
            batch.last_edit_at = now
        actions.extend(self._edit_if_due(batch, now))
        self._drop_if_done(batch)
        return actions

    def mark_decided(self, task_id: str, now: datetime) -> list[Action]:
        """Record that a task was decided.

        A task still waiting in a pending group, or an addition not yet shown, is removed (it
        will never be posted); a shown item is marked decided. A message whose items are all
        decided is closed for additions. Unknown ids (singles, forgotten messages) are ignored.

        Parameters
        ----------
        task_id : str
            The decided task.
        now : datetime
            Current time, aware UTC.

        Returns
        -------
        list of Action
            Whatever was due at ``now`` (as :meth:`tick`); a decision itself causes no action.

        Raises
        ------
        ValueError
            If ``now`` is naive.
        """
        actions = self.tick(now)
        batch = self._batches.get(self._where.get(task_id, ""))
        if not self._take_out(task_id) and batch is not None:
            batch.decided.add(task_id)
            if not batch.has_undecided:
                self._retire(batch)
        return actions

    def remove(self, task_id: str, now: datetime) -> list[Action]:
        """Take back a task not shown yet whose :func:`batch_key` became ``None``.

        A task escalated to critical or high, or become guarded, while it waits is posted
        alone at once (README "Smart batching"), not with its group.

        Parameters
        ----------
        task_id : str
            The task.
        now : datetime
            Current time, aware UTC.

        Returns
        -------
        list of Action
            Whatever was due at ``now`` (as :meth:`tick`), then :class:`PostSingle` for the
            task if it waited in a pending group or as an addition not yet shown (a task
            already shown or unknown is left as it is).
        """
        actions = self.tick(now)
        if self._take_out(task_id):
            actions.append(PostSingle(task_id))
        return actions

    # ------------------------------------------------------------------ queries

    def holds(self, task_id: str) -> bool:
        """Whether ``task_id`` waits in a pending group or is an item of a batch."""
        return task_id in self._where

    def next_wakeup(self) -> datetime | None:
        """When :meth:`tick` must be called next.

        Returns
        -------
        datetime or None
            The earliest group deadline or coalesced-edit time, ``None`` when nothing is
            scheduled. It may be in the past (call :meth:`tick` at once).
        """
        times = [g.deadline for g in self._groups.values()]
        for batch in self._batches.values():
            edit_at = self._edit_due_at(batch)
            if edit_at is not None:
                times.append(edit_at)
        return min(times, default=None)

    def unconfirmed_posts(self) -> list[PostBatch]:
        """Batches emitted as :class:`PostBatch` whose :meth:`posted` has not been reported.

        Returns
        -------
        list of PostBatch
            The original post actions; after a restart the adapter re-issues those it has no
            stored message for and reports the others with :meth:`posted`.
        """
        return [
            PostBatch(b.batch_id, b.key, tuple(b.shown))
            for b in self._batches.values()
            if b.posted_at is None
        ]

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """The whole state as a JSON-safe dict (datetimes as ISO 8601 strings).

        Returns
        -------
        dict
            ``{"version", "seq", "groups": [...], "batches": [...]}``; feed it to
            :meth:`from_snapshot`. The policy is configuration and is not included.
        """
        return {
            "version": SNAPSHOT_VERSION,
            "seq": self._seq,
            "groups": [
                {
                    "id": g.group_id,
                    "key": g.key,
                    "deadline": _iso(g.deadline),
                    "task_ids": list(g.task_ids),
                }
                for g in self._groups.values()
            ],
            "batches": [
                {
                    "id": b.batch_id,
                    "key": b.key,
                    "shown": list(b.shown),
                    "added": list(b.added),
                    "decided": sorted(b.decided),
                    "posted_at": _iso(b.posted_at),
                    "last_edit_at": _iso(b.last_edit_at),
                    "message_ref": b.message_ref,
                    "open": self._open.get(b.key) == b.batch_id,
                }
                for b in self._batches.values()
            ],
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], policy: BatchingPolicy | None = None) -> Batcher:
        """Rebuild a batcher from :meth:`snapshot` output.

        Parameters
        ----------
        data : dict
            A snapshot.
        policy : BatchingPolicy, optional
            The policy to use from now on (defaults to ``BatchingPolicy()``).

        Returns
        -------
        Batcher
            A batcher in the saved state.

        Raises
        ------
        ValueError
            If the snapshot version is unknown or the data is malformed.
        """
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported batcher snapshot version {data.get('version')!r}")
        batcher = cls(policy)
        try:
            batcher._seq = int(data["seq"])
            for raw in data["groups"]:
                deadline = _from_iso(raw["deadline"])
                if deadline is None:
                    raise ValueError("group without deadline")
                group = _Group(str(raw["id"]), str(raw["key"]), deadline, list(raw["task_ids"]))
                batcher._groups[group.key] = group
                for task_id in group.task_ids:
                    batcher._where[task_id] = group.group_id
            for raw in data["batches"]:
                batch = _Batch(
                    batch_id=str(raw["id"]),
                    key=str(raw["key"]),
                    shown=list(raw["shown"]),
                    added=list(raw["added"]),
                    decided=set(raw["decided"]),
                    posted_at=_from_iso(raw["posted_at"]),
                    last_edit_at=_from_iso(raw["last_edit_at"]),
                    message_ref=raw["message_ref"],
                )
                batcher._batches[batch.batch_id] = batch
                if raw["open"]:
                    batcher._open[batch.key] = batch.batch_id
                for task_id in (*batch.shown, *batch.added):
                    batcher._where[task_id] = batch.batch_id
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed batcher snapshot: {exc}") from exc
        return batcher

    # ------------------------------------------------------------------ internals

    def _new_id(self, first_task_id: str) -> str:
        # Unique by the counter (persisted) and by the first task id (unique per task), so a
        # lost snapshot cannot make a new batch reuse the id of a stored message.
        self._seq += 1
        return f"b{self._seq}-{first_task_id}"

    def _flush(self, group: _Group) -> Action:
        """End a pending group: a single for one task, a new batch message otherwise."""
        del self._groups[group.key]
        if len(group.task_ids) == 1:
            (task_id,) = group.task_ids
            del self._where[task_id]
            return PostSingle(task_id)
        batch = _Batch(group.group_id, group.key, list(group.task_ids))
        self._batches[batch.batch_id] = batch
        previous = self._open.get(batch.key)
        if previous is not None and previous in self._batches:
            self._retire(self._batches[previous])
        if batch.size < self._policy.max_items:
            self._open[batch.key] = batch.batch_id
        return PostBatch(batch.batch_id, batch.key, tuple(batch.shown))

    def _accepting_batch(self, key: str, now: datetime) -> _Batch | None:
        """The open batch of ``key`` if it may take one more item at ``now``, else ``None``."""
        batch_id = self._open.get(key)
        if batch_id is None:
            return None
        batch = self._batches[batch_id]
        expired = (
            batch.posted_at is not None and now >= batch.posted_at + self._policy.group_interval
        )
        if expired or batch.size >= self._policy.max_items or not batch.has_undecided:
            self._retire(batch)
            return None
        return batch

    def _take_out(self, task_id: str) -> bool:
        """Remove a task waiting in a pending group or as an addition; ``False`` if it is not."""
        holder = self._where.get(task_id)
        group = next((g for g in self._groups.values() if g.group_id == holder), None)
        batch = self._batches.get(holder or "")
        if group is not None:
            group.task_ids.remove(task_id)
            if not group.task_ids:
                del self._groups[group.key]
        elif batch is not None and task_id in batch.added:
            batch.added.remove(task_id)
            if not batch.has_undecided:
                self._retire(batch)
        else:
            return False
        del self._where[task_id]
        return True

    def _retire(self, batch: _Batch) -> None:
        """Close a batch for additions; forget it once nothing more will be emitted for it."""
        if self._open.get(batch.key) == batch.batch_id:
            del self._open[batch.key]
        self._drop_if_done(batch)

    def _drop_if_done(self, batch: _Batch) -> None:
        if (
            self._open.get(batch.key) != batch.batch_id
            and batch.posted_at is not None
            and not batch.added
            and self._batches.pop(batch.batch_id, None) is not None
        ):
            for task_id in batch.shown:
                self._where.pop(task_id, None)

    def _edit_due_at(self, batch: _Batch) -> datetime | None:
        if not batch.added or batch.last_edit_at is None:
            return None
        return batch.last_edit_at + self._policy.edit_coalesce

    def _edit_if_due(self, batch: _Batch, now: datetime) -> list[Action]:
        """Emit the coalesced edit of ``batch`` if it has additions and its spacing allows."""
        edit_at = self._edit_due_at(batch)
        if edit_at is None or edit_at > now:
            return []
        batch.shown.extend(batch.added)
        batch.added.clear()
        batch.last_edit_at = now
        action = EditBatch(batch.batch_id, batch.key, tuple(batch.shown), batch.message_ref or "")
        self._drop_if_done(batch)
        return [action]
