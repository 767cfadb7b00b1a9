"""Requests only the leader can answer, handed to it by a standby (README "Production").

Behind one load balancer every replica receives requests. ``POST /events`` needs no leader (a
standby stores the event durably and the leader handles it), but a Twilio webhook does: an SMS
reply or a keypress is answered at once with what the leader did (its Discord session knows
the person's roles), and an unanswered call's status plans the next person's call with a
leader-only write. So a standby hands such a request to the leader as it came — same path and
query, same body, same ``X-Twilio-Signature``, which the leader checks again against
``BRIDGE_PUBLIC_URL`` — and answers Twilio with the leader's answer.

Where the leader is: each leader, once it leads (Discord session ready), saves its
``BRIDGE_INTERNAL_URL`` with its fencing token under :data:`LEADER_STATE_KEY` in the store's
``runtime_state`` (a fenced write: a deposed leader cannot overwrite its successor's). A
standby uses that address only while the token is the one it sees in the lease row: an address
left by a dead leader is never used. A request relayed once is never relayed again
(:data:`RELAYED_HEADER`), so two processes that both think the other leads cannot bounce it.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from aiohttp import web

from bot.leadership.lease import Lease
from bot.pager.inbound import origin_form
from bot.store import Store

__all__ = ["LEADER_STATE_KEY", "RELAYED_HEADER", "RELAY_TIMEOUT_SECONDS", "LeaderRelay"]

log = logging.getLogger(__name__)

#: The ``runtime_state`` key of the leader's address.
LEADER_STATE_KEY = "leader"
#: Marks a request a standby relayed (its value: the relaying process's lease holder id).
RELAYED_HEADER = "X-Factory-Bridge-Relayed"
#: Longest wait for the leader's answer, seconds: Twilio waits 15 s for a webhook's answer
#: (Twilio: "Webhooks (HTTP callbacks)", timeouts) and the relay must answer before that.
RELAY_TIMEOUT_SECONDS = 10.0
#: The request headers relayed (what the leader's checks read).
_RELAYED_HEADERS = (
    "Content-Type",
    "X-Twilio-Signature",
    "User-Agent",
    "I-Twilio-Idempotency-Token",
)


class LeaderRelay:
    """Announces this process's address while it leads; relays requests to the leader while
    it stands by (module docstring).

    Parameters
    ----------
    lease:
        This process's :class:`~bot.leadership.lease.Lease`: whether it leads, and the lease
        row as last seen (the current leader's fencing token).
    store:
        Where the leader's address is kept (``runtime_state``).
    own_url:
        This process's ``BRIDGE_INTERNAL_URL`` (:attr:`bot.settings.Settings.internal_url`).
    timeout_seconds:
        Longest wait for the leader's answer.
    transport:
        httpx transport (tests); ``None``: the network.
    """

    def __init__(
        self,
        *,
        lease: Lease,
        store: Store,
        own_url: str,
        timeout_seconds: float = RELAY_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.lease = lease
        self.store = store
        self.own_url = own_url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=timeout_seconds, transport=transport, follow_redirects=False
        )
        #: requests relayed to the leader so far, and those that could not be
        self.relayed = 0
        self.failed = 0

    @property
    def is_leader(self) -> bool:
        """Whether this process leads now (it answers such requests itself)."""
        return self.lease.is_leader

    async def announce(self) -> None:
        """Save this process's address with its fencing token (the leader, once it leads).

        Raises
        ------
        bot.leadership.lease.NotLeader
            When this process no longer holds the lease (the fenced write is refused).
        """
        record = {"url": self.own_url, "token": self.lease.token, "holder": self.lease.holder}
        await self.store.save_state(LEADER_STATE_KEY, record, fenced=True)
        log.info("leader: replicas relay Twilio webhooks to %s", self.own_url)

    async def leader_url(self) -> str | None:
        """The current leader's address, or ``None`` when it is not known yet (no leader, or
        it has not announced itself since it took over)."""
        seen = self.lease.seen
        if seen is None or seen.holder is None:
            return None
        record = await self.store.load_state(LEADER_STATE_KEY)
        if record is None or record.get("token") != seen.token:
            return None
        url = record.get("url")
        return url if isinstance(url, str) and url else None

    async def forward(self, request: web.Request, *, fallback: web.Response) -> web.Response:
        """Hand ``request`` (its body already read) to the leader and return its answer.

        ``fallback`` is answered — and the failure logged — when there is no leader to hand
        it to, the leader cannot be reached in time, or the request was relayed here already.
        """
        if request.headers.get(RELAYED_HEADER):
            log.warning(
                "%s relayed here by %s, but this process is not the leader either",
                request.path,
                request.headers[RELAYED_HEADER],
            )
            self.failed += 1
            return fallback
        try:
            url = await self.leader_url()
        except Exception as exc:  # the store cannot be read
            log.warning("%s: the leader's address cannot be read: %r", request.path, exc)
            url = None
        if url is None:
            log.warning("%s reached a standby and no leader is known yet", request.path)
            self.failed += 1
            return fallback
        headers: dict[str, Any] = {
            name: request.headers[name] for name in _RELAYED_HEADERS if name in request.headers
        }
        headers[RELAYED_HEADER] = self.lease.holder
        try:
            answer = await self._http.post(
                url + origin_form(request.raw_path), content=await request.read(), headers=headers
            )
        except httpx.HTTPError as exc:
            log.warning("%s could not be relayed to the leader at %s: %r", request.path, url, exc)
            self.failed += 1
            return fallback
        self.relayed += 1
        log.info("%s relayed to the leader at %s: %d", request.path, url, answer.status_code)
        kind = answer.headers.get("Content-Type", "text/plain")
        return web.Response(
            status=answer.status_code, body=answer.content, headers={"Content-Type": kind}
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
