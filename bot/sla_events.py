"""The factory's own SLA events (``task.sla_warning``, ``task.sla_breached``, contract §1.6).

The bridge's escalation ladder announces a task's SLA warning (a reply on the task message with
``@here``) and breach (an alert with ``@here`` in ``#factory-alerts``, contract Appendix B) by
itself. The factory may send the same news as events. Each moment is announced once:

- an event for a moment the ladder already announced (its ``sla_warning`` / ``sla_breach``
  step row exists) is not posted; nor is a second factory event for a moment already posted;
- otherwise the event is posted the ladder's way: a breach in the alerts channel, a warning as
  a reply on the task message, pinging ``@here`` when the bot may (Discord's
  ``MENTION_EVERYONE`` permission), else the on-call operators of the roster, through
  ``allowed_mentions`` (nobody else is pinged);
- a warning of a task acknowledged or snoozed is not posted (an acknowledgement stops the
  reminders, the warning among them; a snooze delays them);
- during quiet hours an event the ladder would hold is not posted either (README "Quiet
  hours"): a warning of a non-critical task, a breach of a task whose priority is not in
  ``QUIET_HOURS_BYPASS_PRIORITIES``. It is audited ``skipped``; the ladder's own step, held to
  the end of the window, announces it then (a task the bridge does not track is posted: its
  priority is unknown, and no step of the ladder would follow);
- every outcome is audited (actor ``factory``, via ``factory``, action ``alert.sla_breached``
  / ``alert.sla_warning``, outcome ``posted`` or ``skipped``), and the ladder asks
  :func:`factory_announced` before its own alert, so an event that came first is not followed
  by a second alert (the ladder's SMS and call steps still run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.factory.events import FactoryEvent, TaskSlaPayload
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from bot.store.ladder import LadderStore
from escalation.markup import code_span, inline_text
from escalation.models import Priority
from escalation.ports import Messenger
from escalation.quiet_hours import is_quiet

__all__ = ["FACTORY_SLA_ACTIONS", "SLA_EVENT_TYPES", "FactorySlaAlerts", "factory_announced"]

log = logging.getLogger(__name__)

#: The factory's SLA event types this module posts.
SLA_EVENT_TYPES = frozenset({"task.sla_warning", "task.sla_breached"})

#: Audit action of a factory SLA event, by the ladder step (``StepKind`` value) it stands for.
FACTORY_SLA_ACTIONS = {"sla_warning": "alert.sla_warning", "sla_breach": "alert.sla_breached"}

_STEP_OF_EVENT = {"task.sla_warning": "sla_warning", "task.sla_breached": "sla_breach"}


def _ts(at: datetime) -> str:
    return f"<t:{int(at.timestamp())}:R>"


async def factory_announced(store: Store, task_id: str, step: str) -> int | None:
    """The message id of the factory's announcement of ``step`` for a task, if one was posted.

    Parameters
    ----------
    store
        The bridge's store (its audit trail).
    task_id
        The factory task id.
    step
        The ladder step: ``"sla_warning"`` or ``"sla_breach"`` (``StepKind`` values).

    Returns
    -------
    int or None
        The Discord message id of the posted announcement, ``None`` when none was posted.
    """
    action = FACTORY_SLA_ACTIONS.get(step)
    if action is None:
        return None
    for entry in await store.audit_entries(task_id=task_id):
        if entry.action == action and entry.outcome == "posted":
            message_id = (entry.request or {}).get("message_id")
            return int(message_id) if message_id is not None else 0
    return None


class FactorySlaAlerts:
    """Posts the factory's ``task.sla_warning`` / ``task.sla_breached`` once, with a ping.

    Parameters
    ----------
    store
        The bridge's store (tasks, audit, and the ladder's step rows in the same database).
    roster
        Who is on call (pinged when ``@here`` is not allowed).
    settings
        The alerts and tasks channel ids, the guild id (message links).
    messenger
        Discord as the ladder uses it (:class:`escalation.ports.Messenger`).
    clock
        Current aware UTC time.
    """

    def __init__(
        self,
        *,
        store: Store,
        roster: Roster,
        settings: Settings,
        messenger: Messenger,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.roster = roster
        self.settings = settings
        self.messenger = messenger
        self.clock = clock
        self.policy = settings.escalation_policy()
        self._ladder = LadderStore(store.db, on_audit=store.audit_written)

    async def handle(self, event: FactoryEvent) -> None:
        """Post (or skip, see the module text) one factory SLA event; others are ignored.

        Raises
        ------
        escalation.ports.DeliveryError
            When Discord refuses the message (the event processor retries the event).
        bot.leadership.lease.NotLeader
            When this process no longer leads (``Store.check_leader``): nothing was posted.
        """
        step = _STEP_OF_EVENT.get(event.type)
        payload = event.payload
        if step is None or not isinstance(payload, TaskSlaPayload):
            return
        task_id = payload.task_id
        action = FACTORY_SLA_ACTIONS[step]
        by = await self._announced_by(task_id, step)
        if by is not None:
            await self._audit(task_id, action, "skipped", f"already announced by the {by}")
            return
        tracked = await self.store.get_task(task_id)
        if tracked is not None and tracked.is_decided:
            await self._audit(task_id, action, "skipped", "the task is decided")
            return
        if step == "sla_warning" and tracked is not None and self._quieted(tracked):
            # an acknowledgement stops the reminders, the warning among them; a snooze
            # delays them (README "Escalation"): the factory's warning is no exception
            await self._audit(task_id, action, "skipped", "the task is acknowledged or snoozed")
            return
        if tracked is not None and self._held(step, tracked.task.priority):
            await self._audit(
                task_id,
                action,
                "skipped",
                "quiet hours: the escalation ladder announces it when they end",
            )
            return
        if step == "sla_breach":
            channel, reply_to = self.settings.alerts_channel_id, None
        elif tracked is not None and tracked.message_id and tracked.channel_id:
            channel, reply_to = tracked.channel_id, tracked.message_id
        else:  # a warning is a reply on the task message; there is none to reply to
            await self._audit(task_id, action, "skipped", "the bridge shows no message for it")
            return
        everyone = self.messenger.may_mention_everyone(channel)
        ids = [] if everyone else self._on_call_ids()
        ping = "@here" if everyone else (" ".join(f"<@{i}>" for i in ids) or "on-call")
        title = inline_text(payload.task_title)
        if step == "sla_breach":
            content = (
                f"🚨 SLA breached {ping}: **{title}** passed its deadline "
                f"{_ts(payload.sla_deadline)} (reported by the factory). {self._link(task_id, tracked)}"
            )
        else:
            content = (
                f"🔴 SLA breach imminent {ping}: **{title}** breaches its SLA "
                f"{_ts(payload.sla_deadline)} (reported by the factory)."
            )
        # a deposed leader that resumes must not ping again what the new leader announces
        await self.store.check_leader()
        message_id = await self.messenger.post(
            channel, content[:2000], reply_to=reply_to, user_ids=ids, everyone=everyone
        )
        await self._audit(
            task_id,
            action,
            "posted",
            "@here" if everyone else f"mentioned {len(ids)} on-call",
            message_id=message_id,
        )

    def _quieted(self, tracked: TrackedTask) -> bool:
        """True when the task is acknowledged or snoozed now (no reminder is due)."""
        snoozed = tracked.snoozed_until is not None and tracked.snoozed_until > self.clock()
        return tracked.acknowledged_at is not None or snoozed

    def _held(self, step: str, priority: Priority) -> bool:
        """True when the ladder would hold this step of a task of ``priority`` now (quiet
        hours; critical tasks never wait, breaches of the bypass priorities neither)."""
        if priority is Priority.CRITICAL or not is_quiet(self.policy.quiet_hours, self.clock()):
            return False
        return step != "sla_breach" or priority not in self.policy.quiet_bypass_priorities

    async def _announced_by(self, task_id: str, step: str) -> str | None:
        rows = (await self._ladder.steps([task_id])).get(task_id, [])
        if any(r.step == step for r in rows):
            return "escalation ladder"
        if await factory_announced(self.store, task_id, step) is not None:
            return "factory"
        return None

    def _on_call_ids(self) -> list[int]:
        return [o.discord_user_id for o in self.roster.on_call if o.discord_user_id]

    def _link(self, task_id: str, tracked: TrackedTask | None) -> str:
        if tracked is None or tracked.channel_id is None or tracked.message_id is None:
            return f"task {code_span(task_id)}"
        guild = self.settings.discord_guild_id
        return f"https://discord.com/channels/{guild}/{tracked.channel_id}/{tracked.message_id}"

    async def _audit(
        self, task_id: str, action: str, outcome: str, detail: str, message_id: int | None = None
    ) -> None:
        log.info("factory %s for task %s: %s (%s)", action, task_id, outcome, detail)
        await self.store.audit(
            actor_name="factory",
            via="factory",
            action=action,
            outcome=outcome,
            task_id=task_id,
            request=None if message_id is None else {"message_id": message_id},
            detail=detail,
        )
