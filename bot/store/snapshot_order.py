"""Which of two snapshots of a task is newer: the factory's ``updatedAt``, when it can be trusted.

Events and listings arrive out of order (a webhook retried late, a listing read before a
change), so :meth:`bot.store.tasks.TasksMixin.upsert_task` keeps a stored snapshot against an
incoming one stamped earlier (factory contract §1.4 ``Task.updatedAt``). A stored stamp from
the future is not evidence of a later change but of the factory's clock running ahead when it
was stamped: trusted, it would make every later, correctly stamped snapshot look older and be
dropped for good (a raised priority, a new title or deadline never shown). Such a stamp is not
trusted.
"""

from __future__ import annotations

import json
from datetime import datetime

from escalation.models import Task

__all__ = ["CLOCK_SKEW_TOLERANCE_SECONDS", "is_older_snapshot"]

#: Seconds a stored ``updatedAt`` may lie ahead of the bridge's clock and still order
#: snapshots: clocks of two hosts disagree by a little (the factory's and the bridge's), and a
#: stamp within this much of now is an honest one. Five minutes is the skew Kerberos tolerates
#: between hosts by default (MIT krb5.conf ``clockskew``, 300 s). A stamp further ahead is the
#: factory's clock gone wrong: not trusted.
CLOCK_SKEW_TOLERANCE_SECONDS = 300.0


def is_older_snapshot(task: Task, stored_payload: str, now: float) -> bool:
    """Whether ``task`` is an older snapshot than the stored one.

    Parameters
    ----------
    task:
        The incoming snapshot.
    stored_payload:
        The stored snapshot's JSON (``tasks.payload``, the factory's field names).
    now:
        The bridge's clock, Unix seconds.

    Returns
    -------
    bool
        True when both carry ``updatedAt`` (contract §1.4 ``Task``), the incoming one is
        earlier, and the stored one is not more than :data:`CLOCK_SKEW_TOLERANCE_SECONDS`
        ahead of ``now`` (a stamp from the future is not trusted). Equal or unknown: False.
    """
    if task.updated_at is None:
        return False
    try:
        stored = json.loads(stored_payload).get("updatedAt")
        stored_at = datetime.fromisoformat(stored) if isinstance(stored, str) else None
    except (ValueError, AttributeError):
        return False
    if stored_at is None or stored_at.tzinfo is None:
        return False
    if stored_at.timestamp() > now + CLOCK_SKEW_TOLERANCE_SECONDS:
        return False  # stamped by a clock running ahead: the newer snapshot is taken
    return task.updated_at < stored_at
