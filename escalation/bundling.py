"""Bundling: several notifications for one person and channel go out as one message.

Pure and stateless: :func:`plan_bundles` looks at what is pending, when each (recipient,
channel) last got a message, and "now", and says what to send now and when to call again.
No clock reads, no I/O, no text: rendering a bundle into a DM or an SMS is the adapter's job.

Rules (README "Escalation ladder": bundling and quiet hours)
-------------------------------------------
* A bundle key is ``(recipient, channel)`` — e.g. ``("operator-7", "sms")``. Different people,
  or the same person on different channels, are never bundled together.
* At most one message per key per ``bundle_seconds`` (``ESCALATION_BUNDLE_SECONDS``, 120):

  - when the key has not had a message within the last ``bundle_seconds``, every due item for
    it goes out **now**, together as one bundle (usually just the one item: "the first is sent
    at once");
  - otherwise the due items are **held** and go out together, as one bundle, when the window
    ``last_sent + bundle_seconds`` closes. That send opens the next window.

* Quiet hours: steps held for quiet hours all come due at the window's end
  (:func:`escalation.ladder.schedule` moves them there), so the call at that instant finds all
  of a person's held items at once and sends them as **one digest** per key
  (``Bundle.is_digest`` is true when any item was held for quiet hours).
* An item whose ``due_at`` is later than ``now`` is not sent; it only sets ``hold_until``.
* The same ``(recipient, channel, task_id, step)`` offered twice is one item (the first kept).

Usage from an async adapter
---------------------------
On every wake-up (and whenever a new step is taken)::

    result = plan_bundles(pending, last_sent_at, now, policy.bundle_seconds)
    for bundle in result.send_now:
        ...render one DM / SMS listing bundle.items, send it, record each item as sent...
    last_sent_at = record_sent(last_sent_at, result.send_now, now)
    if result.hold_until is not None:
        ...schedule the next wake-up at result.hold_until...

``pending`` is every notification not yet sent (derive it from the store, so it survives a
restart: an item held in memory when the bridge died is simply pending again). ``last_sent_at``
may live in memory; losing it on restart can only shorten one bundle window, never send an
item twice, as long as the adapter records each item as sent. Pass only person-addressed
channels (DM, SMS, call); replies in a task's own thread are per task and need no bundling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from escalation.policy import StepKind, as_aware_utc

__all__ = ["Bundle", "BundleKey", "BundlePlan", "Notification", "plan_bundles", "record_sent"]

#: ``(recipient, channel)``.
BundleKey = tuple[str, str]


@dataclass(frozen=True)
class Notification:
    """One thing to tell one person through one channel.

    Attributes
    ----------
    recipient
        Who (an operator id, Discord user id, phone roster key — opaque to the core).
    channel
        Through what: ``"dm"``, ``"sms"``, ``"call"`` … (opaque to the core).
    task_id
        The task it is about.
    step
        The ladder step that produced it.
    due_at
        When it is due, aware (the step's ``deliver_at``); stored in UTC.
    held_for_quiet_hours
        It waited for quiet hours to end: the bundle carrying it is a digest.
    text
        Optional adapter payload; the core never reads it.

    Raises
    ------
    ValueError
        When ``due_at`` is naive.
    """

    recipient: str
    channel: str
    task_id: str
    step: StepKind
    due_at: datetime
    held_for_quiet_hours: bool = False
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "due_at", as_aware_utc(self.due_at, "due_at"))
        object.__setattr__(self, "step", StepKind(self.step))

    @property
    def key(self) -> BundleKey:
        """The bundle key ``(recipient, channel)``."""
        return (self.recipient, self.channel)

    @property
    def identity(self) -> tuple[str, str, str, StepKind]:
        """``(recipient, channel, task_id, step)``: what makes two items the same."""
        return (self.recipient, self.channel, self.task_id, self.step)


@dataclass(frozen=True)
class Bundle:
    """One message to send: every item for one ``(recipient, channel)``.

    Attributes
    ----------
    recipient, channel
        The key.
    items
        The notifications, ordered by ``due_at``, then task id, then ladder order.
    is_digest
        True when any item was held for quiet hours (render it as the morning digest).
    """

    recipient: str
    channel: str
    items: tuple[Notification, ...]
    is_digest: bool

    @property
    def key(self) -> BundleKey:
        """The bundle key ``(recipient, channel)``."""
        return (self.recipient, self.channel)

    @property
    def task_ids(self) -> tuple[str, ...]:
        """Task ids of the items, in item order, without repeats."""
        return tuple(dict.fromkeys(n.task_id for n in self.items))


@dataclass(frozen=True)
class BundlePlan:
    """The answer of :func:`plan_bundles`.

    Attributes
    ----------
    send_now
        Bundles to send now, one per key, ordered by their first item's ``due_at`` then key.
    held
        Due items held back because their key had a message within ``bundle_seconds``.
    hold_until
        When to call :func:`plan_bundles` again (aware UTC): the earliest instant at which a
        held or not-yet-due item can go out; ``None`` when nothing waits.
    """

    send_now: tuple[Bundle, ...]
    held: tuple[Notification, ...]
    hold_until: datetime | None


def _item_order(n: Notification) -> tuple[datetime, str, int]:
    return (n.due_at, n.task_id, n.step.rank)


def plan_bundles(
    pending: Iterable[Notification],
    last_sent_at: Mapping[BundleKey, datetime],
    now: datetime,
    bundle_seconds: float,
) -> BundlePlan:
    """Decide which pending notifications go out now, bundled per ``(recipient, channel)``.

    Parameters
    ----------
    pending
        Every notification not yet sent (due or not yet due).
    last_sent_at
        When each key last got a message (aware). Missing key: never (or long ago).
    now
        The injected current instant, aware.
    bundle_seconds
        The bundle window, seconds ≥ 0 (``EscalationPolicy.bundle_seconds``). 0 disables
        holding, but items due at the same call for one key still go out as one bundle.

    Returns
    -------
    BundlePlan
        What to send now, what is held, and when to call again. See the module docstring.

    Raises
    ------
    ValueError
        A naive ``now`` or ``last_sent_at`` value, or a negative / non-finite
        ``bundle_seconds``.
    """
    instant = as_aware_utc(now, "now")
    seconds = float(bundle_seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bundle_seconds must be a finite number >= 0, got {bundle_seconds!r}")
    window = timedelta(seconds=seconds)

    by_key: dict[BundleKey, list[Notification]] = {}
    seen: set[tuple[str, str, str, StepKind]] = set()
    for item in pending:
        if item.identity in seen:
            continue
        seen.add(item.identity)
        by_key.setdefault(item.key, []).append(item)

    send: list[Bundle] = []
    held: list[Notification] = []
    wake: list[datetime] = []
    for key, items in by_key.items():
        items.sort(key=_item_order)
        due = [n for n in items if n.due_at <= instant]
        later = [n for n in items if n.due_at > instant]
        last = last_sent_at.get(key)
        window_end = None if last is None else as_aware_utc(last, "last_sent_at") + window
        if due and (window_end is None or instant >= window_end):
            send.append(
                Bundle(
                    recipient=key[0],
                    channel=key[1],
                    items=tuple(due),
                    is_digest=any(n.held_for_quiet_hours for n in due),
                )
            )
            window_end = instant + window
        elif due and window_end is not None:  # the key is inside its window: hold
            held.extend(due)
            wake.append(window_end)
        if later:
            first_later = later[0].due_at
            wake.append(first_later if window_end is None else max(first_later, window_end))

    send.sort(key=lambda b: (b.items[0].due_at, b.recipient, b.channel))
    return BundlePlan(
        send_now=tuple(send),
        held=tuple(sorted(held, key=lambda n: (n.key, *_item_order(n)))),
        hold_until=min(wake) if wake else None,
    )


def record_sent(
    last_sent_at: Mapping[BundleKey, datetime],
    sent: Iterable[Bundle],
    now: datetime,
) -> dict[BundleKey, datetime]:
    """A new ``last_sent_at`` with the keys of ``sent`` set to ``now`` (input not modified).

    Raises
    ------
    ValueError
        When ``now`` is naive.
    """
    instant = as_aware_utc(now, "now")
    updated = dict(last_sent_at)
    for bundle in sent:
        updated[bundle.key] = instant
    return updated
