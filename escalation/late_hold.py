"""Quiet hours for a step taken late: one planned before a quiet window, taken inside it.

:func:`escalation.ladder.schedule` holds a step whose delivery time falls inside quiet hours
(README "Quiet hours"), but it plans from the task alone and reads no clock. A step planned
*before* a window can still come due inside it: the bridge was down and restarts at 23:30,
a storm makes it late past 22:00, or the factory raises a task's priority at night so that a
warning planned for the afternoon is due at once. The same rule applies to it as to the
steps planned inside the window, decided here at the instant it would be taken:

* a step the schedule would hold (not a critical task's; a page only of a priority outside
  ``QUIET_HOURS_BYPASS_PRIORITIES``) waits until the window containing ``now`` ends — so
  does one the schedule held to the end of an earlier window and still not taken (the
  bridge was down past the next night's start);
* taken after a window passed while it waited, it is marked ``held_for_quiet_hours`` so
  that its DM / SMS joins the person's digest, as the steps held by the schedule do.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from escalation.ladder import PAGE_STEPS
from escalation.ladder_state import StepDue
from escalation.models import Priority
from escalation.policy import LAST_INSTANT, EscalationPolicy, QuietHours, StepKind
from escalation.quiet_hours import next_quiet_start, quiet_window_at

__all__ = ["holding_quiet_hours", "late_hold"]


def holding_quiet_hours(
    kind: StepKind, priority: Priority, policy: EscalationPolicy
) -> QuietHours | None:
    """The quiet hours that hold step ``kind`` of a task of ``priority`` (``None``: never held).

    The rule of :func:`escalation.ladder.schedule`: a critical task is never held; the pages
    (:data:`escalation.ladder.PAGE_STEPS`) of a priority in ``policy.quiet_bypass_priorities``
    are never held; everything else is, while quiet hours are active.
    """
    if priority is Priority.CRITICAL or not policy.quiet_hours_active:
        return None
    if kind in PAGE_STEPS and priority in policy.quiet_bypass_priorities:
        return None
    return policy.quiet_hours


def late_hold(
    step: StepDue, priority: Priority, policy: EscalationPolicy, now: datetime
) -> tuple[datetime | None, StepDue]:
    """What to do with a due ``step`` at ``now``: wait, or take it (marked held or not).

    Parameters
    ----------
    step
        A step :func:`escalation.ladder.due_now` returned (``deliver_at <= now``).
    priority, policy
        The task's priority and the escalation policy (quiet hours, bypass priorities).
    now
        The current instant, aware UTC.

    Returns
    -------
    tuple
        ``(wait_until, step)``: ``wait_until`` is the end of the quiet window containing
        ``now`` when the step must wait for it (:data:`~escalation.policy.LAST_INSTANT` for a
        window that never ends), else ``None`` and the step to take — marked
        ``held_for_quiet_hours`` when a quiet window began after its delivery time.
    """
    quiet = holding_quiet_hours(step.kind, priority, policy)
    if quiet is None:
        return None, step
    window = quiet_window_at(quiet, now)
    if window is not None:
        # also a step the schedule held to the end of an earlier window: after downtime it
        # may come due inside the next one, and waits for that one's end too (taken now, it
        # would jump ahead of the earlier steps waiting, which the ladder then drops)
        return min(window[1], LAST_INSTANT), step
    if step.held_for_quiet_hours:  # held by the schedule: due at the end of its window
        return None, step
    began = next_quiet_start(quiet, step.deliver_at)
    if began is not None and began <= now:
        return None, replace(step, held_for_quiet_hours=True)
    return None, step
