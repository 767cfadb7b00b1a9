"""``factory-bridge sandbox``: the emulators, the real bridge and a scenario, with a transcript.

Needs no token and no network: everything runs on 127.0.0.1 with a temporary SQLite database.
The scenario comes from the reference documents: a GHL production deploy (critical), a Stripe
code review (high), a Zendesk auth decision with options (high), a wave of routine reviews (freshdesk, helpscout, close — low risk — and ghl
with 42 failing tests), and a task nobody answers, which climbs the escalation ladder at an
accelerated pace. Each step is checked; the exit code is 0 only when every check held.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import BridgeApp, build_app
from bot.settings import Settings
from sandbox.discord_emulator import InteractionRecord, MemberSpec, RecordedMessage
from sandbox.phone_scenario import phone_step
from sandbox.transcript import Transcript
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World

__all__ = ["SANDBOX_SETTINGS", "run_sandbox"]

#: Settings of the sandbox bridge: the ladder and batching at an accelerated pace.
SANDBOX_SETTINGS: dict[str, object] = {
    "BATCH_ENABLED": "true",
    "BATCH_GROUP_WAIT_SECONDS": "2",
    "ESCALATION_DM_AFTER_SECONDS": "3",
    "ESCALATION_MENTION_AFTER_SECONDS": "6",
    "SLA_WARNING_THRESHOLD_PERCENT": "25",
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": "4",
    "ESCALATION_BUNDLE_SECONDS": "1",
    # no safe default: a task nobody decides stays open, so the phone step can show an
    # unanswered call going to the next person (a decision would stop the ladder)
    "ESCALATION_SAFE_DEFAULT": "none",
    "ESCALATION_CALL_NEXT_AFTER_SECONDS": "1",
    "FACTORY_RETRY_BASE_SECONDS": "0.2",
    "DEPLOY_REQUIRED_APPROVERS": "2",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Checks:
    """What the scenario verified, for the summary."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        """Record ``what`` as passed or failed; return ``ok``."""
        (self.passed if ok else self.failed).append(what)
        return ok


def _tests(total: int, failed: int = 0, skipped: int = 0, coverage: float = 94) -> dict[str, Any]:
    return {
        "total": total,
        "passed": total - failed - skipped,
        "failed": failed,
        "skipped": skipped,
        "coveragePercent": coverage,
    }


def _final(reply: str | None) -> bool:
    """True once an ephemeral answer is no longer the "⏳ working…" placeholder."""
    return bool(reply) and not str(reply).startswith("⏳")


class Scenario:
    """The scripted story; each method is one step with its checks."""

    def __init__(self, world: World, app: BridgeApp, transcript: Transcript) -> None:
        self.world = world
        self.app = app
        self.t = transcript
        self.checks = Checks()
        self.people = world.people

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        """Wait up to ``timeout`` seconds for ``predicate``; a timeout is recorded as a failed check."""
        try:
            await self.world.discord.wait_for(predicate, timeout, description=what)
        except TimeoutError:
            self.checks.check(False, what)
            return False
        return True

    def task_message(self, task_id: str) -> RecordedMessage | None:
        """The (non-ephemeral) message in #factory-tasks that shows ``task_id``, if any."""
        for message in self.world.discord.messages(TASKS_CHANNEL_ID):
            if not message.ephemeral and task_id in str(message.components) + str(message.embeds):
                return message
        return None

    def decision_of(self, task_id: str) -> str | None:
        """The decision the factory emulator recorded for ``task_id`` (``None``: pending)."""
        return self.world.factory.tasks[task_id].get("decision")

    async def deploy(self) -> None:
        """GHL production deploy: refusals without the roles, wrong word, then DEPLOY from two
        distinct deploy approvers (the two-person rule)."""
        t, discord = self.t, self.world.discord
        t.say("The factory asks: deploy the GHL MCP server to production (critical, 47/47, 94%)")
        task = await self.world.factory.create_task(
            title="GHL MCP Server → Production",
            priority="critical",
            stageName="production",
            pipelineId="ghl-mcp-server",
            context={
                "summary": "Staging is healthy. Ship ghl-mcp-server v1.4.0 to production.",
                "testResults": _tests(47),
            },
        )
        await self.until(lambda: self.task_message(task["id"]) is not None, 10, "GHL posted")
        t.flush()

        t.say("bob (no approver role) presses Approve")
        click = await discord.press_button(TASKS_CHANNEL_ID, "Approve", user=self.people.bob)
        answer = await click.response()
        t.ephemeral("bob", answer.content)
        self.checks.check(self.decision_of(task["id"]) is None, "bob is refused, nothing sent")

        t.say("alice (approver, but not a deploy approver) presses Approve")
        click = await discord.press_button(TASKS_CHANNEL_ID, "Approve", user=self.people.alice)
        answer = await click.response()
        t.ephemeral("alice", answer.content)
        self.checks.check(
            self.decision_of(task["id"]) is None, "a production deploy needs the deploy role"
        )

        t.say("dave (deploy approver) presses Approve: a modal asks him to type DEPLOY")
        click = await discord.press_button(TASKS_CHANNEL_ID, "Approve", user=self.people.dave)
        await click.response()
        if not self.checks.check(click.modal is not None, "the DEPLOY modal opens"):
            return
        t.say("dave types 'deploy' (lower case)")
        typed = await discord.submit_modal(click, {"confirm": "deploy"})
        answer = await typed.response()
        t.ephemeral("dave", answer.content)
        self.checks.check(self.decision_of(task["id"]) is None, "a wrong word sends nothing")

        t.say("dave presses Approve again and types DEPLOY: the first of two approvals")
        typed = await self._type_deploy(self.people.dave)
        await self.until(lambda: _final(typed.reply_content), 5, "dave is told")
        t.ephemeral("dave", typed.reply_content)
        await self.until(
            lambda: "1 of 2 approvals" in str(self.task_message(task["id"]).embeds),  # type: ignore[union-attr]
            10,
            "the message shows 1 of 2 approvals",
        )
        self.checks.check(
            self.decision_of(task["id"]) is None, "one deploy approval sends nothing yet"
        )
        t.flush()

        t.say("dave tries to be the second approver too")
        typed = await self._type_deploy(self.people.dave)
        await self.until(lambda: _final(typed.reply_content), 5, "dave is told again")
        t.ephemeral("dave", typed.reply_content)
        self.checks.check(
            self.decision_of(task["id"]) is None, "the same person cannot approve twice"
        )

        t.say("erin (another deploy approver) presses Approve and types DEPLOY")
        typed = await self._type_deploy(self.people.erin)
        ok = await self.until(
            lambda: "Approved" in str(self.task_message(task["id"]).embeds),  # type: ignore[union-attr]
            10,
            "the GHL message shows the approval",
        )
        approvers = [
            a.get("name")
            for a in self.world.factory.tasks[task["id"]]["decisionData"].get("approvers", [])
        ]
        self.checks.check(
            ok and self.decision_of(task["id"]) == "approved" and approvers == ["dave", "erin"],
            "GHL deploy approved by two people, both named in the decision",
        )
        await self.until(lambda: _final(typed.reply_content), 5, "erin is told")
        t.ephemeral("erin", typed.reply_content)
        t.flush()

    async def _type_deploy(self, person: MemberSpec) -> InteractionRecord:
        """``person`` presses Approve on the newest message showing it and types DEPLOY."""
        discord = self.world.discord
        click = await discord.press_button(TASKS_CHANNEL_ID, "Approve", user=person)
        await click.response()
        typed = await discord.submit_modal(click, {"confirm": "DEPLOY"})
        await typed.response()
        return typed

    async def review(self) -> None:
        """Stripe code review rejected with a reason through the modal."""
        t, discord = self.t, self.world.discord
        t.say("The factory asks for a code review of the Stripe MCP server (high, 1 warning)")
        task = await self.world.factory.create_task(
            title="Stripe MCP Server — code review",
            priority="high",
            type="review",
            stageName="review",
            pipelineId="stripe-mcp-server",
            context={
                "summary": "Webhook handler rewritten; one test skipped (flaky sandbox).",
                "testResults": _tests(120, skipped=1, coverage=86),
            },
        )
        await self.until(lambda: self.task_message(task["id"]) is not None, 10, "Stripe posted")
        t.flush()
        t.say("alice presses Reject and gives a reason")
        message = self.task_message(task["id"])
        assert message is not None
        click = await discord.press_button(
            TASKS_CHANNEL_ID, "Reject", user=self.people.alice, message_id=message.id
        )
        await click.response()
        if not self.checks.check(click.modal is not None, "the reject modal opens"):
            return
        submit = await discord.submit_modal(
            click, {"reason": "Retries on webhook delivery are missing; see review notes."}
        )
        await submit.response()
        await self.until(
            lambda: self.decision_of(task["id"]) == "rejected", 10, "Stripe rejected at factory"
        )
        ok = await self.until(
            lambda: "Rejected" in str(message.embeds), 10, "the Stripe message shows the rejection"
        )
        self.checks.check(ok, "Stripe review rejected with a reason")
        t.flush()

    async def choice(self) -> None:
        """A ``decision`` task with options (contract §1.4 ``TaskType``): bob (no role) is
        refused, alice picks one from the select menu; the factory gets it once."""
        t, discord = self.t, self.world.discord
        t.say("The factory asks to choose how the Zendesk MCP server authenticates (high)")
        task = await self.world.factory.create_task(
            title="Zendesk MCP Server — auth strategy",
            priority="high",
            type="decision",
            stageName="review",
            pipelineId="zendesk-mcp-server",
            context={
                "summary": "Both strategies pass the tests; choose one.",
                "modalType": "choice",
                "modalConfig": {
                    "options": [
                        {"value": "oauth", "label": "OAuth 2.0", "description": "per-user tokens"},
                        {"value": "api-key", "label": "API key", "description": "one shared key"},
                    ]
                },
            },
        )
        await self.until(lambda: self.task_message(task["id"]) is not None, 10, "Zendesk posted")
        t.flush()
        message = self.task_message(task["id"])
        assert message is not None
        placeholder = "🗳️ Choose an option…"
        t.say("bob (no role) picks OAuth 2.0; then alice picks it")
        bob = await discord.choose(
            TASKS_CHANNEL_ID, placeholder, ["oauth"], user=self.people.bob, message_id=message.id
        )
        await self.until(lambda: _final(bob.reply_content), 10, "bob's pick answered")
        t.ephemeral("bob", bob.reply_content)
        self.checks.check(
            self.decision_of(task["id"]) is None and "role" in (bob.reply_content or ""),
            "a pick without the approver role changes nothing and says why",
        )
        pick = await discord.choose(
            TASKS_CHANNEL_ID, placeholder, ["oauth"], user=self.people.alice, message_id=message.id
        )
        await self.until(lambda: _final(pick.reply_content), 10, "alice's pick answered")
        t.ephemeral("alice", pick.reply_content)
        await self.until(
            lambda: self.decision_of(task["id"]) == "approved", 10, "Zendesk decided at factory"
        )
        calls = self.world.factory.calls("POST", r"/v1/tasks/[^/]+/complete")
        sent = [c.json for c in calls if task["id"] in c.path]
        self.checks.check(
            len(sent) == 1
            and sent[0]["decisionData"].get("option") == {"value": "oauth", "label": "OAuth 2.0"},
            "the chosen option reached the factory once",
        )
        ok = await self.until(
            lambda: "Chosen" in str(message.embeds), 10, "the Zendesk message shows the choice"
        )
        self.checks.check(ok, "decision task answered through its option menu")
        t.flush()

    async def wave(self) -> None:
        """Four routine reviews batched; Approve All Low-Risk; a dashboard decision."""
        t, discord = self.t, self.world.discord
        t.say(
            "A wave of routine reviews arrives: freshdesk, helpscout, close, and ghl (42 failing)"
        )
        ids = {}
        for name, results in (
            ("freshdesk", _tests(60)),
            ("helpscout", _tests(55)),
            ("close", _tests(48)),
            ("ghl", _tests(120, failed=42, coverage=71)),
        ):
            task = await self.world.factory.create_task(
                title=f"{name} MCP server ready for review",
                priority="low",
                type="review",
                stageName="review",
                pipelineId=f"{name}-mcp-server",
                context={"summary": f"{name}: review the generated tools.", "testResults": results},
            )
            ids[name] = task["id"]
        batched = getattr(self.app.bridge, "batcher", None) is not None
        ok = await self.until(
            lambda: all(self.task_message(i) is not None for i in ids.values()),
            15,
            "the wave is posted",
        )
        t.flush()
        if not ok:
            return
        messages = {self.task_message(i).id for i in ids.values()}  # type: ignore[union-attr]
        if not batched:
            self.checks.check(len(messages) == 4, "four routine tasks, four messages")
            return
        self.checks.check(len(messages) == 1, "four routine tasks share one batch message")
        t.say("alice presses Approve All Low-Risk (3)")
        click = await discord.press_button(
            TASKS_CHANNEL_ID, "Approve All Low-Risk (3)", user=self.people.alice
        )
        await click.response()
        low = [ids["freshdesk"], ids["helpscout"], ids["close"]]
        ok = await self.until(
            lambda: all(self.decision_of(i) == "approved" for i in low), 10, "bulk approval"
        )
        self.checks.check(
            ok and self.decision_of(ids["ghl"]) is None,
            "exactly the three low-risk items approved; ghl left pending",
        )
        await self.until(lambda: _final(click.reply_content), 5, "alice is told")
        t.ephemeral("alice", click.reply_content)
        batch_message = self.world.discord.message(next(iter(messages)))
        assert batch_message is not None
        await self.world.factory.decide_task(ids["ghl"], "rejected", decided_by="user-jake")
        t.say("jake rejects ghl on the dashboard; the batch message follows")

        def ghl_line_rejected() -> bool:
            text = str(batch_message.embeds)
            return any("ghl" in line and "rejected" in line for line in text.split("\\n"))

        self.checks.check(
            await self.until(ghl_line_rejected, 10, "dashboard decision shown"),
            "a decision made on the dashboard shows on the batch message",
        )
        t.flush()

    async def ladder(self) -> None:
        """A task nobody answers climbs the whole escalation ladder (SLA 12 s)."""
        t = self.t
        deadline = datetime.now(UTC) + timedelta(seconds=12)
        t.say(
            "Nobody answers 'Discord MCP server — test failures' (medium, SLA 12 s): "
            "the escalation ladder climbs"
        )
        task = await self.world.factory.create_task(
            title="Discord MCP server — test failures need triage",
            priority="medium",
            type="fix_required",
            stageName="testing",
            pipelineId="discord-mcp-server",
            slaDeadline=deadline.isoformat(),
            context={
                "summary": "3 integration tests fail after the gateway upgrade.",
                "testResults": _tests(80, failed=3, coverage=83),
            },
        )
        start = time.monotonic()
        reported = False
        while time.monotonic() - start < 25:
            t.flush()
            reported = any(
                "Incident report" in (m.content + str(m.embeds))
                for m in self.world.discord.messages(ALERTS_CHANNEL_ID)
            )
            if reported:
                break
            await asyncio.sleep(0.25)  # the transcript is printed live while the ladder climbs
        t.flush()
        self.checks.check(bool(self.world.twilio.messages), "the SLA breach sent SMS")
        self.checks.check(bool(self.world.twilio.calls), "the critical step placed a call")
        self.checks.check(reported, "an incident report lists every step")
        self.checks.check(
            self.world.factory.tasks[task["id"]].get("assigneeId") == "user-dave",
            "the task was reassigned to the first admin",
        )

    async def phone(self) -> None:
        """The phone acts (README "Phone"): :func:`sandbox.phone_scenario.phone_step`."""
        await phone_step(self)


