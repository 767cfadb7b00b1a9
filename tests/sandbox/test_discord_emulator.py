"""The real discord.py client against the Discord emulator.

Every test starts an emulator on an ephemeral port and (mostly) a real ``discord.Client``
connected to it, then acts as a person and checks what the bot did — and that Discord's
rules (deadline, acknowledgement, follow-up window, limits, rate limits, closed DMs) are
enforced with Discord's own error codes. Time-dependent rules use the emulator clock
(``emulator.advance``); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from bot.discord.endpoints import DEFAULT_API_BASE_URL, DEFAULT_GATEWAY_URL, point_discord_at
from sandbox.discord_emulator import (
    SEND_MESSAGES,
    VIEW_CHANNEL,
    ChannelSpec,
    DiscordEmulator,
    GuildSpec,
    MemberSpec,
    RoleSpec,
)

TOKEN = "test-token"
GUILD_ID = 1000
DECISIONS = 2000
ALERTS = 2001
OPS_ROLE = 3000
ALICE_ID = 4000
BOB_ID = 4001


def make_guild() -> GuildSpec:
    return GuildSpec(
        id=GUILD_ID,
        name="Factory",
        channels=[ChannelSpec(DECISIONS, "decisions"), ChannelSpec(ALERTS, "alerts")],
        roles=[RoleSpec(OPS_ROLE, "Ops", permissions=0)],
        members=[
            MemberSpec(ALICE_ID, "alice", roles=[OPS_ROLE]),
            MemberSpec(BOB_ID, "bob", dm_closed=True),
        ],
    )


class Bot(discord.Client):
    """A minimal bot: a command tree with ``/factory status`` and an on_message log."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.members = True
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.seen_messages: list[str] = []

    async def on_message(self, message: discord.Message) -> None:
        self.seen_messages.append(message.content)


@contextlib.asynccontextmanager
async def running_emulator(**kwargs: Any) -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(make_guild(), token=TOKEN, **kwargs)
    await emulator.start()
    point_discord_at(emulator.api_base_url, emulator.gateway_url)
    try:
        yield emulator
        assert not emulator.internal_errors, emulator.internal_errors
        assert emulator.spec is not None, "Discord's API description (shared/specs) not found"
        assert not emulator.spec_violations, emulator.spec_violations
    finally:
        await emulator.stop()
        point_discord_at(DEFAULT_API_BASE_URL, DEFAULT_GATEWAY_URL)


@contextlib.asynccontextmanager
async def running_bot(emulator: DiscordEmulator, bot: discord.Client) -> AsyncIterator[None]:
    task = asyncio.create_task(bot.start(TOKEN))
    try:
        await emulator.wait_for(lambda: bot.is_ready() or task.done(), 5, description="on_ready")
        if task.done():
            task.result()
        yield
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    async with running_emulator() as emu:
        yield emu


@pytest.fixture
async def bot(emulator: DiscordEmulator) -> AsyncIterator[Bot]:
    client = Bot()
    async with running_bot(emulator, client):
        yield client


def channel(bot: discord.Client, channel_id: int = DECISIONS) -> discord.TextChannel:
    found = bot.get_channel(channel_id)
    assert isinstance(found, discord.TextChannel)
    return found


class OneButton(discord.ui.View):
    """A view with one button whose callback is supplied by the test."""

    def __init__(self, label: str, callback: Any) -> None:
        super().__init__(timeout=None)
        button: discord.ui.Button[OneButton] = discord.ui.Button(label=label)
        button.callback = callback  # type: ignore[method-assign]
        self.add_item(button)


# --------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------


async def test_connects_and_sees_the_guild(emulator: DiscordEmulator, bot: Bot) -> None:
    guild = bot.get_guild(GUILD_ID)
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"decisions", "alerts"}
    assert {r.name for r in guild.roles} >= {"@everyone", "Ops", "Factory Bridge"}
    alice = guild.get_member(ALICE_ID)
    assert alice is not None and [r.id for r in alice.roles[1:]] == [OPS_ROLE]
    assert guild.get_member(BOB_ID) is not None
    assert guild.me.guild_permissions.mention_everyone
    assert bot.user is not None and bot.user.id == emulator.bot_user_id
    assert emulator.ready_count == 1 and emulator.connected
    fetched = await guild.fetch_member(ALICE_ID)
    assert fetched.name == "alice"


