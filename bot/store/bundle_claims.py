"""Claiming a bundle of reminders a page at a time, and what a restart does with a half claim.

The bundler (:mod:`bot.ladder.bundles`) sends one DM or SMS for thousands of reminders. Each
reminder is a delivery row that must be claimed (``pending`` → ``claimed``) before its message
goes out, so that a crash never sends it twice. Claimed in one transaction, a big bundle held
the one writer thread for 0.1–0.3 s on PostgreSQL and every ladder step coming due waited
behind it (bench ``ladders``); so it is claimed a page per transaction, in two kinds:

* every page but the last is *reserved* (status :data:`RESERVED`): the message is not under
  way yet;
* the last page is ``claimed`` (and, when it finds nothing left to claim, one reserved row is
  claimed in its transaction): from then on the message may be sent.

All rows of one bundle share their ``claimed_at``. A restart that finds reserved rows whose
bundle has no row claimed or finished puts them back to ``pending`` — the crash came before
the message — and otherwise treats them as the claimed ones (``unknown``: not sent again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .database import Database
from .ladder_sql import CHUNK, claim_pending_update

__all__ = ["CLAIM_PAGE", "RESERVED", "claim_bundle", "put_back_claimed", "settle_reserved"]

log = logging.getLogger(__name__)

#: Rows claimed per transaction by :func:`claim_bundle`: a page is a few milliseconds of the
#: writer, so a step coming due waits at most that long behind a bundle.
CLAIM_PAGE = 100
#: ``escalation_deliveries.status`` of a bundle's row claimed by a page before the last one:
#: its message is not being sent yet.
RESERVED = "reserved"


async def claim_bundle(
    db: Database, ids: Sequence[int], now: datetime, *, page: int = CLAIM_PAGE
) -> list[int]:
    """Claim those of ``ids`` still ``pending`` for one message, a page per transaction.

    A row no longer pending (its task was decided meanwhile) is left out rather than failing
    the bundle: the caller sends what it got. See the module docstring for the two kinds of
    page.

    Parameters
    ----------
    db:
        The store's database (every page is a fenced write: the leader's only).
    ids:
        Delivery row ids, all for the same recipient and channel (one message).
    now:
        The claim time (aware UTC), shared by every row of the bundle.
    page:
        Rows claimed per transaction.

    Returns
    -------
    list[int]
        The ids claimed, in the order of ``ids``. The caller sends them, then records each
        one's outcome (:meth:`bot.store.ladder.LadderStore.finish_deliveries`, whatever their
        status is now).

    Raises
    ------
    Exception
        What a page's write raised (:class:`bot.leadership.lease.NotLeader` once the lease is
        lost). The pages claimed before it are put back to ``pending`` first, so that whoever
        leads now sends them — those still this claim's only: a paused leader that resumes
        must not undo the claim of the leader that replaced it.
    """
    c = t.escalation_deliveries.c
    ts = now.timestamp()
    claimed: set[int] = set()

    def reserve(chunk: list[int], conn: Connection) -> list[int]:
        query = claim_pending_update(chunk, ts, status=RESERVED).returning(c.id)
        return [row[0] for row in conn.execute(query)]

    def claim_last(chunk: list[int], conn: Connection) -> list[int]:
        got = [row[0] for row in conn.execute(claim_pending_update(chunk, ts).returning(c.id))]
        if not got and claimed:  # the bundle's one claimed row: its message may be sent
            conn.execute(
                update(t.escalation_deliveries)
                .where(and_(c.id == min(claimed), c.status == RESERVED))
                .values(status="claimed")
            )
        return got

    wanted = list(ids)
    chunk: list[int] = []
    try:
        for start in range(0, len(wanted), page):
            chunk = wanted[start : start + page]
            work = claim_last if start + page >= len(wanted) else reserve
            claimed.update(await db.write(partial(work, chunk), fenced=True))
    except BaseException:
        # the page whose write raised too: a connection lost while its commit was on the
        # way may have stored it (only rows carrying this claim's time are put back)
        await put_back_claimed(db, sorted(claimed.union(chunk)), ts)
        raise
    return [i for i in wanted if i in claimed]


async def put_back_claimed(db: Database, ids: Sequence[int], ts: float) -> None:
    """Rows of a refused or unsure claim made at ``ts`` (Unix seconds) back to ``pending``:
    only those still ``claimed`` or reserved with that claim time, so that a paused leader
    that resumes cannot undo the claim of the leader that replaced it. A failure is logged
    (the claim's own error is the one the caller raises)."""
    if not ids:
        return
    c = t.escalation_deliveries.c
    query = (
        update(t.escalation_deliveries)
        .where(
            and_(
                c.id.in_(list(ids)),
                c.status.in_(["claimed", RESERVED]),
                c.claimed_at == ts,  # not rows a new leader settled and claimed again since
            )
        )
        .values(status="pending", claimed_at=None)
    )
    try:
        await asyncio.shield(db.write(lambda conn: conn.execute(query)))
    except Exception:
        log.exception(
            "%d claimed reminders could not be put back to pending; the next start puts "
            "back those still reserved and marks the others unknown",
            len(ids),
        )


def settle_reserved(conn: Connection) -> list[Any]:
    """At start, in the caller's transaction: put back to ``pending`` the reserved rows of
    bundles whose message was not under way (no row of the bundle claimed or finished).

    Returns the other reserved rows (database rows of ``escalation_deliveries``): their
    message may have gone out, and the caller settles them as it settles claimed ones."""
    c = t.escalation_deliveries.c
    reserved = list(conn.execute(select(t.escalation_deliveries).where(c.status == RESERVED)))
    bundles: dict[tuple[str, str, float], list[Any]] = {}
    for r in reserved:
        bundles.setdefault((r.recipient, r.channel, r.claimed_at), []).append(r)
    back: list[int] = []
    started: list[Any] = []
    for (recipient, channel, at), rows in bundles.items():
        under_way = conn.execute(
            select(c.id)
            .where(
                and_(
                    c.recipient == recipient,
                    c.channel == channel,
                    c.claimed_at == at,
                    c.status != RESERVED,
                )
            )
            .limit(1)
        ).first()
        if under_way is None:
            back += [r.id for r in rows]
        else:
            started += rows
    for start in range(0, len(back), CHUNK):
        conn.execute(
            update(t.escalation_deliveries)
            .where(c.id.in_(back[start : start + CHUNK]))
            .values(status="pending", claimed_at=None)
        )
    if back:
        log.info(
            "%d reminders reserved by a claim a crash interrupted are pending again", len(back)
        )
    return started
