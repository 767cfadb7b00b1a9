"""Decisions and claims made at the factory (its dashboard), as the bridge shows and audits them.

A task decided or claimed on the factory's dashboard reaches the bridge as a factory event
(``task.completed``, ``task.claimed``, ``approval.*``, contract §1.6) or through reconciliation.
The factory names the person by its own user id (``Task.decidedBy``, ``Task.claimedBy``,
contract §1.4). The bridge shows people, not ids:

- :func:`attribute` gives a decision the bridge did not make (its ``decisionData`` has no
  ``source``) the source ``dashboard`` and, when the factory user id is on the roster
  (``factory_user_id``), the roster's name as ``decisionData.discordUsername``, which is what
  the task message shows ("Rejected by Jake", not "by user-jake");
- :func:`person_name` does the same for a claim ("acknowledged by Jake");
- :func:`audit_factory_decision` appends the decision to the audit trail once (actor: the
  person, via ``dashboard``), so ``/factory history`` tells the whole story.
"""

from __future__ import annotations

from bot.roster import Roster
from bot.store import Store, TrackedTask
from escalation.models import Task

__all__ = ["DASHBOARD_SOURCE", "attribute", "audit_factory_decision", "person_name"]

#: ``decision_source`` and audit ``via`` of a decision made at the factory, not through Discord.
DASHBOARD_SOURCE = "dashboard"


def person_name(factory_user_id: str | None, roster: Roster) -> str | None:
    """The roster's name for a factory user id, else the id itself (``None`` stays ``None``).

    Parameters
    ----------
    factory_user_id
        A factory user id (``Task.decidedBy`` / ``Task.claimedBy``, contract §1.4).
    roster
        The operators (``BRIDGE_ROSTER_FILE``).
    """
    if factory_user_id is None:
        return None
    operator = roster.by_factory_id(factory_user_id)
    return operator.name if operator is not None else factory_user_id


def attribute(task: Task, roster: Roster) -> Task:
    """``task`` with a factory-made decision attributed (see the module text).

    A task without a decision, or whose ``decisionData`` already has a ``source`` (a decision
    the bridge sent: ``discord``, ``command`` …), is returned unchanged.

    Parameters
    ----------
    task
        The factory's snapshot of the task.
    roster
        The operators.

    Returns
    -------
    Task
        A copy with ``decisionData.source = "dashboard"``, ``decisionData.factoryUserId`` and,
        when known, ``decisionData.discordUsername`` (the roster name); or ``task`` itself.
    """
    if task.decision is None or task.decision_data.get("source"):
        return task
    data = dict(task.decision_data)
    data["source"] = DASHBOARD_SOURCE
    if task.decided_by:
        data.setdefault("factoryUserId", task.decided_by)
        operator = roster.by_factory_id(task.decided_by)
        if operator is not None:
            data.setdefault("discordUsername", operator.name)
    return task.model_copy(update={"decision_data": data})


async def audit_factory_decision(
    store: Store, before: TrackedTask | None, after: TrackedTask
) -> bool:
    """Audit a decision made at the factory that ``after`` records for the first time.

    Parameters
    ----------
    store
        Where the audit entry goes.
    before
        The task as the bridge knew it before this snapshot (``None``: unknown).
    after
        The task as stored from this snapshot.

    Returns
    -------
    bool
        True when an entry was appended: the decision is new (``before`` undecided) and its
        source is ``dashboard``; a decision the bridge made itself is audited where it is made.
    """
    if before is not None and before.is_decided:
        return False
    if not after.is_decided or after.decision_source != DASHBOARD_SOURCE:
        return False
    task = after.task
    await store.audit(
        actor_name=after.decided_by or "the factory",
        actor_id=task.decided_by,
        via=DASHBOARD_SOURCE,
        action=f"task.{after.decision}",
        outcome="ok",
        task_id=after.task_id,
        request={"notes": after.decision_notes} if after.decision_notes else None,
        detail="decided at the factory (seen through its events)",
    )
    return True
