"""A form submission carries whatever task id its client put in the form's custom_id: a form
opened on one task cannot decide another task in a way that task's own controls (and
``/factory``) refuse (README "Task types"). A form of a kind the bridge never opens is answered,
not left as "interaction failed".

The submissions are hand-made (the emulator's ``forged`` mode, the form's id changed after the
bridge opened it), as a modified client could send them.
"""

from __future__ import annotations

from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess
from tests.support.reading import task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"


async def _reject_form_on_plain_task(world: World):  # type: ignore[no-untyped-def]
    """Alice's Reject form, opened on an ordinary task's message."""
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 2, 15)
    plain = next(m for m in task_messages(world) if "Plain" in m.embeds[0]["title"])
    opened = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Reject", user=world.people.alice, message_id=plain.id
    )
    await opened.response()
    assert opened.modal is not None
    return opened


async def test_a_reject_form_carrying_a_manual_tasks_id_rejects_nothing(
    world: World, bridge: BridgeProcess
) -> None:
    manual = await world.factory.create_task(title="Manual", priority="high", type="manual_action")
    await world.factory.create_task(title="Plain", priority="high")
    opened = await _reject_form_on_plain_task(world)
    nonce = opened.modal["custom_id"].rsplit(":", 1)[1]
    opened.modal["custom_id"] = f"fb:m:reject:{manual['id']}:{nonce}"
    submitted = await world.discord.submit_modal(opened, {"reason": "forged"}, forged=True)
    await submitted.response()
    await world.discord.wait_for(lambda: "has no Reject" in (submitted.reply_content or ""), 10)
    assert world.factory.calls("POST", COMPLETE) == []
    assert world.factory.tasks[manual["id"]].get("decision") is None


async def test_a_form_of_an_unknown_kind_is_answered(world: World, bridge: BridgeProcess) -> None:
    await world.factory.create_task(title="Other", priority="high")
    await world.factory.create_task(title="Plain", priority="high")
    opened = await _reject_form_on_plain_task(world)
    opened.modal["custom_id"] = opened.modal["custom_id"].replace("fb:m:reject:", "fb:m:nuke:")
    submitted = await world.discord.submit_modal(opened, {"reason": "x"}, forged=True)
    await submitted.response()
    assert "not valid; nothing was changed" in (submitted.reply_content or "")
    assert world.factory.calls("POST", COMPLETE) == []
