"""The bridge watches itself: an SMS to the on-call admins when Discord is out of reach.

When the Discord gateway session has been down for more than ``SELF_ALERT_AFTER_SECONDS``,
decisions are not being delivered, and nobody in Discord can be told so. The admins of the
roster who are on call and have a phone get ONE SMS through Twilio ("Factory Bridge cannot reach
Discord since 03:12 UTC; decisions are not being delivered"), and one "recovered" SMS once the
session is back. Without Twilio, or when every SMS fails, the bridge logs an error (the
heartbeat monitor, ``bot.heartbeat``, pages from outside as well).

When Twilio is the part that fails — :data:`TWILIO_FAILURES_TO_ALERT` requests in a row end in a
5xx, a 429 or a network error (a refused number, 4xx, is the recipient's problem, not Twilio's) —
the alerts channel gets one post ("Factory Bridge cannot send SMS or calls through Twilio …"),
and one when a request succeeds again. Other parts post their own one-time alerts the same way
(:meth:`SelfWatch.announce`: the WebSocket intake when the factory refuses it, contract §1.6).
Every alert is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.periodic import Periodic
from bot.roster import Roster
from bot.store import Store
from escalation.ports import DeliveryError, Pager

__all__ = ["TWILIO_FAILURES_TO_ALERT", "SelfWatch"]

log = logging.getLogger(__name__)

#: Twilio requests failing in a row (after the ladder's own retries) before the alert.
TWILIO_FAILURES_TO_ALERT = 3


class SelfWatch:
    """Pages the on-call admins when the Discord session stays down (a feature: start/stop).

    Parameters
    ----------
    disconnected_since:
        Aware UTC time the Discord session was lost, ``None`` while it is up
        (``BridgeBot.disconnected_since``).
    pager:
        Twilio SMS, or ``None`` without Twilio settings (then only an error is logged).
    roster:
        Who is paged: operators with ``admin`` and ``on_call`` and a phone.
    store:
        The audit trail.
    after_seconds:
        ``SELF_ALERT_AFTER_SECONDS``: how long the session must be down first.
    post_alert:
        Posts a text in the alerts channel (``DiscordNotifier.send`` to
        ``Settings.alerts_channel_id``); used when Twilio fails. Optional.
    check_every_seconds:
        How often the session is looked at.
    clock:
        Current aware UTC time.
    """

    def __init__(
        self,
        *,
        disconnected_since: Callable[[], datetime | None],
        pager: Pager | None,
        roster: Roster,
        store: Store,
        after_seconds: float,
        post_alert: Callable[[str], Awaitable[object]] | None = None,
        check_every_seconds: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pager = pager
        self._post_alert = post_alert
        self._twilio_failures = 0
        self._twilio_failing_since: datetime | None = None
        self._twilio_last_status = ""
        self._twilio_alerted = False
        self._news: list[tuple[str, str]] = []
        self._since = disconnected_since
        self._roster = roster
        self._store = store
        self._after = after_seconds
        self._clock = clock
        self._alerted_for: datetime | None = None
        self._rounds = Periodic("self-watch check", self.check, check_every_seconds)

    async def start(self) -> None:
        """Start watching in the background."""
        self._rounds.start()

    async def stop(self) -> None:
        """Stop watching."""
        await self._rounds.stop()

    def observe_twilio(self, kind: str, status: str) -> None:
        """Every Twilio request's end (the pager's ``observe`` hook): ``status`` is the HTTP
        status or ``error``. Never blocks: the alert is posted by the next :meth:`check`."""
        if status == "error" or status == "429" or status.startswith("5"):
            if self._twilio_failures == 0:
                self._twilio_failing_since = self._clock()
            self._twilio_failures += 1
            self._twilio_last_status = status
            if self._twilio_failures >= TWILIO_FAILURES_TO_ALERT and not self._twilio_alerted:
                self._twilio_alerted = True
                since = self._twilio_failing_since or self._clock()
                self._news.append(
                    (
                        "twilio_down",
                        f"⚠️ Factory Bridge cannot send SMS or calls through Twilio since "
                        f"{since:%H:%M} UTC (last answer: {status}); pages are not reaching "
                        "phones. Check the Twilio console and TWILIO_* settings.",
                    )
                )
        elif status.startswith("2"):
            self._twilio_failures = 0
            self._twilio_failing_since = None
            if self._twilio_alerted:
                self._twilio_alerted = False
                self._news.append(
                    (
                        "twilio_recovered",
                        "✅ Factory Bridge sends SMS and calls through Twilio again.",
                    )
                )

    def announce(self, what: str, text: str) -> None:
        """Post ``text`` in the alerts channel, audited as ``self_alert.<what>``.

        Never blocks (callers run in the event path): the post is made by the next
        :meth:`check`, within ``check_every_seconds``. The caller says each thing once (an
        outage, then its recovery); without ``post_alert`` the text is logged as an error.

        Parameters
        ----------
        what:
            What happened, for the audit action (``websocket_refused``).
        text:
            The message, as posted.
        """
        self._news.append((what, text))

    async def _post_news(self) -> None:
        while self._news:
            what, text = self._news.pop(0)
            posted = False
            if self._post_alert is not None:
                try:
                    await self._post_alert(text)
                    posted = True
                except Exception as exc:
                    log.error("alert %s could not be posted in Discord: %s", what, exc)
            else:
                log.error("%s", text)
            await self._store.audit(
                actor_name="bridge",
                via="system",
                action=f"self_alert.{what}",
                outcome="sent" if posted else "failed",
                detail=f"{text} → alerts channel",
            )

    async def check(self) -> None:
        """One look: alert once per outage past the threshold, and once when it ends (Discord
        by SMS; Twilio and what :meth:`announce` was given in the alerts channel)."""
        await self._post_news()
        since = self._since()
        if since is None:
            if self._alerted_for is not None:
                down_since = self._alerted_for
                self._alerted_for = None
                await self._page(
                    "Factory Bridge: Discord is reachable again "
                    f"(it was down since {down_since:%H:%M} UTC); decisions are delivered.",
                    "recovered",
                )
            return
        if self._alerted_for == since:
            return
        if (self._clock() - since).total_seconds() < self._after:
            return
        self._alerted_for = since
        await self._page(
            f"Factory Bridge cannot reach Discord since {since:%H:%M} UTC; "
            "decisions are not being delivered.",
            "discord_down",
        )

    async def _page(self, text: str, what: str) -> None:
        admins = [op for op in self._roster.operators if op.admin and op.on_call and op.phone]
        sent: list[str] = []
        if self.pager is None or not admins:
            log.error("%s (no SMS: %s)", text, "Twilio is not configured" if admins else "no admin")
        else:
            for admin in admins:
                assert admin.phone is not None
                try:
                    await self.pager.send_sms(admin.phone, text)
                except DeliveryError as exc:
                    log.error("self-alert SMS to %s failed: %s", admin.name, exc)
                else:
                    sent.append(admin.name)
            if not sent:
                log.error("%s (every self-alert SMS failed)", text)
        await self._store.audit(
            actor_name="bridge",
            via="system",
            action=f"self_alert.{what}",
            outcome="sent" if sent else "failed",
            detail=f"{text} → {', '.join(sent) or 'nobody'}",
        )
