"""Leader or standby: the loop that keeps, or waits for, the lease (README "Production").

Every ``BRIDGE_LEADER_LEASE_SECONDS / 3`` a leader renews its :class:`~bot.leadership.lease.Lease`
and a standby looks whether it lapsed. Winning the lease calls ``on_elected`` (the app connects
to Discord, rebuilds the ladder's timers from the store, reconciles, starts processing); losing it
— a renewal that finds another token, or a renewal that fails (database unreachable) once the
lease's deadline has passed — steps down at once (every fenced write now fails) and calls
``on_deposed``. A renewal that comes late (the event loop was held up past the deadline) but
finds this process's token still in the row keeps the lease: no standby took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from bot.leadership.lease import Lease

__all__ = ["Leadership", "Role"]

log = logging.getLogger(__name__)

Role = Literal["leader", "standby"]


class Leadership:
    """Runs a :class:`Lease` for the app.

    Parameters
    ----------
    lease:
        This process's lease.
    on_elected:
        Awaited (in its own task, :attr:`elected`) when this process becomes leader; an error
        it raises goes to ``on_failed`` (the task itself then ends without error).
    on_deposed:
        Called with the reason when this process lost the lease (it must stop acting).
    on_failed:
        Called with the error when ``on_elected`` failed (the app stops: another replica
        takes over).
    on_tick:
        Called after each successful renewal (the app looks for events standbys stored).
    on_role:
        Called with ``True`` / ``False`` when leadership is won / lost (the metric
        ``factory_bridge_is_leader``).
    interval_seconds:
        Seconds between two looks; default ``lease_seconds / 3`` (README "Production").
    """

    def __init__(
        self,
        lease: Lease,
        *,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[str], None],
        on_failed: Callable[[BaseException], None],
        on_tick: Callable[[], None] | None = None,
        on_role: Callable[[bool], None] | None = None,
        interval_seconds: float | None = None,
    ) -> None:
        self.lease = lease
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._on_failed = on_failed
        self._on_tick = on_tick
        self._on_role = on_role
        self.interval_seconds = interval_seconds or lease.lease_seconds / 3
        #: the task running ``on_elected`` (``None`` while standby)
        self.elected: asyncio.Task[None] | None = None
        self.deposed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def role(self) -> Role:
        """``"leader"`` while this process holds a valid lease, else ``"standby"``."""
        return "leader" if self.lease.is_leader else "standby"

    async def start(self) -> None:
        """Take one look at once (a lone bridge leads without waiting), then loop.

        When this process won, :attr:`elected` runs ``on_elected``; the caller may await it.
        """
        await self.step()
        self._task = asyncio.create_task(self._loop(), name="leadership")

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop; a leader gives the lease up (``release``) so a standby takes over
        at its next look instead of after a whole lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release and self.lease.token is not None:
            try:
                await self.lease.release()
            except Exception:
                log.exception("could not release the leader lease (a standby waits it out)")
            self._set_role(False)

    async def _loop(self) -> None:
        while not self.deposed:
            await asyncio.sleep(self._next_look())
            await self.step()

    def _next_look(self) -> float:
        """Seconds until the next look: every interval, and a standby also right when the
        lease it saw lapses (a takeover does not wait for the next interval)."""
        lapses_at = self.lease.lapses_at
        if lapses_at is None:
            return self.interval_seconds
        return min(self.interval_seconds, max(lapses_at - self.lease.clock(), 0.0) + 0.01)

    async def step(self) -> None:
        """One look: renew (leader) or try to acquire (standby)."""
        if self.deposed:
            return
        if self.lease.token is not None:
            await self._renew()
            return
        try:
            won = await self.lease.acquire()
        except Exception as exc:
            log.warning("leader lease: cannot look at the lease (staying standby): %s", exc)
            return
        if won:
            log.warning(
                "leader lease: this process (%s) is now the leader (token %s)",
                self.lease.holder,
                self.lease.token,
            )
            self._set_role(True)
            self.elected = asyncio.create_task(self._elect(), name="leadership-elected")

    async def _renew(self) -> None:
        deadline = self.lease.deadline
        assert deadline is not None
        # At least a whole look's time, even at or past the deadline (the event loop was held
        # up longer than a lease: a takeover rebuilding 100,000 timers on a loaded host): the
        # renewal is a compare-and-set on this process's token, so it succeeds only if no
        # standby took over — the check the fence makes on every leader-only write anyway.
        timeout = max(deadline - self.lease.clock(), self.interval_seconds)
        try:
            renewed = await asyncio.wait_for(self.lease.renew(), timeout=timeout)
        except Exception as exc:  # database unreachable or too slow: the lease still runs
            if self.lease.is_leader:
                log.warning("leader lease: renewal failed (lease still valid): %r", exc)
                return
            self._depose(f"no renewal succeeded before the lease ran out ({exc!r})")
            return
        if not renewed:
            self._depose("another process took the lease over (its token is newer)")
        elif self._on_tick is not None:
            self._on_tick()

    def _depose(self, reason: str) -> None:
        self.lease.step_down()
        self.deposed = True
        self._set_role(False)
        log.error("leader lease lost: %s; this process stops acting as leader", reason)
        self._on_deposed(reason)

    async def _elect(self) -> None:
        try:
            await self._on_elected()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("taking over as leader failed")
            self._on_failed(exc)

    def _set_role(self, leader: bool) -> None:
        if self._on_role is not None:
            self._on_role(leader)
