"""The escalation ladder of a running bridge: the service, its timers and the bundler, wired.

The rules and the exactly-once step protocol live in the core (:mod:`escalation.service`,
driven through :mod:`escalation.ports`); this module connects them to the bridge:

* :class:`~bot.ladder.timers.WakeTimers` — APScheduler: every task's next wake-up in a heap,
  one ``DateTrigger`` job; the job only sets an event and a single worker runs
  :meth:`LadderRuntime.tick`, so a long step never makes APScheduler skip a run;
* a tick takes one step per due task (:meth:`escalation.service.LadderService.wake`, under
  the task's lock, at most :data:`MAX_CONCURRENT_TASKS` at once), waits for the steps to be
  claimed, then runs the :class:`~bot.ladder.bundles.Bundler` in the background;
* task messages are re-rendered off the steps' critical path (coalesced per task);
* at start, what a crash left is settled and every open task's wake-up is rebuilt from the
  store in bulk (:meth:`LadderRuntime.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.bridge import Bridge
from bot.keyed import KeyedLocks
from bot.ladder.adapters import BridgeDecider, RosterPeople, StoreAudit, StoreTasks
from bot.ladder.announcer import DiscordAnnouncer
from bot.ladder.bundles import Bundler
from bot.ladder.incident import incident_text
from bot.ladder.text import discord_timestamp
from bot.ladder.timers import WakeTimers, make_scheduler
from bot.sla_events import factory_announced
from bot.store import TrackedTask
from bot.store.ladder import LadderStepRow, LadderStore
from escalation.deliveries import reported_level
from escalation.notices import STEP_LABELS, NextStep, late_marker
from escalation.policy import StepKind
from escalation.ports import LadderTask, Messenger, Pager
from escalation.recipients import Person
from escalation.service import RETRY_DELAYS, STEP_VALUES, LadderService

__all__ = ["CLAIM_WAIT_SECONDS", "MAX_CONCURRENT_TASKS", "LadderRuntime"]

log = logging.getLogger(__name__)

#: At most this many tasks are processed at once (database pool, Discord pacing).
MAX_CONCURRENT_TASKS = 16

#: How long a wave of wake-ups waits for its steps to be claimed before the bundler runs.
CLAIM_WAIT_SECONDS = 5.0


class LadderRuntime:
    """The escalation ladder of a running bridge (implements ``bot.bridge.Escalation``).

    Parameters
    ----------
    bridge:
        The bridge (store, roster, policy, factory client, decisions, message refresh).
    messenger:
        Discord side (:class:`bot.discord.ladder_output.DiscordMessenger`, or a fake).
    pager:
        SMS and calls, or ``None`` without Twilio settings (those deliveries are ``skipped``).
    scheduler:
        An ``AsyncIOScheduler`` to share (one scheduler per process); one is made otherwise.
    clock:
        Current aware UTC time; the bridge's clock by default.
    retry_delays:
        Backoff between attempts of a failing delivery, seconds.
    step_taken:
        Called with ``(step, priority, late_seconds)`` for each step claimed (metrics).
    """

    def __init__(
        self,
        *,
        bridge: Bridge,
        messenger: Messenger,
        pager: Pager | None,
        scheduler: AsyncIOScheduler | None = None,
        clock: Callable[[], datetime] | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        step_taken: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.bridge = bridge
        self.settings = bridge.settings
        self.policy = bridge.policy
        self.messenger = messenger
        self.pager = pager
        self.ladder_store = LadderStore(bridge.store.db, on_audit=bridge.store.audit_written)
        self.clock = clock or bridge.clock
        self.retry_delays = tuple(retry_delays)
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler or make_scheduler()
        self.timers = WakeTimers(self.scheduler, self.clock, lambda: self.bundler.wake)
        self.roster = RosterPeople(bridge)
        self.announcer = DiscordAnnouncer(
            messenger,
            self.settings,
            report=self.incident_text,
            refresh=self._queue_refresh,
            announced=functools.partial(factory_announced, bridge.store),
            clock=self.clock,
        )
        self.service = LadderService(
            policy=self.policy,
            repository=self.ladder_store,
            tasks=StoreTasks(bridge.store),
            roster=self.roster,
            announcer=self.announcer,
            pager=pager,
            decider=BridgeDecider(bridge),
            audit=StoreAudit(bridge.store),
            alarm=self.timers,
            clock=self.clock,
            retry_delays=self.retry_delays,
            step_taken=step_taken,
        )
        self.bundler = Bundler(
            service=self.service,
            ladder_store=self.ladder_store,
            store=bridge.store,
            messenger=messenger,
            announcer=self.announcer,
            pager=pager,
            settings=self.settings,
            clock=self.clock,
            spawn=self._spawn,
            on_fallback=self.timers.kick.set,
        )
        self._locks: KeyedLocks[str] = KeyedLocks()  # only while a step runs
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_TASKS)
        # while the wake-ups are rebuilt the worker takes one task at a time: arming
        # 100,000 tasks must not starve behind a backlog of overdue steps (bench/restart.py)
        self._while_arming = asyncio.Semaphore(1)
        self._worker: asyncio.Task[None] | None = None
        self._arming: asyncio.Task[int] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._refresh_pending: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flush_again = False

    # ------------------------------------------------------------------ state (read by tests)
    @property
    def _wake(self) -> dict[str, float]:
        return self.timers.wake

    @property
    def _heap(self) -> list[tuple[float, str]]:
        return self.timers.heap

    @property
    def _history(self) -> dict[str, list[LadderStepRow]]:
        return self.service.history

    @property
    def _bundle_wake(self) -> datetime | None:
        return self.bundler.wake

    @property
    def _kick(self) -> asyncio.Event:
        return self.timers.kick

    @property
    def _started(self) -> bool:
        return self.timers.started

    @_started.setter
    def _started(self, value: bool) -> None:
        self.timers.started = value

    # ------------------------------------------------------------------ people
    def people(self) -> list[Person]:
        """The roster as the core sees it."""
        return self.roster.people()

    def person(self, key: str) -> Person | None:
        """The roster person with this key (name)."""
        return self.service.executor.person(key)

    def assignee(self, tracked: TrackedTask) -> Person | None:
        """The task's assignee, when the roster maps its ``assigneeId``."""
        return self.roster.assignee(tracked)

    # ------------------------------------------------------------------ Escalation hooks
    async def task_opened(self, tracked: TrackedTask) -> None:
        """A task message was posted: plan its ladder (bridge hook)."""
        self.timers.set(tracked.task_id, self.clock())

    async def task_changed(self, task_id: str) -> None:
        """Ack, snooze or decision: re-check at once (never blocks on a running step).

        A task waiting for its batch message (smart batching's group wait) is left alone: its
        steps would reply to no message and DM about a task nobody can see yet; the batch's
        post arms its ladder (:meth:`task_opened`) and the steps due meanwhile are taken then.
        """
        if await self._waiting_for_batch(task_id):
            return
        self.service.mark_changed(task_id)
        self.timers.set(task_id, self.clock())

    async def _waiting_for_batch(self, task_id: str) -> bool:
        batcher = self.bridge.batcher
        if batcher is None or not batcher.holds(task_id):
            return False
        tracked = await self.bridge.store.get_task(task_id)
        return tracked is not None and not tracked.has_message and not tracked.is_decided

    def wake_at(self, task_id: str) -> datetime | None:
        """When the task's next wake-up is set (aware UTC), or ``None``."""
        return self.timers.at(task_id)

    # ------------------------------------------------------------------ message rendering
    def next_step_for(self, tracked: TrackedTask) -> NextStep | None:
        """What the task message shows: the next step and when, and the steps taken so far.

        Used as ``DiscordNotifier.next_step``; synchronous, from the in-memory copy of the
        step rows (refreshed after every step).
        """
        if tracked.is_decided:
            return None
        rows = self.service.history.get(tracked.task_id, [])
        taken = tuple(
            f"✓ {STEP_LABELS.get(StepKind(r.step), r.step)} "
            f"{discord_timestamp(r.taken_at, 'T')}{late_marker(r.late_seconds)}"
            + _level_note(r.outcome)
            for r in rows
            if r.step in STEP_VALUES
        )
        try:
            nxt = self.service.next_due(tracked, rows)
        except ValueError:
            return None
        if nxt is None:
            return NextStep("none: every step was taken", None, taken)
        label = STEP_LABELS[nxt.kind]
        if nxt.held_for_quiet_hours:
            label += " (held for quiet hours)"
        elif nxt.delayed_by_snooze:
            label += " (after the snooze)"
        return NextStep(label, nxt.deliver_at, taken)

    async def incident_text(self, tracked: LadderTask) -> str:
        """The incident report: every step taken, who was notified, when, through what."""
        fresh: LadderTask = await self.bridge.store.get_task(tracked.task_id) or tracked
        steps = (await self.ladder_store.steps([fresh.task_id])).get(fresh.task_id, [])
        deliveries = await self.ladder_store.deliveries(task_id=fresh.task_id)
        return incident_text(fresh, steps, deliveries, self.clock())

    def _queue_refresh(self, task_id: str) -> None:
        """Re-render the task's message soon, off the step's critical path.

        Refreshes are coalesced per task and done one at a time by a background loop: under a
        storm of due steps the messages may lag a little, but no step waits for a message edit
        (nor for Discord's edit rate).
        """
        self._refresh_pending.add(task_id)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_loop(), name="ladder-refresh")
            self._background.add(self._refresher)
            self._refresher.add_done_callback(self._background.discard)

    async def _refresh_loop(self) -> None:
        while self._refresh_pending:
            task_id = self._refresh_pending.pop()
            try:
                await self.bridge.refresh_message(task_id)
            except Exception:
                log.exception("could not refresh the message of task %s", task_id)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Settle what a crash left, start the timer, rebuild every open task's wake-up
        (:meth:`begin`, then :meth:`armed`)."""
        await self.begin()
        await self.armed()

    async def begin(self) -> None:
        """Settle what a crash left and start the timer; rebuild the wake-ups in the
        background (:meth:`armed` waits for it).

        The worker runs while the wake-ups are rebuilt: each page of open tasks is armed as
        soon as it is read, so the first steps due go out before the last page is (100,000
        open tasks at a restart or takeover, bench/restart.py), and the rest of the start
        (the Discord session, the start-up reconciliation) need not wait for the last page.
        Until the last page is armed the worker takes one task at a time (not
        :data:`MAX_CONCURRENT_TASKS`), so that a backlog of overdue steps does not hold the
        arming back for tens of seconds.
        """
        await self._settle()
        if not self.scheduler.running:
            self.scheduler.start()
        self.timers.started = True
        self._worker = asyncio.create_task(self._run(), name="escalation-ladder")
        self.timers.kick.set()
        self._arming = asyncio.create_task(self.rebuild(), name="escalation-arming")

    async def armed(self) -> None:
        """Wait until :meth:`begin`'s rebuild armed every open task (its error is raised)."""
        if self._arming is not None:
            await asyncio.shield(self._arming)

    async def recover(self) -> None:
        """The start without timers: settle claimed deliveries, load bad phones and bundle
        windows, rebuild the wake-ups (see :mod:`escalation.service`, "Restart semantics")."""
        await self._settle()
        await self.rebuild()

    async def _settle(self) -> None:
        """What must precede any step: deliveries a crash left claimed settled (not sent
        twice), unreachable phones and the bundler's windows loaded."""
        await self.service.recover()
        warm_up = getattr(self.pager, "warm_up", None)
        if warm_up is not None:
            await warm_up()
        await self.bundler.load()

    async def rebuild(self) -> int:
        """Compute every open task's next wake-up from the store (bulk); how many are armed.

        Each page is armed as it comes (and the timer job re-pointed when it runs). A wake-up
        set meanwhile (a hook, a step taken by the worker) is kept when it is sooner: one too
        early only re-plans the task, one too late could hold a step back.
        """
        timers = self.timers

        def arm(wakes: dict[str, datetime]) -> None:
            current = timers.wake
            for task_id, at in wakes.items():
                ts = current.get(task_id)
                if ts is None or at.timestamp() < ts:
                    timers.set(task_id, at, kick=False)
            timers.arm()

        wakes = await self.service.rebuild(on_page=arm)
        log.info("escalation ladder armed for %d open tasks", len(wakes))
        return len(wakes)

    async def stop(self) -> None:
        """Stop the timer and the worker; steps under way get a moment to finish."""
        self.timers.started = False
        if self._arming is not None and not self._arming.done():
            self._arming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._arming
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._own_scheduler and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.pager is not None:
            await self.pager.aclose()

    async def _run(self) -> None:
        kick = self.timers.kick
        while True:
            await kick.wait()
            kick.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation wake-up failed")
            # a tick may set the kick again at once (Event.wait then returns without
            # suspending): let the rest of the loop run between two ticks
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ one wake-up
    async def tick(self) -> None:
        """Take what is due now: one step per due task, then the bundler; re-arm the timer.

        The worker calls it on every wake-up; tests may call it directly.
        """
        now = self.clock()
        claims: list[asyncio.Event] = []
        for task_id in self.timers.pop_due(now):
            claimed = asyncio.Event()
            claims.append(claimed)
            self._spawn(self._process(task_id, claimed))
        if claims:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.wait() for c in claims)), CLAIM_WAIT_SECONDS
                )
        if self.bundler.needs_flush(self.clock()):
            self._start_flush()
        self.timers.arm()

    async def _process(self, task_id: str, claimed: asyncio.Event) -> None:
        try:
            async with self._sem, self._locks(task_id):
                if self._arming is not None and not self._arming.done():
                    async with self._while_arming:
                        await self.service.wake(task_id, on_claimed=claimed.set)
                else:
                    await self.service.wake(task_id, on_claimed=claimed.set)
            if self.service.new_bundle_keys:
                # DMs / SMS added after the tick stopped waiting for the claims (a storm:
                # steps queue for the semaphore): wake the worker to send them now, not at
                # the next task's wake-up hours later
                self.timers.kick.set()
        finally:
            claimed.set()

    async def flush_bundles(self) -> None:
        """Send what the bundle rules allow now (one DM / one SMS per person and window)."""
        await self.bundler.flush()

    def _start_flush(self) -> None:
        """Run the bundler in the background, one flush at a time.

        A flush reads every pending reminder (thousands in a storm) and may take a while;
        steps coming due meanwhile must not wait for it. Asked again while one runs, it runs
        once more when that one ends.
        """
        self.bundler.wake = None  # the flush sets it again for what it holds back
        if self._flusher is not None and not self._flusher.done():
            self._flush_again = True
            return
        self._flusher = self._spawn(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            self._flush_again = False
            try:
                await self.flush_bundles()
            except Exception:
                log.exception("sending bundled notifications failed")
            if not self._flush_again:
                break
        self.timers.arm()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait until every step and send under way has finished (tests)."""
        while self._background:
            await asyncio.gather(*set(self._background), return_exceptions=True)


def _level_note(outcome: dict[str, Any]) -> str:
    """The suffix of a step line on the task message: ``· factory level N`` when the step
    reported level N to the factory (contract ``Task.escalationLevel``), else empty."""
    level = reported_level(outcome)
    return f" · factory level {level}" if level is not None else ""