async def test_wrong_token_is_refused(emulator: DiscordEmulator) -> None:
    client = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
    assert emulator.errors[-1].status == 401


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def add_factory_commands(bot: Bot, answers: list[str]) -> None:
    group = app_commands.Group(name="factory", description="Factory controls")

    async def line_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        lines = ["line-a", "line-b", "other"]
        return [app_commands.Choice(name=x, value=x) for x in lines if x.startswith(current)]

    @group.command(name="status", description="Show a line's status")
    @app_commands.autocomplete(line=line_autocomplete)
    async def status(interaction: discord.Interaction, line: str, limit: int = 3) -> None:
        answers.append(f"{line}:{limit}:{interaction.user.id}")
        await interaction.response.send_message(f"{line} is running ({limit})", ephemeral=True)
        await interaction.followup.send("details follow")

    bot.tree.add_command(group, guild=discord.Object(GUILD_ID))


async def test_command_sync_is_recorded(emulator: DiscordEmulator, bot: Bot) -> None:
    add_factory_commands(bot, [])
    synced = await bot.tree.sync(guild=discord.Object(GUILD_ID))
    assert [c.name for c in synced] == ["factory"] and synced[0].id
    (factory,) = emulator.synced_commands[GUILD_ID]
    assert factory["name"] == "factory" and factory["guild_id"] == str(GUILD_ID)
    (sub,) = factory["options"]
    assert (sub["type"], sub["name"]) == (1, "status")
    assert [(o["name"], o["type"], o.get("required")) for o in sub["options"]] == [
        ("line", 3, True),
        ("limit", 4, False),
    ]


