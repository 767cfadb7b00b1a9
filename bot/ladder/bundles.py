"""The bundler: reminder DMs and SMS, grouped per person and window, sent through the adapters.

DMs and SMS go through :func:`escalation.bundling.plan_bundles` per (person, channel): the
first goes at once, later ones within ``ESCALATION_BUNDLE_SECONDS`` wait and go out as one
message. Steps held for quiet hours all come due at the window's end and leave as one digest
per person and channel. Fallbacks: a DM refused with 50007 → an @mention in a reply to each
task message; an SMS Twilio refuses (21610 STOP: the phone is also marked unreachable; a
permanent error such as 21211 or 21614; still failing after the retries) → the next person of
the SMS order is texted (:meth:`escalation.executor.DeliveryExecutor.fallback`). Without Twilio settings, SMS are
recorded as ``skipped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from bot.ladder.adapters import ESCALATION_ACTOR
from bot.ladder.announcer import DiscordAnnouncer
from bot.ladder.text import discord_timestamp, fit_lines, task_link
from bot.settings import Settings
from bot.store import Store, TrackedTask
from bot.store.ladder import LadderStore, PendingReminder
from escalation.bundling import Bundle, BundleKey, Notification, plan_bundles, record_sent
from escalation.deliveries import BUNDLED_CHANNELS, stop_reason
from escalation.markup import code_span, inline_text
from escalation.notices import PRIORITY_LABELS, STEP_LABELS, late_marker, sms_text
from escalation.policy import StepKind
from escalation.ports import (
    DeliveryError,
    Messenger,
    Pager,
    RecipientUnreachable,
)
from escalation.recipients import sms_order
from escalation.service import LadderService

__all__ = ["Bundler", "Sent", "TaskNotRead"]

log = logging.getLogger(__name__)

#: One delivery's outcome in a bundle: the row, its status and detail.
Sent = tuple[PendingReminder, str, dict[str, Any]]

#: The flush lets the loop run after this many pending reminders (thousands in a storm).
YIELD_EVERY = 500

#: Outcomes (and audits) of a bundle recorded per write: a few milliseconds of the writer
#: thread, so that the steps coming due meanwhile are claimed between two pages.
FINISH_PAGE = 100

#: Tasks read per query when a bundle needs all of them (an SMS, the DM fallback).
TASK_PAGE = 500

#: Tasks read per query while formatting a DM (a 2,000-character DM shows about 15 lines).
DM_TASK_PAGE = 32


class TaskNotRead(LookupError):
    """A line of a DM needs a task that was not read yet (:meth:`Bundler.read_dm_text`)."""


class Bundler:
    """Sends pending DMs and SMS, bundled.

    Parameters
    ----------
    service
        The ladder service (retries, fallbacks, unreachable phones, the roster).
    ladder_store, store
        The ladder's rows and the tasks.
    messenger, announcer, pager
        Discord, the ladder's Discord posts (the DM fallback), SMS (``None``: skipped).
    settings
        ``ESCALATION_BUNDLE_SECONDS`` (through the policy), ``DISCORD_GUILD_ID``.
    clock
        Current aware UTC time.
    spawn
        Runs a coroutine in the background (the runtime tracks it).
    on_fallback
        Called when a fallback delivery was added (the runtime wakes the bundler again).

    Attributes
    ----------
    wake
        When held bundles can go out (aware UTC), or ``None``.
    last_sent
        When each (person, channel) last got a message: the bundle windows.
    """

    def __init__(
        self,
        *,
        service: LadderService,
        ladder_store: LadderStore,
        store: Store,
        messenger: Messenger,
        announcer: DiscordAnnouncer,
        pager: Pager | None,
        settings: Settings,
        clock: Callable[[], datetime],
        spawn: Callable[[Any], Any],
        on_fallback: Callable[[], None],
    ) -> None:
        self.service = service
        self.executor = service.executor
        self.ladder_store = ladder_store
        self.store = store
        self.messenger = messenger
        self.announcer = announcer
        self.pager = pager
        self.settings = settings
        self.clock = clock
        self._spawn = spawn
        self._on_fallback = on_fallback
        self.wake: datetime | None = None
        self.last_sent: dict[BundleKey, datetime] = {}
        # the first flush after start re-plans everything (restart: pending rows in the store)
        self._flush_all = True

    async def load(self) -> None:
        """Read the bundle windows from the store (at start)."""
        self.last_sent = await self.ladder_store.last_sent(BUNDLED_CHANNELS)

    def needs_flush(self, now: datetime) -> bool:
        """Whether a bundle can go out now: a held bundle's time came, or a new reminder is
        for someone whose bundle window is closed. Otherwise new reminders just join their
        person's open window, and the wake-up at its end sends them (no re-planning on every
        tick, which was quadratic in the pending reminders during a storm)."""
        new_keys = self.service.take_bundle_keys()
        if self._flush_all:
            self._flush_all = False
            return True
        due = self.wake is not None and now >= self.wake
        window = timedelta(seconds=self.service.policy.bundle_seconds)
        for key in new_keys:
            last = self.last_sent.get(key)
            if last is None or now - last >= window:
                due = True
            else:  # held until that person's window closes
                ends = last + window
                if self.wake is None or ends < self.wake:
                    self.wake = ends
        return due

    async def flush(self) -> None:
        """Send what the bundle rules allow now (one DM / one SMS per person and window).

        Reads only what the rules need (one narrow query, no task payloads); the tasks are
        read when a bundle is sent, and only as far as its message shows them."""
        # cleared before reading: a wake-up a tick asks for from now on is kept (see the end)
        self.wake = None
        rows = await self.ladder_store.pending_reminders(BUNDLED_CHANNELS)
        if not rows:
            return
        now = self.clock()
        live: list[Notification] = []
        by_id: dict[int, PendingReminder] = {}
        for index, row in enumerate(rows, 1):
            kind = StepKind(row.step)
            reason = (
                "task unknown"
                if not row.task_known
                else stop_reason(
                    kind,
                    row.channel,
                    decision=row.decision,
                    acknowledged=row.acknowledged,
                )
            )
            if reason is not None:
                await self._cancel(row, reason, now)
                continue
            by_id[row.id] = row
            live.append(
                Notification(
                    recipient=row.recipient,
                    channel=row.channel,
                    task_id=row.task_id,
                    step=kind,
                    due_at=row.due_at,
                    held_for_quiet_hours=row.held,
                    text=str(row.id),
                )
            )
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # thousands pending in a storm: let due steps run
        plan = plan_bundles(live, self.last_sent, now, self.service.policy.bundle_seconds)
        for bundle in plan.send_now:
            # a page per transaction (steps coming due are claimed between two); a reminder
            # whose task was decided meanwhile is no longer pending and is left out
            ids = await self.ladder_store.claim_pending([int(n.text) for n in bundle.items], now)
            if not ids:
                continue
            self.last_sent = record_sent(self.last_sent, [bundle], now)
            self._spawn(self.send(bundle, [by_id[i] for i in ids]))
        # a wake-up asked for by a tick while this flush ran is kept (the earlier wins)
        wakes = [w for w in (self.wake, plan.hold_until) if w is not None]
        self.wake = min(wakes) if wakes else None

    async def _cancel(self, row: PendingReminder, reason: str, now: datetime) -> None:
        await self.ladder_store.finish_delivery(row.id, "cancelled", {"cancelled": reason}, now)
        await self.executor.audit(row.task_id, f"escalation.{row.channel}", "cancelled", reason)

    async def tasks(self, rows: Sequence[PendingReminder]) -> dict[str, TrackedTask]:
        """The tracked tasks of ``rows`` by id (read in pages: a bundle may hold thousands)."""
        ids = list(dict.fromkeys(r.task_id for r in rows))
        found: dict[str, TrackedTask] = {}
        for start in range(0, len(ids), TASK_PAGE):
            for tracked in await self.store.tasks_by_ids(ids[start : start + TASK_PAGE]):
                found[tracked.task_id] = tracked
        return found

    async def send(self, bundle: Bundle, rows: list[PendingReminder]) -> None:
        """Send one bundle and record every item's outcome (and audit), a page per write."""
        try:
            if bundle.channel == "dm":
                results = await self._send_dm(bundle, rows)
            else:
                results = await self._send_sms(bundle, rows)
        except Exception as exc:
            log.exception("sending a bundle to %s failed", bundle.recipient)
            results = [(row, "failed", {"error": repr(exc)}) for row in rows]
        size = len(rows)
        finished = self.clock()
        # a page of outcomes per write: formatting and writing thousands at once held the loop
        # and the writer (the steps coming due meanwhile were late, bench/ladders.py)
        for start in range(0, len(results), FINISH_PAGE):
            page = results[start : start + FINISH_PAGE]
            try:
                await self.ladder_store.finish_deliveries(
                    [
                        (row.id, status, {**detail, "bundle_size": size})
                        for row, status, detail in page
                    ],
                    finished,
                    audits=[
                        {
                            "actor_name": ESCALATION_ACTOR.name,
                            "via": ESCALATION_ACTOR.via,
                            "action": f"escalation.{row.channel}",
                            "outcome": status,
                            "task_id": row.task_id,
                            "detail": (
                                f"{row.step} → {row.recipient}"
                                + (f" (one of {size} in one message)" if size > 1 else "")
                                + (" [quiet-hours digest]" if bundle.is_digest else "")
                                + (
                                    f": {detail.get('error') or detail.get('note')}"
                                    if detail
                                    else ""
                                )
                            )[:2000],
                        }
                        for row, status, detail in page
                    ],
                )
            except Exception:
                log.exception("could not record the outcome of a bundle to %s", bundle.recipient)
        if any(detail.get("fallback_to") for _, _, detail in results):
            self._on_fallback()  # a fallback delivery was added

    def dm_text(
        self,
        bundle: Bundle,
        rows: Sequence[PendingReminder],
        tasks: Mapping[str, TrackedTask | None],
    ) -> str:
        """The reminder DM of a bundle (a digest after quiet hours), at most 2,000 characters.

        Only the lines that fit are formatted (a bundle may hold thousands of reminders).
        ``tasks``: the tasks read so far (``None``: not in the store); a line whose task was
        not read yet raises :class:`TaskNotRead` (see :meth:`read_dm_text`)."""
        now = self.clock()
        guild_id = self.settings.discord_guild_id

        def line(index: int) -> str:
            row = rows[index]
            if row.task_id not in tasks:
                raise TaskNotRead(row.task_id)
            tracked = tasks[row.task_id]
            late = late_marker((now - row.due_at).total_seconds())
            step = STEP_LABELS.get(StepKind(row.step), row.step)
            if tracked is None:
                return f"• task {code_span(row.task_id)} [{step}]{late}"
            return (
                f"• **{inline_text(tracked.task.title)}** "
                f"({PRIORITY_LABELS.get(tracked.task.priority, tracked.task.priority.value)}) "
                f"SLA deadline {discord_timestamp(tracked.deadline)} [{step}]{late} "
                f"{task_link(tracked, guild_id)}"
            )

        if bundle.is_digest:
            head = f"🌙 Quiet hours are over. Held for you overnight ({len(rows)}):"
        elif len(rows) == 1:
            head = "⏰ Reminder: a task is waiting for your decision:"
        else:
            head = f"⏰ Reminder: {len(rows)} tasks are waiting for your decision:"
        return fit_lines(
            head, _Lines(line, len(rows)), limit=2000, more="…and {n} more: see /factory pending"
        )

    async def read_dm_text(self, bundle: Bundle, rows: Sequence[PendingReminder]) -> str:
        """:meth:`dm_text`, reading the tasks a page at a time until the lines that fit are
        formatted: a DM shows a few dozen of a bundle's reminders at most."""
        tasks: dict[str, TrackedTask | None] = {}
        read = 0
        while True:
            try:
                return self.dm_text(bundle, rows, tasks)
            except TaskNotRead:
                page = rows[read : read + DM_TASK_PAGE]
                read += len(page)
                found = await self.tasks(page)
                tasks.update({r.task_id: found.get(r.task_id) for r in page})

    async def _send_dm(self, bundle: Bundle, rows: list[PendingReminder]) -> list[Sent]:
        person = self.executor.person(bundle.recipient)
        if person is None or person.discord_user_id is None:
            return [(r, "failed", {"error": "no Discord id in the roster"}) for r in rows]
        user_id = person.discord_user_id
        text = await self.read_dm_text(bundle, rows)
        try:
            message_id = await self.executor.retry(
                "Discord DM", lambda: self.messenger.send_dm(user_id, text)
            )
        except RecipientUnreachable as exc:
            # DMs closed (50007): @mention them in a reply to each task message instead
            results: list[Sent] = []
            tasks = await self.tasks(rows)
            for row in rows:
                tracked = tasks.get(row.task_id)
                if tracked is None:
                    results.append((row, "failed", {"error": "task unknown", "dm_error": str(exc)}))
                    continue
                content = (
                    f"📬 <@{user_id}> I could not DM you: **{inline_text(tracked.task.title)}** "
                    "is waiting "
                    f"for your decision (SLA deadline {discord_timestamp(tracked.deadline)})."
                )
                try:
                    mid = await self._mention(tracked, content, user_id)
                    results.append(
                        (
                            row,
                            "sent",
                            {"via": "reply @mention", "dm_error": str(exc), "message_id": mid},
                        )
                    )
                except DeliveryError as err:
                    results.append((row, "failed", {"error": str(err), "dm_error": str(exc)}))
            return results
        except DeliveryError as exc:
            return [(r, "failed", {"error": str(exc)}) for r in rows]
        return [(r, "sent", {"message_id": message_id, "via": "DM"}) for r in rows]

    async def _mention(self, tracked: TrackedTask, content: str, user_id: int) -> int:
        """Reply to the task message pinging ``user_id`` (with retries); the message id."""
        return await self.executor.retry(
            "Discord reply",
            lambda: self.announcer.post_on_task(
                tracked, content, user_ids=[user_id], everyone=False
            ),
        )

    async def _send_sms(self, bundle: Bundle, rows: list[PendingReminder]) -> list[Sent]:
        if self.pager is None:
            log.info("Twilio is not configured: SMS to %s skipped", bundle.recipient)
            return [(r, "skipped", {"note": "Twilio not configured"}) for r in rows]
        person = self.executor.person(bundle.recipient)
        if person is None or person.phone is None:
            return [(r, "failed", {"error": "no phone in the roster"}) for r in rows]
        tasks = await self.tasks(rows)
        gone: list[Sent] = [
            (r, "failed", {"error": "task unknown"}) for r in rows if r.task_id not in tasks
        ]
        items = [(r, tasks[r.task_id]) for r in rows if r.task_id in tasks]
        if not items:
            return gone
        phone = person.phone
        pager = self.pager
        service = self.executor
        two_way = bool(self.settings.bridge_public_url)
        first = items[0][1]
        link = (
            f"https://discord.com/channels/{self.settings.discord_guild_id}/"
            f"{first.channel_id}/{first.message_id}"
            if two_way and first.channel_id and first.message_id
            else None
        )
        body = sms_text(
            [service.page_item(t, StepKind(r.step)) for r, t in items],
            digest=bundle.is_digest,
            two_way=two_way,  # README "Phone": "Reply ACK 4821" and the jump link
            link=link,
        )
        try:
            if phone in service.unreachable:
                raise RecipientUnreachable("phone marked unreachable (STOP)")
            sid = await service.retry("Twilio SMS", lambda: pager.send_sms(phone, body))
        except DeliveryError as exc:
            # a text Twilio refuses (21610 STOP; 21211 invalid number, 21614 not a mobile;
            # still failing after the retries) reaches nobody: the next person of the SMS
            # order is texted, as the critical call does (README "Phone")
            stopped = isinstance(exc, RecipientUnreachable)
            if stopped and phone not in service.unreachable:
                await service.phone_unreachable(person, phone, exc, items[0][0].task_id)
            results: list[Sent] = []
            for row, tracked in items:
                order = sms_order(service.roster.assignee(tracked), service.roster.people())
                nxt = await service.fallback(tracked, StepKind(row.step), "sms", order)
                results.append(
                    (
                        row,
                        "unreachable" if stopped else "failed",
                        {
                            "error": str(exc),
                            "phone": phone,
                            "note": f"next on-call: {nxt or 'nobody left'}",
                            "fallback_to": nxt,
                        },
                    )
                )
            return gone + results
        return gone + [(r, "sent", {"sid": sid, "phone": phone, "via": "SMS"}) for r, _ in items]


class _Lines(Sequence[str]):
    """``count`` lines, each formatted by ``line(index)`` only when read."""

    def __init__(self, line: Callable[[int], str], count: int) -> None:
        self._line = line
        self._count = count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return self._line(index % self._count)
