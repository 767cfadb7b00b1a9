"""Registering the bridge's ``POST /events`` with the factory (contract §1.5 ``/v1/webhooks``).

With ``BRIDGE_PUBLIC_URL`` set, the bridge makes sure at start that the factory delivers the
events it handles to ``<BRIDGE_PUBLIC_URL>/events``, signed with ``FACTORY_WEBHOOK_SECRET``:

1. ``GET /v1/webhooks``: a webhook for that URL that covers every handled event type is already
   there → nothing is done (a restart, or a second replica, registers nothing);
2. otherwise ``POST /v1/webhooks`` ``{url, events, secret}`` with an ``Idempotency-Key``
   derived from the URL, the events and a digest of the secret (contract §7.1): replicas
   starting at the same moment send the same key, so the factory creates one webhook;
3. the new webhook is looked for in a fresh list: a replayed answer about a webhook deleted
   since (the factory keeps idempotent answers for 24 h) is registered again under a new key
   derived from the old one and the deleted webhook's id (so replicas still agree);
4. webhooks for the same URL that lack event types (left by an older bridge) are deleted once
   the new one exists.

:meth:`WebhookRegistrar.replace` deletes this URL's webhooks and registers anew: the step of
a secret rotation that gives the factory the new secret (README, "Rotating the webhook secret").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.factory.client import FactoryClient, FactoryError
from bot.factory.events import KNOWN_EVENT_TYPES

__all__ = [
    "EVENTS_PATH",
    "HANDLED_EVENTS",
    "Registration",
    "WebhookRegistrar",
    "WebhookRegistration",
    "endpoint_url",
]

log = logging.getLogger(__name__)

#: Replayed answers about deleted webhooks tolerated in one registration before giving up.
_MAX_REPLAYS = 8

#: The bridge's intake path (:mod:`bot.factory.intake`).
EVENTS_PATH = "/events"

#: Event types the bridge registers for: the ones it acts on (:data:`KNOWN_EVENT_TYPES`).
HANDLED_EVENTS: tuple[str, ...] = tuple(sorted(KNOWN_EVENT_TYPES))


def endpoint_url(public_url: str) -> str:
    """``<public_url>/events``: where the factory is asked to deliver (``BRIDGE_PUBLIC_URL``)."""
    return public_url.rstrip("/") + EVENTS_PATH


@dataclass(frozen=True)
class Registration:
    """What :meth:`WebhookRegistrar.ensure` did.

    Attributes
    ----------
    outcome : {"already registered", "registered", "replaced"}
        Nothing to do, a webhook created, or a webhook created and older ones for the URL
        deleted.
    webhook : dict
        The factory's ``Webhook`` for the bridge's URL.
    """

    outcome: Literal["already registered", "registered", "replaced"]
    webhook: dict[str, Any]


class WebhookRegistrar:
    """Makes sure the factory delivers the handled events to the bridge (see the module text).

    Parameters
    ----------
    factory
        The factory API client.
    public_url
        ``BRIDGE_PUBLIC_URL``: the bridge's address as the factory reaches it.
    secret
        ``FACTORY_WEBHOOK_SECRET``: the factory signs deliveries with it.
    events
        Event types to register (default: every type the bridge handles).
    """

    def __init__(
        self,
        factory: FactoryClient,
        *,
        public_url: str,
        secret: str,
        events: Sequence[str] = HANDLED_EVENTS,
    ) -> None:
        self.factory = factory
        self.url = endpoint_url(public_url)
        self.events = sorted(set(events))
        self._secret = secret
        self._secret_digest = hashlib.sha256(secret.encode()).hexdigest()[:16]

    async def registered(self) -> list[dict[str, Any]]:
        """Every webhook registered at the factory (``GET /v1/webhooks``)."""
        return await self.factory.list_webhooks()

    def is_ours(self, webhook: dict[str, Any]) -> bool:
        """True when ``webhook`` delivers to this bridge's URL."""
        return str(webhook.get("url") or "").rstrip("/") == self.url

    def covers(self, webhook: dict[str, Any]) -> bool:
        """True when ``webhook`` is ours and subscribes to every event type we register."""
        return self.is_ours(webhook) and set(self.events) <= set(webhook.get("events") or [])

    async def ensure(self) -> Registration:
        """Register once (steps 1–4 of the module text).

        Raises
        ------
        bot.factory.client.FactoryError, bot.factory.client.FactoryUnavailable
            When the factory refuses or cannot be reached (after the retry policy).
        """
        hooks = await self.registered()
        covering = [h for h in hooks if self.covers(h)]
        if covering:
            return Registration("already registered", covering[0])
        stale = [h for h in hooks if self.is_ours(h)]
        created = await self._create(seed_extra="")
        for hook in stale:
            await self._delete(hook)
        return Registration("replaced" if stale else "registered", created)

    async def replace(self) -> Registration:
        """Delete this URL's webhooks, then register anew (a new secret reaches the factory).

        Raises
        ------
        bot.factory.client.FactoryError, bot.factory.client.FactoryUnavailable
            As for :meth:`ensure`.
        """
        hooks = [h for h in await self.registered() if self.is_ours(h)]
        for hook in hooks:
            await self._delete(hook)
        seed = ",".join(sorted(str(h.get("id")) for h in hooks))
        created = await self._create(seed_extra=f"replacing:{seed}")
        return Registration("replaced" if hooks else "registered", created)

    async def _create(self, *, seed_extra: str) -> dict[str, Any]:
        seed = f"webhook:{self.url}:{','.join(self.events)}:{self._secret_digest}:{seed_extra}"
        for _ in range(_MAX_REPLAYS):
            created = await self._post(seed)
            ids = {str(h.get("id")) for h in await self.registered()}
            if str(created.get("id")) in ids:
                return created
            # a replayed answer about a webhook deleted since: register under a new key
            log.info("webhook %s no longer exists at the factory: registering again", created)
            seed = f"{seed}:after:{created.get('id')}"
        raise FactoryError(
            409, "CONFLICT", f"the factory does not keep the webhook for {self.url} registered"
        )

    async def _post(self, seed: str) -> dict[str, Any]:
        return await self.factory.create_webhook(
            url=self.url,
            events=self.events,
            secret=self._secret,
            idempotency_key=self.factory.new_idempotency_key(seed),
        )

    async def _delete(self, hook: dict[str, Any]) -> None:
        try:
            await self.factory.delete_webhook(str(hook.get("id")))
        except FactoryError as exc:
            if exc.status != 404:  # gone already (another replica): fine
                raise


class WebhookRegistration:
    """The app feature: :meth:`WebhookRegistrar.ensure` in the background at start.

    A failure is logged, never fatal: the bridge still takes events (WebSocket, reconciliation,
    a webhook registered by hand).

    Parameters
    ----------
    registrar
        What registers.
    """

    def __init__(self, registrar: WebhookRegistrar) -> None:
        self.registrar = registrar
        self._task: asyncio.Task[None] | None = None
        #: the outcome, once registration finished
        self.result: Registration | None = None

    async def start(self) -> None:
        """Start registering (returns at once)."""
        self._task = asyncio.create_task(self._run(), name="webhook-registration")

    async def _run(self) -> None:
        try:
            self.result = await self.registrar.ensure()
        except Exception as exc:
            log.error(
                "could not register %s with the factory: %s", self.registrar.url, exc or repr(exc)
            )
            return
        log.info(
            "factory webhook %s for %s: %s (%d event types)",
            self.result.webhook.get("id"),
            self.registrar.url,
            self.result.outcome,
            len(self.registrar.events),
        )

    async def stop(self) -> None:
        """Stop a registration still under way."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