async def test_slash_command_and_autocomplete_reach_the_bot(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    answers: list[str] = []
    add_factory_commands(bot, answers)
    await bot.tree.sync(guild=discord.Object(GUILD_ID))

    choices = await emulator.autocomplete(
        "factory status", {"line": "line"}, "line", user=ALICE_ID, channel_id=DECISIONS
    )
    assert [c["value"] for c in choices] == ["line-a", "line-b"]

    rec = await emulator.run_command(
        "factory status", {"line": "line-a", "limit": 7}, user=ALICE_ID, channel_id=DECISIONS
    )
    callback = await rec.response()
    assert callback.type == 4 and callback.ephemeral
    assert rec.reply_content == "line-a is running (7)"
    assert answers == [f"line-a:7:{ALICE_ID}"]
    await emulator.wait_for(lambda: len(rec.followups) == 1)
    assert rec.followups[0].content == "details follow"

    with pytest.raises(LookupError, match="not synced"):
        await emulator.run_command("deploy", user=ALICE_ID, channel_id=DECISIONS)
    with pytest.raises(ValueError, match="required options missing"):
        await emulator.run_command("factory status", {}, user=ALICE_ID, channel_id=DECISIONS)


# --------------------------------------------------------------------------------------------
# Messages, buttons, modals
# --------------------------------------------------------------------------------------------


async def test_message_with_embed_and_buttons_is_recorded(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    async def noop(interaction: discord.Interaction) -> None:
        await interaction.response.defer()

    view = OneButton("✅ Approve", noop)
    view.add_item(discord.ui.Button(label="Runbook", url="https://example.com/runbook"))
    embed = discord.Embed(title="Deploy line-a?", description="Tests passed")
    embed.add_field(name="Risk", value="low")
    sent = await channel(bot).send("Decision needed", embed=embed, view=view)

    (msg,) = emulator.messages(DECISIONS)
    assert msg.id == sent.id and msg.content == "Decision needed"
    assert msg.embeds[0]["title"] == "Deploy line-a?"
    assert msg.embeds[0]["fields"] == [{"name": "Risk", "value": "low", "inline": True}]
    assert msg.button_labels == ["✅ Approve", "Runbook"]
    assert msg.components[0]["type"] == 1
    await emulator.wait_for(lambda: "Decision needed" in bot.seen_messages)

    with pytest.raises(ValueError, match="link button"):
        await emulator.press_button(DECISIONS, "Runbook", user=ALICE_ID)
    with pytest.raises(LookupError, match="Approve"):
        await emulator.press_button(DECISIONS, "Reject", user=ALICE_ID)

    fetched = await channel(bot).fetch_message(sent.id)
    assert fetched.embeds[0].title == "Deploy line-a?"
    history = [m.id async for m in channel(bot).history(limit=10)]
    assert history == [sent.id]
    await sent.delete()
    assert emulator.messages(DECISIONS)[0].deleted


async def test_button_press_reaches_callback_and_edit_is_recorded(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    pressed_by: list[int] = []

    async def approve(interaction: discord.Interaction) -> None:
        pressed_by.append(interaction.user.id)
        await interaction.response.edit_message(content="Approved by alice", view=None)

    sent = await channel(bot).send("Deploy?", view=OneButton("✅ Approve", approve))
    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    callback = await rec.response()

    assert callback.type == 7
    assert pressed_by == [ALICE_ID]
    msg = emulator.message(sent.id)
    assert msg is not None and msg.content == "Approved by alice"
    assert msg.edits == [callback.data] and msg.components == []
    assert not emulator.errors


async def test_late_answer_is_refused_with_10062(emulator: DiscordEmulator, bot: Bot) -> None:
    codes: list[int] = []

    async def slow(interaction: discord.Interaction) -> None:
        emulator.advance(3.5)  # the bot "took" 3.5 s
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            codes.append(exc.code)

    await channel(bot).send("Deploy?", view=OneButton("Approve", slow))
    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    await emulator.wait_for(lambda: bool(codes))
    assert codes == [10062]
    assert not rec.acknowledged and rec.rejected[0].code == 10062
    assert emulator.errors[-1].body == {"code": 10062, "message": "Unknown interaction"}


async def test_second_initial_response_is_refused_with_40060(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    codes: list[int] = []

    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first")
        try:  # a second handler answering the same interaction
            await discord.InteractionResponse(interaction).send_message("second")
        except discord.HTTPException as exc:
            codes.append(exc.code)

    await channel(bot).send("Deploy?", view=OneButton("Approve", twice))
    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    await emulator.wait_for(lambda: bool(codes))
    assert codes == [40060]
    assert [c.type for c in rec.callbacks] == [4] and rec.reply_content == "first"


async def test_followup_after_fifteen_minutes_fails(emulator: DiscordEmulator, bot: Bot) -> None:
    outcome: list[Any] = []

    async def defer_then_wait(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="Working on it")
        emulator.advance(901)
        try:
            await interaction.followup.send("done")
        except discord.NotFound as exc:
            outcome.append(exc.code)

    sent = await channel(bot).send("Deploy?", view=OneButton("Approve", defer_then_wait))
    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    await emulator.wait_for(lambda: bool(outcome))
    assert outcome == [10015]
    assert rec.response_type == 6 and rec.followups == []
    msg = emulator.message(sent.id)
    assert msg is not None and msg.content == "Working on it"  # @original after type 6


async def test_deferred_thinking_is_replaced_by_first_followup(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    async def think(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("Deployed")
        await interaction.followup.send("Logs attached")

    await channel(bot).send("Deploy?", view=OneButton("Approve", think))
    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    await emulator.wait_for(lambda: len(rec.followups) == 2)
    assert rec.response_type == 5
    assert rec.reply_content == "Deployed"
    assert [m.content for m in rec.followups] == ["Deployed", "Logs attached"]


async def test_modal_opened_by_button_is_submitted(emulator: DiscordEmulator, bot: Bot) -> None:
    reasons: list[str] = []

    class RejectModal(discord.ui.Modal, title="Reject deploy"):
        reason: discord.ui.TextInput[RejectModal] = discord.ui.TextInput(
            label="Reason", custom_id="reason"
        )
        details: discord.ui.Label[RejectModal] = discord.ui.Label(
            text="Details", component=discord.ui.TextInput(custom_id="details", required=False)
        )

        async def on_submit(self, interaction: discord.Interaction) -> None:
            details = self.details.component
            assert isinstance(details, discord.ui.TextInput)
            reasons.extend([self.reason.value, details.value])
            await interaction.response.edit_message(content=f"Rejected: {self.reason.value}")

    async def open_modal(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(RejectModal())

    sent = await channel(bot).send("Deploy?", view=OneButton("Reject", open_modal))
    opened = await emulator.press_button(DECISIONS, "Reject", user=ALICE_ID)
    assert (await opened.response()).type == 9
    assert opened.modal is not None and opened.modal["title"] == "Reject deploy"

    submitted = await emulator.submit_modal(
        opened, {"Reason": "flaky integration test", "details": "see run 42"}
    )
    assert (await submitted.response()).type == 7
    assert reasons == ["flaky integration test", "see run 42"]
    msg = emulator.message(sent.id)
    assert msg is not None and msg.content == "Rejected: flaky integration test"

    with pytest.raises(LookupError, match="inputs"):
        await emulator.submit_modal(opened, {"Why": "x"})


async def test_select_menu_choice_reaches_callback(emulator: DiscordEmulator, bot: Bot) -> None:
    chosen: list[list[str]] = []
    select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
        placeholder="Pick a line",
        options=[
            discord.SelectOption(label="A", value="a"),
            discord.SelectOption(label="B", value="b"),
        ],
    )

    async def on_select(interaction: discord.Interaction) -> None:
        chosen.append(select.values)
        await interaction.response.defer()

    select.callback = on_select  # type: ignore[method-assign]
    view = discord.ui.View(timeout=None)
    view.add_item(select)
    await channel(bot).send("Which line?", view=view)
    rec = await emulator.choose(DECISIONS, "Pick a line", ["b"], user=ALICE_ID)
    await rec.response()
    assert chosen == [["b"]]
    with pytest.raises(ValueError, match="not options"):
        await emulator.choose(DECISIONS, "Pick a line", ["z"], user=ALICE_ID)


# --------------------------------------------------------------------------------------------
# Limits, rate limits, DMs, injected failures
# --------------------------------------------------------------------------------------------


async def test_oversized_embed_is_refused_with_50035(emulator: DiscordEmulator, bot: Bot) -> None:
    with pytest.raises(discord.HTTPException) as caught:
        await channel(bot).send(embed=discord.Embed(title="x" * 257))
    assert caught.value.code == 50035
    body = emulator.errors[-1].body
    assert body["errors"]["embeds"]["0"]["title"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert emulator.messages(DECISIONS) == []
    assert [v.operation for v in emulator.spec_violations] == ["/channels/{channel_id}/messages"]
    emulator.spec_violations.clear()  # sent on purpose


def _row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def _button(custom_id: str, label: str = "Go") -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": label, "custom_id": custom_id}


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"content": "x" * 2001}, ["content"]),
        ({"embeds": [{"title": "t"}] * 11}, ["embeds"]),
        ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, ["embeds"]),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, ["embeds", "0", "fields"]),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
            ["embeds", "0", "fields", "0", "value"],
        ),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, ["embeds", "0", "footer", "text"]),
        ({"components": [_row(_button(f"b{i}")) for i in range(6)]}, ["components"]),
        (
            {"components": [_row(*[_button(f"b{i}") for i in range(6)])]},
            ["components", "0", "components"],
        ),
        (
            {"components": [_row(_button("same"), _button("same"))]},
            ["components", "0", "components", "1", "custom_id"],
        ),
        (
            {"components": [_row(_button("x" * 101))]},
            ["components", "0", "components", "0", "custom_id"],
        ),
        (
            {"components": [_row(_button("ok", label="l" * 81))]},
            ["components", "0", "components", "0", "label"],
        ),
        (
            {
                "components": [
                    _row(
                        {"type": 2, "style": 5, "label": "L", "custom_id": "c", "url": "https://x"}
                    )
                ]
            },
            ["components", "0", "components", "0", "custom_id"],
        ),
        (
            {
                "components": [
                    _row(
                        {"type": 3, "custom_id": "s", "options": [{"label": "o", "value": "o"}]},
                        _button("b"),
                    )
                ]
            },
            ["components", "0", "components"],
        ),
        (
            {
                "components": [
                    _row(
                        {
                            "type": 3,
                            "custom_id": "s",
                            "options": [{"label": f"{i}", "value": f"{i}"} for i in range(26)],
                        }
                    )
                ]
            },
            ["components", "0", "components", "0", "options"],
        ),
    ],
)
@pytest.mark.parametrize("spec_strict", [True, False], ids=["spec-strict", "own-checks"])
async def test_message_limits_are_enforced(
    emulator: DiscordEmulator, payload: dict[str, Any], path: list[str], spec_strict: bool
) -> None:
    """Discord's documented limits, answered by the API-description check or (lenient) by the
    emulator's own checks with the same field path."""
    emulator.spec_strict = spec_strict
    url = f"{emulator.api_base_url}/channels/{DECISIONS}/messages"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as session:
        async with session.post(url, json={"content": "hi", **payload}) as response:
            assert response.status == 400
            assert response.headers["Content-Type"] == "application/json"
            body = await response.json()
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    node = body["errors"]
    for part in path:
        node = node[part]
    assert node["_errors"], body
    emulator.spec_violations.clear()  # sent on purpose


