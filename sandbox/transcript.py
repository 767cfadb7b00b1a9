"""A readable live transcript of what each channel, DM and phone shows in the sandbox."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import World

__all__ = ["Transcript"]

_USER = re.compile(r"<@!?(\d+)>")
_TIMESTAMP = re.compile(r"<t:(\d+)(?::([a-zA-Z]))?>")


class Transcript:
    """Prints new messages, edits, DMs, SMS and calls as they appear in the emulators.

    Parameters
    ----------
    world:
        The sandbox world whose emulators are watched.
    write:
        Where lines go (``print`` by default).
    """

    def __init__(self, world: World, write: Callable[[str], None] = print) -> None:
        self.world = world
        self.write = write
        self._seen_edits: dict[int, int] = {}
        self._sms_seen = 0
        self._calls_seen = 0
        self._started = time.monotonic()
        names = {c.id: f"#{c.name}" for c in world.discord_guild_channels()}
        self._channel_names = names
        self._user_names = {m.id: m.username for m in world.people.all()}

    # ------------------------------------------------------------------ rendering helpers
    def _human(self, text: str) -> str:
        text = _USER.sub(lambda m: "@" + self._user_names.get(int(m.group(1)), m.group(1)), text)

        def when(match: re.Match[str]) -> str:
            at = datetime.fromtimestamp(int(match.group(1)), tz=UTC)
            delta = (at - datetime.now(UTC)).total_seconds()
            if match.group(2) == "R":
                if abs(delta) < 1:
                    return "now"
                return f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago"
            return at.strftime("%H:%M:%S UTC")

        return _TIMESTAMP.sub(when, text)

    def _where(self, message: RecordedMessage) -> str:
        if message.channel_id in self._channel_names:
            return self._channel_names[message.channel_id]
        for user_id, name in self._user_names.items():
            if any(m.id == message.id for m in self.world.discord.dm_messages(user_id)):
                return f"DM → {name}"
        return f"channel {message.channel_id}"

    def _describe(self, message: RecordedMessage) -> list[str]:
        lines: list[str] = []
        if message.content:
            lines.extend(self._human(message.content).splitlines())
        for embed in message.embeds:
            if (embed.get("author") or {}).get("name"):
                lines.append(f"┃ {embed['author']['name']}")
            if embed.get("title"):
                lines.append(f"┃ {self._human(embed['title'])}")
            if embed.get("description"):
                for line in self._human(embed["description"]).splitlines()[:12]:
                    lines.append(f"┃ {line}")
            fields: list[dict[str, Any]] = embed.get("fields") or []
            inline = [f for f in fields if f.get("inline", True)]
            block = [f for f in fields if not f.get("inline", True)]
            if inline:
                lines.append(
                    "┃ " + " · ".join(f"{f['name']}: {self._human(f['value'])}" for f in inline)
                )
            for f in block:
                value = self._human(f["value"]).replace("\n", " ")
                lines.append(f"┃ {f['name']}: {value}")
        labels = message.button_labels
        selects = [
            c.get("placeholder", "select")
            for row in message.components
            for c in row.get("components", [])
            if c.get("type") == 3
        ]
        if labels or selects:
            lines.append("┃ " + " ".join(f"[{label}]" for label in labels + selects))
        return lines or ["(empty)"]

    def _stamp(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    # ------------------------------------------------------------------ public
    def say(self, text: str) -> None:
        """A narrative line of the scenario."""
        self.write(f"\n{self._stamp()}  ▶ {text}")

    def flush(self) -> None:
        """Print everything that appeared or changed since the last flush."""
        for message in sorted(self.world.discord.all_messages(), key=lambda m: m.id):
            if message.ephemeral:
                continue
            edits = len(message.edits)
            if message.id not in self._seen_edits:
                self._seen_edits[message.id] = edits
                head = f"{self._stamp()}  {self._where(message)}"
                if message.mentions_everyone:
                    head += "  (pings @here)"
                self.write(head)
                for line in self._describe(message):
                    self.write(f"           {line}")
            elif edits > self._seen_edits[message.id]:
                self._seen_edits[message.id] = edits
                self.write(f"{self._stamp()}  {self._where(message)}  ✏️ message updated")
                for line in self._describe(message):
                    self.write(f"           {line}")
        for sms in self.world.twilio.messages[self._sms_seen :]:
            self.write(f"{self._stamp()}  📱 SMS → {sms['to']}: {sms['body']}")
        self._sms_seen = len(self.world.twilio.messages)
        for call in self.world.twilio.calls[self._calls_seen :]:
            say = re.sub(r"<[^>]+>", " ", str(call.get("twiml") or call.get("url") or ""))
            self.write(f"{self._stamp()}  ☎️  call → {call['to']}: {' '.join(say.split())}")
        self._calls_seen = len(self.world.twilio.calls)

    def ephemeral(self, who: str, text: str | None) -> None:
        """What a person saw privately (an ephemeral answer)."""
        self.write(f"{self._stamp()}  (only {who} sees) {self._human(text or '')}")
