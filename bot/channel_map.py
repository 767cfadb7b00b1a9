"""Which Discord channels an informational factory event goes to (the channel map).

Source: API and architecture research §6.2 (reference ``002_…``): ``#factory-feed`` takes
pipeline events, ``#factory-deploys`` deploy notifications, ``#factory-alerts`` "SLA breaches,
failures, critical issues". Failures are alerts whatever else is configured:

==================================================  =============================================
event                                               channels
==================================================  =============================================
``pipeline.blocked``, ``pipeline.failed``            alerts
``task.sla_breached``                               alerts (with a ping, :mod:`bot.sla_events`)
``deploy.failed``                                   alerts, and deploys when set
``deploy.started``, ``deploy.succeeded``            deploys (not posted when unset)
``agent.status_changed`` to ``error``               alerts (other statuses: not posted)
``pipeline.created`` / ``stage_changed`` /          feed (not posted when unset)
``completed``
==================================================  =============================================

The alerts channel is ``DISCORD_ALERTS_CHANNEL_ID`` or, unset, the tasks channel
(:attr:`bot.settings.Settings.alerts_channel_id`), so failures are always seen. A channel is
never posted to twice for one event (deploys and alerts may be the same channel).
"""

from __future__ import annotations

from bot.factory.events import AgentStatusPayload, FactoryEvent
from bot.settings import Settings

__all__ = ["AGENT_ERROR_STATUSES", "ALERT_EVENT_TYPES", "FEED_EVENT_TYPES", "event_channels"]

#: Event types that are failures or blockages: always posted in the alerts channel.
ALERT_EVENT_TYPES = frozenset(
    {"pipeline.blocked", "pipeline.failed", "task.sla_breached", "deploy.failed"}
)

#: Pipeline lifecycle events for the feed channel.
FEED_EVENT_TYPES = frozenset({"pipeline.created", "pipeline.stage_changed", "pipeline.completed"})

#: ``AgentStatus`` values (contract §1.4) that make an ``agent.status_changed`` an alert.
AGENT_ERROR_STATUSES = frozenset({"error"})


def event_channels(event: FactoryEvent, settings: Settings) -> tuple[int, ...]:
    """The channels ``event`` is posted to, in posting order; empty when it is not posted.

    Parameters
    ----------
    event
        A validated factory event (contract §1.6).
    settings
        The channel ids (``DISCORD_*_CHANNEL_ID``).

    Returns
    -------
    tuple[int, ...]
        Distinct Discord channel ids (see the module table).
    """
    channels: list[int] = []
    if event.type.startswith("deploy.") and settings.discord_deploys_channel_id:
        channels.append(settings.discord_deploys_channel_id)
    if event.type in ALERT_EVENT_TYPES:
        channels.append(settings.alerts_channel_id)
    elif (
        event.type == "agent.status_changed"
        and isinstance(event.payload, AgentStatusPayload)
        and event.payload.to_status.lower() in AGENT_ERROR_STATUSES
    ):
        channels.append(settings.alerts_channel_id)
    elif event.type in FEED_EVENT_TYPES and settings.discord_feed_channel_id:
        channels.append(settings.discord_feed_channel_id)
    return tuple(dict.fromkeys(channels))