async def test_rest_requires_the_token_and_answers_exact_json(emulator: DiscordEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{emulator.api_base_url}/users/@me") as response:
            assert response.status == 401
            assert response.headers["Content-Type"] == "application/json"
            assert await response.json() == {"code": 0, "message": "401: Unauthorized"}


async def test_sixth_message_in_window_is_rate_limited_and_retried() -> None:
    async with running_emulator(channel_rate_limit=5, channel_rate_window_seconds=0.5) as emu:
        client = Bot()
        async with running_bot(emu, client):
            for n in range(6):
                await channel(client).send(f"update {n}")
            assert [m.content for m in emu.messages(DECISIONS)] == [f"update {n}" for n in range(6)]
            limited = [e for e in emu.errors if e.status == 429]
            assert len(limited) == 1
            assert 0 < limited[0].body["retry_after"] <= 0.5
            await channel(client, ALERTS).send("other channel is not limited")


async def test_dm_to_closed_user_gets_50007(emulator: DiscordEmulator, bot: Bot) -> None:
    guild = bot.get_guild(GUILD_ID)
    assert guild is not None
    alice, bob = guild.get_member(ALICE_ID), guild.get_member(BOB_ID)
    assert alice is not None and bob is not None
    await alice.send("Your decision is needed")
    assert [m.content for m in emulator.dm_messages(ALICE_ID)] == ["Your decision is needed"]
    with pytest.raises(discord.Forbidden) as caught:
        await bob.send("Your decision is needed")
    assert caught.value.code == 50007
    assert emulator.dm_messages(BOB_ID) == []


async def test_everyone_mention_needs_permission_and_allowed_mentions(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    await channel(bot).send(
        f"@here <@{ALICE_ID}> please decide",
        allowed_mentions=discord.AllowedMentions(everyone=True, users=True),
    )
    await channel(bot).send("@here quiet", allowed_mentions=discord.AllowedMentions.none())
    loud, quiet = emulator.messages(DECISIONS)
    assert loud.mentions_everyone and loud.mentioned_user_ids == [ALICE_ID]
    assert not quiet.mentions_everyone and quiet.mentioned_user_ids == []


async def test_injected_failure_is_answered_once(emulator: DiscordEmulator, bot: Bot) -> None:
    emulator.fail_next("POST", r"/channels/\d+/messages$", 503)
    with pytest.raises(discord.DiscordServerError):
        await channel(bot).send("first try")
    await channel(bot).send("second try")
    assert [m.content for m in emulator.messages(DECISIONS)] == ["second try"]
    assert emulator.errors[-1].status == 503


async def test_file_upload_is_recorded_as_attachment(emulator: DiscordEmulator, bot: Bot) -> None:
    sent = await channel(bot).send("Build log", file=discord.File(io.BytesIO(b"ok\n"), "build.log"))
    (msg,) = emulator.messages(DECISIONS)
    assert msg.content == "Build log"
    assert [(a["filename"], a["size"]) for a in msg.attachments] == [("build.log", 3)]
    assert sent.attachments[0].filename == "build.log"


async def test_person_message_reaches_on_message(emulator: DiscordEmulator, bot: Bot) -> None:
    await emulator.say(DECISIONS, "is line-a done?", user=ALICE_ID)
    await emulator.wait_for(lambda: "is line-a done?" in bot.seen_messages)


# --------------------------------------------------------------------------------------------
# Gateway resilience
# --------------------------------------------------------------------------------------------


async def test_dropped_gateway_resumes_and_buttons_still_work(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    pressed: list[int] = []

    async def approve(interaction: discord.Interaction) -> None:
        pressed.append(interaction.user.id)
        await interaction.response.send_message("ok", ephemeral=True)

    await channel(bot).send("Deploy?", view=OneButton("Approve", approve))
    await emulator.drop_gateway()
    await emulator.wait_for(lambda: emulator.resume_count == 1, description="RESUME")
    assert emulator.ready_count == 1

    rec = await emulator.press_button(DECISIONS, "Approve", user=ALICE_ID)
    assert (await rec.response()).type == 4
    assert pressed == [ALICE_ID] and rec.ephemeral


# --------------------------------------------------------------------------------------------
# People tidy up: deleted messages, removed permissions, deleted channels
# --------------------------------------------------------------------------------------------


class DeleteWatcher(Bot):
    """A bot that records the gateway's MESSAGE_DELETE (GUILD_MESSAGES intent)."""

    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[int] = []

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.deleted.append(payload.message_id)


async def test_person_deleting_a_message_dispatches_delete_and_edits_get_10008(
    emulator: DiscordEmulator,
) -> None:
    watcher = DeleteWatcher()
    async with running_bot(emulator, watcher):
        sent = await channel(watcher).send("Approve the deploy?")
        await emulator.delete_message(DECISIONS, sent.id)
        await emulator.wait_for(lambda: watcher.deleted == [sent.id])
        with pytest.raises(discord.NotFound) as caught:
            await sent.edit(content="still there?")
        assert caught.value.code == 10008
        with pytest.raises(LookupError):
            await emulator.delete_message(DECISIONS, sent.id)


async def test_removed_permissions_and_deleted_channel_get_discords_codes(
    emulator: DiscordEmulator, bot: Bot
) -> None:
    sent = await channel(bot).send("first")
    emulator.set_bot_channel_permissions(DECISIONS, deny=SEND_MESSAGES)
    with pytest.raises(discord.Forbidden) as caught:
        await channel(bot).send("second")
    assert caught.value.code == 50013
    await sent.edit(content="first, edited")  # editing needs no Send Messages
    emulator.set_bot_channel_permissions(DECISIONS, deny=VIEW_CHANNEL)
    with pytest.raises(discord.Forbidden) as caught:
        await sent.edit(content="again")
    assert caught.value.code == 50001
    emulator.set_bot_channel_permissions(DECISIONS)
    await channel(bot).send("second")
    emulator.delete_channel(ALERTS)
    with pytest.raises(discord.NotFound) as caught:
        await bot.get_partial_messageable(ALERTS).send("alert")
    assert caught.value.code == 10003
    assert [m.content for m in emulator.messages(DECISIONS)] == ["first, edited", "second"]


async def test_edits_of_hour_old_messages_beyond_the_budget_get_30046() -> None:
    async with running_emulator(
        old_message_edit_limit=2, old_message_edit_window_seconds=60
    ) as emu:
        client = Bot()
        async with running_bot(emu, client):
            old = await channel(client).send("posted an hour ago")
            emu.advance(3601)  # emulator clock: the message is now older than one hour
            young = await channel(client).send("posted now")
            await old.edit(content="edit 1")
            await old.edit(content="edit 2")
            with pytest.raises(discord.HTTPException) as caught:
                await old.edit(content="edit 3")
            assert (caught.value.status, caught.value.code) == (429, 30046)
            for n in range(3):  # a young message of the channel is not limited by it
                await young.edit(content=f"young edit {n}")
            emu.advance(61)  # the window passes: old edits are taken again
            await old.edit(content="edit 3, later")
            assert emu.message(old.id).content == "edit 3, later"  # type: ignore[union-attr]
            assert [m for _, _, m in emu.edit_log].count(old.id) == 3
