"""Reconciliation: nothing the factory waits on falls through, whatever was missed.

Events can be missed (the bridge was down, the WebSocket dropped, a webhook was lost), the
database can be lost, and a crash can leave a decision half sent. The :class:`Reconciler`
repairs all three by comparing the factory's truth with the store:

- **at start** (before the event processor handles any backlog):

  1. when the store knows no task, or knows open tasks without a message, the bot's own recent
     messages in the tasks channel are read (``RECONCILE_HISTORY_LIMIT``, newest first) and the
     task → message map is rebuilt from them (:class:`bot.reconcile.rebuild.ChannelRebuild`): the
     ``custom_id`` of a task message's buttons is ``fb:t:<action>:<task id>`` and its embed
     footer is ``task <task id>`` (a decided message has no buttons left); a batch message
     (``fb:b:…`` components, footer ``… batch <batch id>``) adopts the items listed by its
     ``fb:b:pick:<batch id>`` select (else every open task whose id appears in it) and its
     lost batch row is recreated. Nothing is posted before this is done;
  2. decisions a crash left in flight are re-sent with their original ``Idempotency-Key``
     (:meth:`bot.bridge.Bridge.resume_decision`): 200 or 409 both settle them;

- **at start, after every WebSocket (re)subscription and every ``RECONCILE_INTERVAL_SECONDS``**
  (:meth:`Reconciler.reconcile`): the factory's open tasks — ``GET /v1/tasks?status=<s>``
  (every page) for each open status, ``pending``, ``claimed``, ``in_progress``, ``expired`` and
  ``escalated`` (contract §1.4 ``TaskStatus``; the endpoint takes one status, §1.5), merged each
  task once (:class:`bot.reconcile.snapshot.OpenSnapshot`) — are compared with the store. An open
  task without a message is shown (posted once: the compare-and-set of
  :meth:`bot.bridge.Bridge.post_single` guarantees one message per task even while the event
  processor shows the same task), whatever its status: a task created while the bridge was
  away and escalated or expired since is the most urgent of all; an open task whose snapshot
  changed has its message brought up to date; a task the store has open but the factory no
  longer lists as open is read with ``GET /v1/tasks/{id}`` and its message brought up to date (a
  decision made while the bridge was away is shown). A claim counts as an acknowledgement. A
  task that has a message never gets a second one.

Idempotency across intakes: a webhook and a WebSocket frame of the same event carry different
ids, so both may be stored; the bridge acts on the content once (content fingerprint, see
:meth:`bot.store.Store.record_event`), and whatever path shows a task — webhook, WebSocket or
reconciliation — goes through the same per-task compare-and-set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apscheduler.triggers.interval import IntervalTrigger

from bot.factory.client import FactoryError, FactoryUnavailable
from bot.reconcile.rebuild import ChannelRebuild
from bot.reconcile.snapshot import OpenSnapshot
from escalation.models import Task

if TYPE_CHECKING:
    import discord
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.bridge import Bridge
    from bot.store import TrackedTask

__all__ = ["RECONCILE_JOB_ID", "ReconcileReport", "Reconciler"]

#: The APScheduler job that asks for the periodic pass.
RECONCILE_JOB_ID = "reconcile"

#: Tasks read from the store at once by a pass (one read per chunk, not one per task).
READ_CHUNK = 500

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one reconciliation pass did (counts of tasks)."""

    #: open tasks the factory listed (every open status, each task once)
    pending: int = 0
    posted: int = 0
    updated: int = 0
    checked: int = 0
    #: open tasks the factory no longer has (404 / 410): closed (``Bridge.task_gone``)
    gone: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Reconciler:
    """The reconciliation feature (``start``/``stop`` hooks of :class:`bot.app.BridgeApp`).

    Parameters
    ----------
    bridge:
        The bridge (store, factory client, notifier, settings).
    client:
        The Discord client (reads the tasks channel's history).
    interval_seconds:
        ``RECONCILE_INTERVAL_SECONDS``: seconds between periodic passes.
    history_limit:
        ``RECONCILE_HISTORY_LIMIT``: messages of the tasks channel read to rebuild the map
        (0: never).
    scheduler:
        The process's APScheduler (shared with the ladder's timers); ``None``: the reconciler
        makes and runs its own. Its :class:`~apscheduler.triggers.interval.IntervalTrigger`
        job only asks for a pass (:meth:`trigger`): one worker runs the passes, so a long pass
        is never run twice at once and a pass asked for meanwhile runs right after it.
    first_pass_after:
        Awaited before the first pass that lists the factory in the background (the ladder's
        :meth:`~bot.ladder.LadderRuntime.armed`): parsing 100,000 open tasks competes with
        arming their timers for the one event loop, and the timers of overdue steps come
        first (``bench restart``). Its failure is logged and the pass runs anyway.
    """

    def __init__(
        self,
        bridge: Bridge,
        client: discord.Client,
        *,
        interval_seconds: float,
        history_limit: int,
        scheduler: AsyncIOScheduler | None = None,
        first_pass_after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bridge = bridge
        self.interval_seconds = interval_seconds
        self.rebuild = ChannelRebuild(bridge, client, history_limit=history_limit)
        self._first_pass_after = first_pass_after
        self._own_scheduler = scheduler is None
        if scheduler is None:
            from bot.ladder.timers import make_scheduler

            scheduler = make_scheduler()
        self.scheduler = scheduler
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._leftover: set[str] = set()
        #: Completed passes (tests and logs).
        self.passes = 0
        self.last_report: ReconcileReport | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Rebuild the message map if needed, resume decisions, start the passes.

        Called by :meth:`bot.app.BridgeApp.start` once Discord is ready and before the event
        processor starts: the task → message map is rebuilt before anything can be posted,
        and decisions left in flight are re-sent. The factory's open tasks are listed
        here only when the map needs rebuilding (the first pass then reuses them); otherwise
        the first pass lists them in the background, so that the processor need not wait
        for 100,000 open tasks to be listed (≈ 40 s at a restart, bench/restart.py). A
        failure here is logged, never fatal: the loop tries again.
        """
        started = time.time()
        snapshot: OpenSnapshot | None = None
        try:
            needed = await self.rebuild.needed()
        except Exception:
            log.exception("could not tell whether the task → message map needs rebuilding")
            needed = False
        if needed:
            try:  # compact, listed a page at a time (100,000 open tasks: bench/ladders.py)
                snapshot = await OpenSnapshot.listed(self.bridge.factory)
            except (FactoryError, FactoryUnavailable) as exc:
                log.warning("start-up reconciliation: open tasks not listed (%s)", exc)
            try:
                await self.rebuild.rebuild(snapshot)
            except Exception:
                log.exception("rebuilding the task → message map from the channel failed")
        try:
            inflight = await self.bridge.store.inflight_decisions()
            self._leftover = {
                t.task_id
                for t in inflight
                if t.inflight_at is None or t.inflight_at.timestamp() < started
            }
            await self.resume_inflight()
        except Exception:
            log.exception("re-sending decisions left in flight failed")
        self._task = asyncio.create_task(self._loop(snapshot), name="reconciler")
        self.scheduler.add_job(
            self.trigger,
            IntervalTrigger(seconds=self.interval_seconds),
            id=RECONCILE_JOB_ID,
            replace_existing=True,
        )
        if not self.scheduler.running:
            self.scheduler.start()

    async def stop(self) -> None:
        """Stop the periodic passes (a pass in progress is cancelled; the next start redoes
        it)."""
        with contextlib.suppress(Exception):  # already gone with a scheduler shut down
            self.scheduler.remove_job(RECONCILE_JOB_ID)
        if self._own_scheduler and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def trigger(self) -> None:
        """Ask for a pass now (after a WebSocket reconnect); passes never overlap."""
        self._wake.set()

    async def _loop(self, snapshot: OpenSnapshot | None = None) -> None:
        if snapshot is None and self._first_pass_after is not None:
            try:
                await self._first_pass_after()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("waiting for the ladder's arming failed; reconciling anyway")
        while True:
            self._wake.clear()
            try:
                await self.reconcile(snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "reconciliation pass failed; next one in %.0fs", self.interval_seconds
                )
            snapshot = None
            await self._wake.wait()  # the interval job or a WebSocket (re)subscription

    # ------------------------------------------------------------------ decisions in flight
    async def resume_inflight(self) -> int:
        """Re-send the decisions found in flight at start (same ``Idempotency-Key``).

        Returns how many were settled (confirmed, or decided by someone else). Those the
        factory could not be reached for stay in flight and are tried on every pass.
        """
        settled = 0
        store = self.bridge.store
        for tracked in await store.inflight_decisions():
            if tracked.task_id not in self._leftover:
                continue  # a decision being sent right now by this process
            outcome = await self.bridge.resume_decision(tracked)
            log.info("re-sent decision in flight on %s: %s", tracked.task_id, outcome.kind)
            fresh = await store.get_task(tracked.task_id)
            if fresh is None or fresh.inflight_key != tracked.inflight_key:
                self._leftover.discard(tracked.task_id)  # settled, or refused and cleared
                settled += outcome.kind in ("done", "conflict")
        self._leftover &= {t.task_id for t in await store.inflight_decisions()}
        return settled

    # ------------------------------------------------------------------ reconcile
    async def reconcile(
        self, pending: Sequence[Task] | OpenSnapshot | None = None
    ) -> ReconcileReport:
        """One pass: compare the factory's open tasks with the store and repair.

        Parameters
        ----------
        pending:
            The factory's open tasks when already listed (the start-up snapshot); listed
            otherwise with ``GET /v1/tasks?status=<s>`` (every page) for each open status
            (:meth:`bot.reconcile.snapshot.OpenSnapshot.listed`).

        Returns
        -------
        ReconcileReport
            Counts of open tasks seen, messages posted, messages brought up to date and
            open tasks re-read. When the factory cannot be listed the pass changes nothing.

        Raises
        ------
        FactoryUnavailable, FactoryError
            When a ``GET /v1/tasks?status=<s>`` fails (the loop logs it and tries again).
        """
        async with self._lock:
            started = time.monotonic()
            report = ReconcileReport()
            bridge = self.bridge
            store = bridge.store
            if self._leftover:
                await self.resume_inflight()
            if pending is None:
                pending = await OpenSnapshot.listed(bridge.factory)
            elif not isinstance(pending, OpenSnapshot):
                pending = OpenSnapshot(pending)
            report.pending = len(pending)
            for chunk in pending.chunks(READ_CHUNK):
                await self._reconcile_pending(chunk, report)
            open_ids = [i for i in await store.open_task_ids() if i not in pending]
            for start in range(0, len(open_ids), READ_CHUNK):
                for tracked in await store.tasks_by_ids(open_ids[start : start + READ_CHUNK]):
                    await self._recheck_open(tracked, report)
            report.seconds = time.monotonic() - started
            self.passes += 1
            self.last_report = report
            if report.posted or report.updated or report.gone or report.failed:
                await store.audit(
                    actor_name="system",
                    via="system",
                    action="reconcile",
                    outcome="failed" if report.failed else "ok",
                    detail=(
                        f"{report.pending} open, {report.posted} posted, "
                        f"{report.updated} updated, {report.checked} re-read, "
                        f"{report.gone} gone, {len(report.failed)} failed"
                    ),
                )
            log.info(
                "reconciled: %d open, %d posted, %d updated, %d re-read, %d gone, %d failed"
                " (%.2fs)",
                report.pending,
                report.posted,
                report.updated,
                report.checked,
                report.gone,
                len(report.failed),
                report.seconds,
            )
            return report

    async def _reconcile_pending(
        self, chunk: list[tuple[str, str]], report: ReconcileReport
    ) -> None:
        """Show or bring up to date each of these open tasks (``(id, JSON)``, part of
        :meth:`reconcile`).

        The store is read for the whole chunk at once, as text (one read per
        :data:`READ_CHUNK` tasks, not one per task: 100,000 open tasks at start, bench/ladders.py):
        a task shown whose stored JSON is the factory's, or that is decided, needs nothing.
        Any other is read again on its own and compared as a model just before it is acted
        on.
        """
        bridge = self.bridge
        store = bridge.store
        stored = await store.task_payloads([task_id for task_id, _ in chunk])
        for task_id, text in chunk:
            payload, has_message, decided = stored.get(task_id, ("", False, False))
            if has_message and (decided or payload == text):
                continue  # shown and up to date: the common case
            try:
                task = Task.model_validate_json(text)
                known = await store.get_task(task_id)
                if known is None or not known.has_message:
                    if known is None and task.claimed_by:
                        # claimed before the bridge ever saw it: shown acknowledged, as the
                        # task.claimed event would have it (a claim is an acknowledgement)
                        await bridge.apply_factory_task(task)
                        shown = await store.get_task(task_id)
                    else:
                        shown = await bridge.show_task(task)
                    if shown is not None and shown.has_message:
                        report.posted += 1
                elif known.task != task and not known.is_decided:
                    await bridge.apply_factory_task(task)
                    report.updated += 1
            except Exception as exc:  # one task must not stop the pass
                log.warning("reconcile: task %s not shown: %r", task_id, exc)
                report.failed.append(task_id)

    async def _recheck_open(self, tracked: TrackedTask, report: ReconcileReport) -> None:
        """Re-read at the factory a task the store has open but the factory no longer lists
        as open, and apply what it says (part of :meth:`reconcile`)."""
        bridge = self.bridge
        report.checked += 1
        try:
            fresh = await bridge.factory.get_task(tracked.task_id)
        except FactoryError as exc:
            if exc.status in (404, 410):  # the factory no longer has it: close it here too
                try:
                    await bridge.task_gone(
                        tracked.task_id, f"the factory answers {exc.status} for it"
                    )
                    report.gone += 1
                except Exception as failure:
                    log.warning("reconcile: task %s not closed: %r", tracked.task_id, failure)
                    report.failed.append(tracked.task_id)
                return
            log.warning("reconcile: task %s not readable: %s", tracked.task_id, exc)
            report.failed.append(tracked.task_id)
            return
        except FactoryUnavailable as exc:
            log.warning("reconcile: factory unavailable: %s", exc)
            report.failed.append(tracked.task_id)
            return
        try:
            if not tracked.has_message and fresh.decision is None:
                await bridge.show_task(fresh)  # open (claimed …) and never shown
            elif fresh != tracked.task:
                await bridge.apply_factory_task(fresh)
                report.updated += 1
        except Exception as exc:
            log.warning("reconcile: task %s not updated: %r", tracked.task_id, exc)
            report.failed.append(tracked.task_id)
