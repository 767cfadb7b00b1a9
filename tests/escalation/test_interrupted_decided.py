"""A crash in the middle of the critical step of a task that is decided by the time the bridge
is back (the safe default it had just sent, or a person while it was down): the step is still
finished — the incident report posted, the safe default recorded as sent — not left claimed
with everything cancelled (README "Restart semantics"; the incident report is the one delivery
a decision does not stop)."""

from __future__ import annotations

from datetime import UTC, datetime

from escalation.models import Priority
from escalation.service import LadderService
from tests.support.ladder_fakes import Rig, make_rig

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Killed(BaseException):
    """The process dies (kill -9): nothing after it runs."""


def restarted(rig: Rig) -> LadderService:
    """A new service on the same store, as after a restart."""
    old = rig.service
    rig.alarm.at.clear()
    return LadderService(
        policy=old.policy,
        repository=rig.repository,
        tasks=rig.tasks,
        roster=old.roster,
        announcer=rig.announcer,
        pager=rig.pager,
        decider=rig.decider,
        audit=rig.audit,
        alarm=rig.alarm,
        clock=rig.clock,
        sleep=old.executor.sleep,
    )


async def test_a_crash_right_after_the_safe_default_still_posts_the_incident_report() -> None:
    rig = make_rig(START)  # safe default "deferred"
    rig.add("t", Priority.CRITICAL, created=START)
    send = rig.decider.safe_default

    async def decide_then_die(*args: object) -> object:
        await send(*args)  # type: ignore[arg-type]  # the factory confirmed, the bridge stored it
        raise Killed

    rig.decider.safe_default = decide_then_die  # type: ignore[method-assign]
    try:
        await rig.walk("t")
    except Killed:
        pass
    assert rig.tasks.tasks["t"].is_decided
    service = restarted(rig)
    await service.recover()
    wakes = await service.rebuild()
    assert "t" in wakes  # decided, but its step was interrupted: it wakes to finish it
    await service.wake("t")
    critical = {r.channel: r.status for r in rig.repository.of("t") if r.step == "critical"}
    assert critical["incident"] == "sent"
    assert critical["decision"] == "sent"  # recorded before the crash, not "cancelled"
    assert [s.status for s in rig.repository.step_rows["t"] if s.step == "critical"] == ["done"]
    assert [p[0] for p in rig.announcer.posts].count("incident_report") == 1


async def test_a_crash_between_two_deliveries_of_a_decided_tasks_step_is_finished_too() -> None:
    """Killed after the safe default's row was finished and before the incident report's was
    claimed: no delivery is left claimed, only the step — it must still wake and finish."""
    rig = make_rig(START)
    rig.add("t", Priority.CRITICAL, created=START)
    repository = rig.repository
    claim = repository.claim_deliveries

    async def die_at_the_incident(ids: list[int], now: datetime) -> bool:
        channels = {r.id: r.channel for r in repository.of("t")}
        if any(channels[i] == "incident" for i in ids):
            raise Killed
        return await claim(ids, now)

    repository.claim_deliveries = die_at_the_incident  # type: ignore[assignment,method-assign]
    try:
        await rig.walk("t")
    except Killed:
        pass
    repository.claim_deliveries = claim  # type: ignore[method-assign]
    assert rig.tasks.tasks["t"].is_decided
    service = restarted(rig)
    await service.recover()
    assert "t" in await service.rebuild()
    await service.wake("t")
    critical = {r.channel: r.status for r in repository.of("t") if r.step == "critical"}
    assert critical["incident"] == "sent"
    assert [s.status for s in repository.step_rows["t"] if s.step == "critical"] == ["done"]
