"""Smart batching of routine decisions: which tasks share a message, and when it is posted.

Source: master plan §7 "Smart Batching" (one "📋 5 servers ready for review" message with a line
and a button per item instead of a ping per task) and the factory config
``notifications.batch_interval_seconds: 300`` (contract §5.3). The timing follows Prometheus
Alertmanager's ``group_wait`` / ``group_interval`` applied to decisions.

This package is a pure core like :mod:`escalation` (the standard library and the models and
deploy guard of :mod:`escalation`; import-linter forbids it the adapters and every I/O library):
no I/O, no clock reads.
Every method that depends on time takes ``now`` (an aware UTC :class:`~datetime.datetime`) and
returns the :data:`Action` values the adapter must carry out.

* :mod:`batching.keys` — what is batched (:func:`batch_key`).
* :mod:`batching.policy` — timing and size (:class:`BatchingPolicy`).
* :mod:`batching.actions` — what the adapter is asked to do (:data:`Action`).
* :mod:`batching.batcher` — the state machine (:class:`Batcher`) and its timing rules.
* :mod:`batching.state` — its internal state (pending groups, batch messages).

Adapter contract
----------------
1. For each new routine task: ``actions = batcher.add(task.id, key, now)``.
2. After every call, sleep until :meth:`Batcher.next_wakeup` (or until the next event) and call
   :meth:`Batcher.tick`. Every method first performs everything that is due at ``now``, so a late
   wake-up only delays, never loses, an action.
3. Carry out the actions in order: :class:`PostSingle` → normal task message;
   :class:`PostBatch` → create the batch message, then call
   ``batcher.posted(batch_id, message_ref, now)``; :class:`EditBatch` → edit that message to
   show exactly ``task_ids``.
4. When a task is decided (any way: button, dashboard, expiry) call
   :meth:`Batcher.mark_decided`; unknown ids are ignored.

Restarts: the whole state is :meth:`Batcher.snapshot` (plain JSON-safe dict: pending groups with
their deadlines and task ids, batch messages with their items, decided items, post/edit times and
message refs, the id counter). Persist it after every call that returned actions or changed the
state, *before* carrying the actions out, and rebuild with :meth:`Batcher.from_snapshot`. After a
restart, :meth:`Batcher.unconfirmed_posts` lists the batches whose post was never confirmed: the
adapter calls :meth:`Batcher.posted` for those it finds a stored message for and re-issues the
others. The batcher forgets a message once it is closed and fully shown, so a task id must be added
only once (the adapter's task rows de-duplicate redelivered events).
"""

from batching.actions import Action, EditBatch, PostBatch, PostSingle
from batching.batcher import SNAPSHOT_VERSION, Batcher
from batching.keys import batch_key
from batching.policy import BatchingPolicy

__all__ = [
    "SNAPSHOT_VERSION",
    "Action",
    "Batcher",
    "BatchingPolicy",
    "EditBatch",
    "PostBatch",
    "PostSingle",
    "batch_key",
]
