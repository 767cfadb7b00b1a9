"""Alert and deploy lines: each channel on its own, once, and marked processed at once.

:class:`bot.discord.event_posts.EventPosts` through the real notifier on a fake Discord: a
channel the bot cannot use (Discord: 403 error code 50013) is reported to the real
:class:`~bot.channel_access.ChannelAccess` and skipped without failing the event; a 503 fails the
event after every channel was tried, and its retry posts only where the line is missing. The
event processor marks such an event processed as soon as it is handled (a crash later in the
run does not post its line again), feed and task events still a run at a time.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.channel_access import ChannelAccess
from bot.channel_map import ALERT_EVENT_TYPES, FEED_EVENT_TYPES, event_channels
from bot.discord.notifier import DiscordNotifier
from bot.discord.pacing import ChannelPacer
from bot.factory.events import FactoryEvent, parse_event
from bot.factory.processor import EventProcessor
from bot.roster import Operator, Roster
from bot.settings import Settings
from bot.store import Recorded, Store
from tests.support.harness import wait_until

TASKS, ALERTS, DEPLOYS, FEED = 100, 200, 300, 400
DAVE = 42  # the on-call admin


def envelope(event_type: str, data: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": f"2026-11-21T10:00:{n:02d}Z",
        "channel": "deploys:*",
        "data": data,
    }


def deploy(status: str, n: int = 0) -> dict[str, Any]:
    data = {
        "pipelineId": f"p{n}",
        "pipelineName": f"svc-{n}",
        "target": "production",
        "version": "1.2.0",
        "status": status,
    }
    return envelope(f"deploy.{status}", data, n)


def stage(n: int) -> dict[str, Any]:
    data = {
        "pipelineId": f"s{n}",
        "pipelineName": f"s{n}",
        "fromStage": "building",
        "toStage": "testing",
        "triggeredBy": "agent-1",
    }
    return envelope("pipeline.stage_changed", data, n)


def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_bot_token="t",
        discord_guild_id=1,
        discord_tasks_channel_id=TASKS,
        discord_alerts_channel_id=ALERTS,
        discord_deploys_channel_id=DEPLOYS,
        discord_feed_channel_id=FEED,
        factory_api_key="k",
        factory_webhook_secret="s",
    )


def refusal(status: int, code: int) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="x")
    if status == 403:
        return discord.Forbidden(response, {"code": code, "message": "Missing Permissions"})
    return discord.HTTPException(response, {"code": code, "message": "Service Unavailable"})


class FakeDiscord:
    """Channels that answer: ``fail[channel]`` is a list of errors raised by the next posts."""

    def __init__(self) -> None:
        self.fail: dict[int, list[discord.HTTPException]] = {}
        self.denied: set[int] = set()
        self.posts: list[tuple[int, str]] = []
        self.ids = itertools.count(1)

    def client(self) -> Any:
        fake = self

        class Channel:
            def __init__(self, channel_id: int) -> None:
                self.channel_id = channel_id

            async def send(self, content: str | None = None, **kwargs: Any) -> Any:
                if self.channel_id in fake.denied:
                    raise refusal(403, 50013)
                if fake.fail.get(self.channel_id):
                    raise fake.fail[self.channel_id].pop(0)
                fake.posts.append((self.channel_id, content or ""))
                return SimpleNamespace(id=next(fake.ids))

        return SimpleNamespace(
            get_partial_messageable=lambda channel_id, guild_id=None: Channel(channel_id),
            get_channel=lambda channel_id: SimpleNamespace(
                name={DEPLOYS: "factory-deploys"}.get(channel_id)
            ),
            bridge=SimpleNamespace(access=None),
        )


class Told:
    def __init__(self) -> None:
        self.channel: list[str] = []
        self.dms: list[str] = []

    async def send(self, channel_id: int, text: str) -> None:
        assert channel_id == ALERTS
        self.channel.append(text)

    async def send_dm(self, user_id: int, text: str) -> None:
        self.dms.append(text)


def rig(store: Store, fake: FakeDiscord) -> tuple[DiscordNotifier, ChannelAccess, Told]:
    client = fake.client()
    unpaced = ChannelPacer(max_messages=10_000, per_seconds=1)
    notifier = DiscordNotifier(client, settings(), pacer=unpaced, edit_pacer=unpaced)
    told = Told()
    roster = Roster((Operator(name="dave", discord_user_id=DAVE, on_call=True, admin=True),))

    async def retry(task_id: str) -> None:
        raise AssertionError("no task waits")

    access = ChannelAccess(
        store=store,
        roster=roster,
        send=told.send,
        send_dm=told.send_dm,
        alerts_channel_id=ALERTS,
        retry=retry,
        interval_seconds=60,
    )
    client.bridge.access = access
    return notifier, access, told


async def test_a_refused_deploys_channel_is_reported_and_the_alert_still_posted(
    store: Store,
) -> None:
    fake = FakeDiscord()
    fake.denied.add(DEPLOYS)
    notifier, access, told = rig(store, fake)
    failed = parse_event(deploy("failed", 1))
    await notifier.post_event(failed)  # raises nothing
    await notifier.post_event(parse_event(deploy("started", 2)))
    assert [channel for channel, _ in fake.posts] == [ALERTS]
    assert "Deploy of **svc-1**" in fake.posts[0][1]
    assert access.health() == "no Send Messages in #factory-deploys"
    assert access.waiting == []  # nothing to retry: the line is not posted there
    assert len(told.channel) == 1 and "no Send Messages in #factory-deploys" in told.channel[0]
    assert len(told.dms) == 1  # once per outage, not once per line
    # access is back: the next line there ends the outage, once
    fake.denied.clear()
    await notifier.post_event(parse_event(deploy("succeeded", 3)))
    assert fake.posts[-1][0] == DEPLOYS
    assert access.health() is True
    assert sum("can use the channel again" in t for t in told.channel) == 1


async def test_a_503_fails_the_event_after_every_channel_and_the_retry_posts_only_the_missing(
    store: Store,
) -> None:
    fake = FakeDiscord()
    fake.fail[ALERTS] = [refusal(503, 0)]
    notifier, access, _ = rig(store, fake)
    failed = parse_event(deploy("failed", 1))
    with pytest.raises(discord.HTTPException):
        await notifier.post_event(failed)
    assert [channel for channel, _ in fake.posts] == [DEPLOYS]  # tried after the alerts 503
    await notifier.post_event(failed)  # the processor's retry
    assert [channel for channel, _ in fake.posts] == [DEPLOYS, ALERTS]
    await notifier.post_event(failed)  # a third attempt posts nothing
    assert len(fake.posts) == 2
    assert access.health() is True


def test_events_posted_in_the_alerts_or_deploys_channel_are_marked_at_once() -> None:
    # imported here: the other tests of this module run against a bridge without the rule
    from bot.factory.event_rules import MARKED_AT_ONCE_TYPES, marked_at_once

    config = settings()
    samples = [deploy("started"), deploy("succeeded"), deploy("failed"), stage(1)]
    agent = {"agentId": "a", "agentName": "a", "fromStatus": "idle", "currentTaskId": None}
    blocked = {"pipelineId": "p", "pipelineName": "p", "blockedAt": "review", "reason": "r"}
    samples += [
        envelope("agent.status_changed", {**agent, "toStatus": "error"}),
        envelope("agent.status_changed", {**agent, "toStatus": "working"}),
        envelope("pipeline.blocked", {**blocked, "taskId": "t1"}),
    ]
    for body in samples:
        event = parse_event(body)
        lines = set(event_channels(event, config)) & {ALERTS, DEPLOYS}
        assert marked_at_once(event) is bool(lines), body
    assert ALERT_EVENT_TYPES <= MARKED_AT_ONCE_TYPES
    assert not FEED_EVENT_TYPES & MARKED_AT_ONCE_TYPES
    assert not marked_at_once(parse_event(stage(2)))


async def test_an_event_that_posts_a_line_is_marked_before_the_next_is_handled(
    store: Store,
) -> None:
    bodies = [deploy("started", 1), stage(2), stage(3), deploy("failed", 4), stage(5)]
    unmarked_when: dict[str, list[str]] = {}

    async def handle(event: FactoryEvent) -> None:
        name = str(event.payload.pipeline_id)
        unmarked_when[name] = [r.event_id for r in await store.unprocessed_events()]

    processor = EventProcessor(store, handle)
    processor.start()
    await wait_until(processor.idle.is_set, what="the first read of the store")
    events = []
    for n, body in enumerate(bodies):
        event_id = f"evt-{n}"
        assert await store.record_event(event_id, body["type"], body, "webhook") is Recorded.NEW
        events.append((event_id, parse_event(body)))
    for event_id, event in events:  # one run: all handed over before the loop wakes
        processor.submit(event_id, event)
    await wait_until(lambda: len(unmarked_when) == 5, what="every event handled")
    await processor.stop()
    # a crash while handling s2 or later would not post the p1 deploy line again …
    assert "evt-0" not in unmarked_when["s2"]
    assert unmarked_when["s2"] == ["evt-1", "evt-2", "evt-3", "evt-4"]
    # … nor p4's while handling s5; the feed events before it were marked with it
    assert unmarked_when["s5"] == ["evt-4"]
    assert await store.unprocessed_events() == []