def _check_conformance(world: World, checks: Checks, write: Callable[[str], None]) -> None:
    """Add the checks that every request to Discord and to Twilio conformed to the vendor's
    API description."""
    discord = world.discord
    if discord.spec is None:
        write(
            "(Discord API conformance checks were off: shared/specs/discord-openapi.json not found)"
        )
        return
    for violation in discord.spec_violations:
        write(f"  ✗ {violation.method} {violation.path}: {violation.errors}")
    checks.check(
        not discord.spec_violations,
        f"all {discord.spec_checked} requests to Discord conform to Discord's API description",
    )
    twilio = world.twilio
    if twilio.spec is None:
        write(
            "(Twilio API conformance checks were off: shared/specs/twilio-api-v2010.json not found)"
        )
        return
    for problem in twilio.spec_violations:
        write(f"  ✗ {problem}")
    checks.check(
        not twilio.spec_violations,
        f"all {len(twilio.attempts)} requests to Twilio conform to Twilio's API description",
    )


async def run_sandbox(*, verbose: bool = False, write: Callable[[str], None] = print) -> int:
    """Run the whole sandbox; return the process exit code (0 when every check held)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="factory-bridge-sandbox-") as tmp:
        world = World(Path(tmp))
        await world.start()
        overrides = dict(SANDBOX_SETTINGS)
        overrides["BRIDGE_PUBLIC_URL"] = world.bridge_url  # Twilio's webhooks (README "Phone")
        if verbose:
            overrides["LOG_LEVEL"] = "INFO"
        settings = Settings(**world.settings_overrides(**overrides))  # type: ignore[arg-type]
        app = build_app(settings)
        transcript = Transcript(world, write)
        scenario = Scenario(world, app, transcript)
        write("Factory Bridge sandbox — emulated Discord, factory API and Twilio on 127.0.0.1")
        write(
            "people: alice (approver), dave (deploy approver, admin), erin (deploy approver), "
            f"bob (no role); db {tmp}"
        )
        try:
            await app.start()
            steps = (
                scenario.deploy,
                scenario.review,
                scenario.choice,
                scenario.wave,
                scenario.ladder,
                scenario.phone,
            )
            for step in steps:
                try:
                    await step()
                except Exception as exc:  # a broken step must not hide the others
                    scenario.checks.check(False, f"{step.__name__}: {exc!r}")
        finally:
            await app.stop()
            await world.stop()
        _check_conformance(world, scenario.checks, write)
    checks = scenario.checks
    write("")
    write(f"Summary ({time.monotonic() - started:.1f}s):")
    for line in checks.passed:
        write(f"  ✓ {line}")
    for line in checks.failed:
        write(f"  ✗ {line}")
    write(
        f"{len(checks.passed)} passed, {len(checks.failed)} failed"
        + ("" if not checks.failed else " — see the transcript above")
    )
    return 0 if not checks.failed else 1
