"""Requests are checked against Discord's published OpenAPI description of API v10.

The validator alone (:class:`sandbox.discord_spec.DiscordSpec`), then the emulator answering a
non-conforming request with Discord's ``400`` / ``50035 Invalid Form Body`` and the field path,
as raw HTTP and as discord.py sees it (``discord.HTTPException`` with code 50035).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.discord.endpoints import DEFAULT_API_BASE_URL, DEFAULT_GATEWAY_URL, point_discord_at
from sandbox.discord_emulator import ChannelSpec, DiscordEmulator, GuildSpec, MemberSpec
from sandbox.discord_spec import (
    SPEC_FILE_NAME,
    DiscordSpec,
    find_spec_file,
    load_default_spec,
)

TOKEN = "spec-token"
GUILD_ID = 7000
CHANNEL_ID = 7001
ALICE_ID = 7002


@pytest.fixture(scope="module")
def spec() -> DiscordSpec:
    loaded = load_default_spec()
    assert loaded is not None, f"shared/specs/{SPEC_FILE_NAME} not found beside the checkout"
    return loaded


def errors_at(tree: dict[str, Any], *path: str) -> list[dict[str, str]]:
    node: Any = tree
    for part in path:
        assert part in node, f"no errors at {path!r}: {json.dumps(tree)}"
        node = node[part]
    return list(node["_errors"])


#: What the bridge's task message looks like on the wire (discord.py's serialisation).
TASK_MESSAGE: dict[str, Any] = {
    "content": "<@&3000> a task needs a decision",
    "embeds": [
        {
            "type": "rich",
            "title": "Deploy GHL to production",
            "description": "Ships the new billing flow.",
            "color": 0xE74C3C,
            "timestamp": "2026-11-28T06:00:00+00:00",
            "fields": [{"name": "Priority", "value": "critical", "inline": True}],
            "footer": {"text": "task t-1"},
        }
    ],
    "components": [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 3, "label": "Approve", "custom_id": "fb:t:approve:t-1"},
                {"type": 2, "style": 4, "label": "Reject", "custom_id": "fb:t:reject:t-1"},
                {"type": 2, "style": 5, "label": "Details", "url": "https://example.com/t-1"},
            ],
        },
        {
            "type": 1,
            "components": [
                {
                    "type": 3,
                    "custom_id": "fb:s:t-1",
                    "placeholder": "Snooze",
                    "min_values": 1,
                    "max_values": 1,
                    "options": [{"label": "1 h", "value": "3600", "default": False}],
                }
            ],
        },
    ],
    "allowed_mentions": {"parse": [], "roles": [3000], "users": [4000], "replied_user": False},
    "message_reference": {"message_id": 12, "channel_id": 34, "fail_if_not_exists": False},
    "flags": 0,
    "tts": False,
}


# --------------------------------------------------------------------------------------------
# The validator
# --------------------------------------------------------------------------------------------


def test_a_conforming_task_message_passes(spec: DiscordSpec) -> None:
    assert spec.check("POST", f"/channels/{CHANNEL_ID}/messages", body=TASK_MESSAGE) == {}
    assert spec.check("PATCH", f"/channels/{CHANNEL_ID}/messages/9", body=TASK_MESSAGE) == {}


def test_embed_title_as_a_number_is_invalid_at_its_path(spec: DiscordSpec) -> None:
    body = {**TASK_MESSAGE, "embeds": [{"title": 42}]}
    errors = spec.check("POST", "/channels/1/messages", body=body)
    assert [e["code"] for e in errors_at(errors, "embeds", "0", "title")] == ["BASE_TYPE_STRING"]
    assert list(errors) == ["embeds"]


def test_a_component_of_unknown_type_is_invalid_at_the_component(spec: DiscordSpec) -> None:
    body = {"content": "x", "components": [{"type": 99, "components": []}]}
    errors = spec.check("POST", "/channels/1/messages", body=body)
    (error,) = errors_at(errors, "components", "0")
    assert error["code"] == "UNION_TYPE_CHOICES"


def test_a_bad_field_inside_a_known_component_is_reported_at_that_field(
    spec: DiscordSpec,
) -> None:
    button = {"type": 2, "style": 1, "label": 7, "custom_id": "b"}
    body = {"components": [{"type": 1, "components": [button]}]}
    errors = spec.check("POST", "/channels/1/messages", body=body)
    assert errors_at(errors, "components", "0", "components", "0", "label")


def test_content_over_2000_characters_is_invalid_though_the_description_allows_4000(
    spec: DiscordSpec,
) -> None:
    path = find_spec_file()
    assert path is not None
    raw = json.loads(path.read_text(encoding="utf-8"))
    content = raw["components"]["schemas"]["MessageCreateRequest"]["properties"]["content"]
    assert content["maxLength"] == 4000  # the description; Discord's documentation says 2000
    assert spec.check("POST", "/channels/1/messages", body={"content": "x" * 2000}) == {}
    errors = spec.check("POST", "/channels/1/messages", body={"content": "x" * 2001})
    assert errors_at(errors, "content") == [
        {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
    ]


def test_integer_snowflakes_are_accepted_as_discord_does(spec: DiscordSpec) -> None:
    assert spec.check("POST", "/users/@me/channels", body={"recipient_id": 4000}) == {}
    assert spec.check("POST", "/users/@me/channels", body={"recipient_id": "4000"}) == {}
    errors = spec.check("POST", "/users/@me/channels", body={"recipient_id": "alice"})
    assert errors_at(errors, "recipient_id")


def test_interaction_callbacks_are_checked_by_their_type(spec: DiscordSpec) -> None:
    path = "/interactions/1/token/callback"
    ephemeral = {"type": 4, "data": {"content": "⏳ Recording your decision…", "flags": 64}}
    assert spec.check("POST", path, body=ephemeral, query={"with_response": "1"}) == {}
    errors = spec.check("POST", path, body={"type": 4, "data": {"content": 5}})
    assert errors_at(errors, "data", "content")
    errors = spec.check("POST", path, body={"type": 42})
    assert errors_at(errors)[0]["code"] == "UNION_TYPE_CHOICES"


def test_a_modal_with_six_components_is_invalid_though_the_description_allows_40(
    spec: DiscordSpec,
) -> None:
    text = {"type": 4, "custom_id": "reason", "label": "Reason", "style": 2}
    row = {"type": 1, "components": [text]}
    modal = {"type": 9, "data": {"custom_id": "m", "title": "Reject", "components": [row]}}
    assert spec.check("POST", "/interactions/1/t/callback", body=modal) == {}
    modal["data"]["components"] = [row] * 6
    errors = spec.check("POST", "/interactions/1/t/callback", body=modal)
    assert errors_at(errors, "data", "components")[0]["code"] == "BASE_TYPE_MAX_LENGTH"


def test_query_strings_are_checked_with_discords_boolean_rule(spec: DiscordSpec) -> None:
    assert spec.check("GET", "/channels/1/messages", query=[("limit", "100")]) == {}
    errors = spec.check("GET", "/channels/1/messages", query=[("limit", "500")])
    assert errors_at(errors, "limit")[0]["code"] == "NUMBER_TYPE_MAX"
    for value in ("1", "true", "True", "0", "false", "False"):
        assert (
            spec.check("POST", "/webhooks/1/t", body={"content": "x"}, query={"wait": value}) == {}
        )
    errors = spec.check("POST", "/webhooks/1/t", body={"content": "x"}, query={"wait": "yes"})
    assert errors_at(errors, "wait")


def test_operations_match_by_method_and_template_literal_segments_first(
    spec: DiscordSpec,
) -> None:
    original = spec.match("PATCH", "/webhooks/1/token/messages/@original")
    assert original is not None
    assert original.template == "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    by_id = spec.match("PATCH", "/webhooks/1/token/messages/99")
    assert by_id is not None
    assert by_id.template == "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
    assert spec.match("PUT", "/channels/1/messages") is None
    assert errors_at(spec.check("GET", "/no/such/endpoint"))[0]["code"] == "UNKNOWN_OPERATION"


def test_validators_are_built_once_per_operation(spec: DiscordSpec) -> None:
    operation = spec.match("POST", "/channels/1/messages")
    assert operation is not None
    assert spec.body_validator(operation) is spec.body_validator(operation)
    assert load_default_spec() is spec


def test_the_description_is_found_beside_a_checkout_or_one_of_its_parents(tmp_path: Path) -> None:
    checkout = tmp_path / "work" / "checkout"
    checkout.mkdir(parents=True)
    assert find_spec_file(checkout) is None
    specs = tmp_path / "work" / "shared" / "specs"
    specs.mkdir(parents=True)
    (specs / SPEC_FILE_NAME).write_text("{}", encoding="utf-8")
    assert find_spec_file(checkout) == specs / SPEC_FILE_NAME


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


def make_guild() -> GuildSpec:
    return GuildSpec(
        id=GUILD_ID,
        name="Spec",
        channels=[ChannelSpec(CHANNEL_ID, "tasks")],
        roles=[],
        members=[MemberSpec(ALICE_ID, "alice")],
    )


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(make_guild(), token=TOKEN, **kwargs)
    await emulator.start()
    try:
        yield emulator
        assert not emulator.internal_errors, emulator.internal_errors
    finally:
        await emulator.stop()


async def post(
    emulator: DiscordEmulator, path: str, body: Any = None, *, data: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{emulator.api_base_url}{path}"
        async with session.post(url, json=body, data=data) as response:
            return response.status, await response.json(content_type=None)


async def test_the_emulator_answers_a_nonconforming_body_400_50035_and_records_it(
    spec: DiscordSpec,
) -> None:
    async with running() as emulator:
        status, answer = await post(
            emulator, f"/channels/{CHANNEL_ID}/messages", {"embeds": [{"title": 42}]}
        )
        assert status == 400
        assert answer["code"] == 50035 and answer["message"] == "Invalid Form Body"
        assert errors_at(answer["errors"], "embeds", "0", "title")
        (violation,) = emulator.spec_violations
        assert violation.operation == "/channels/{channel_id}/messages"
        assert violation.errors == answer["errors"]
        assert emulator.messages(CHANNEL_ID) == []
        status, _ = await post(emulator, f"/channels/{CHANNEL_ID}/messages", TASK_MESSAGE)
        assert status == 200
        assert len(emulator.spec_violations) == 1
        assert emulator.spec_checked == 2


async def test_the_payload_json_part_of_a_multipart_request_is_checked(spec: DiscordSpec) -> None:
    async with running() as emulator:
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps({"content": 5}), content_type="application/json")
        form.add_field("files[0]", b"hello", filename="a.txt", content_type="text/plain")
        status, answer = await post(emulator, f"/channels/{CHANNEL_ID}/messages", data=form)
        assert status == 400 and answer["code"] == 50035
        assert errors_at(answer["errors"], "content")


async def test_webhook_follow_ups_are_checked(spec: DiscordSpec) -> None:
    async with running() as emulator:
        path = f"/webhooks/{emulator.application_id}/no-such-token?wait=1"
        status, answer = await post(emulator, path, {"embeds": "not a list"})
        assert status == 400 and answer["code"] == 50035
        assert errors_at(answer["errors"], "embeds")


async def test_lenient_mode_records_and_lets_the_emulators_own_checks_answer(
    spec: DiscordSpec,
) -> None:
    async with running(spec_strict=False) as emulator:
        status, answer = await post(
            emulator, f"/channels/{CHANNEL_ID}/messages", {"content": "x" * 2001}
        )
        assert status == 400 and answer["code"] == 50035  # the emulator's own limit check
        assert len(emulator.spec_violations) == 1


async def test_without_the_description_the_emulator_runs_unchecked() -> None:
    async with running(check_spec=False) as emulator:
        assert emulator.spec is None
        status, _ = await post(emulator, f"/channels/{CHANNEL_ID}/messages", {"content": "ok"})
        assert status == 200
        assert emulator.spec_checked == 0 and emulator.spec_violations == []


def test_a_missing_description_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sandbox.discord_spec as discord_spec

    monkeypatch.setattr(discord_spec, "find_spec_file", lambda *starts: None)
    monkeypatch.setattr(discord_spec, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="sandbox.discord_spec"):
        assert load_default_spec() is None
        assert load_default_spec() is None
    warnings = [r for r in caplog.records if "conformance checks are off" in r.getMessage()]
    assert len(warnings) == 1


async def test_discord_py_gets_the_400_as_http_exception_50035(spec: DiscordSpec) -> None:
    async with running() as emulator:
        point_discord_at(emulator.api_base_url, emulator.gateway_url)
        client = discord.Client(intents=discord.Intents.none())
        try:
            await client.login(TOKEN)
            route = discord.http.Route(
                "POST", "/channels/{channel_id}/messages", channel_id=CHANNEL_ID
            )
            with pytest.raises(discord.HTTPException) as caught:
                await client.http.request(route, json={"embeds": [{"title": 42}]})
            assert caught.value.status == 400
            assert caught.value.code == 50035
            assert "embeds.0.title" in caught.value.text
        finally:
            await asyncio.wait_for(client.close(), 5)
            point_discord_at(DEFAULT_API_BASE_URL, DEFAULT_GATEWAY_URL)
