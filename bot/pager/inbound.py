"""Twilio's webhooks on the bridge's HTTP port (README "Phone"), when ``BRIDGE_PUBLIC_URL`` is set.

==============================  ==============================================================
route                           what
==============================  ==============================================================
``POST /twilio/sms``            incoming message (``From``, ``To``, ``Body``, ``MessageSid``):
                                the reply command (:meth:`PhoneDesk.on_sms`), answered with
                                ``<Response><Message>…</Message></Response>``
``POST /twilio/voice/gather``   the call's ``<Gather>`` action (``Digits``, ``To``, ``CallSid``;
                                ``?tasks=`` from the call): 1 acknowledges, 2 repeats
``POST /twilio/voice/status``   the call's ``StatusCallback`` (``CallStatus``, ``CallSid``,
                                ``AnsweredBy``): an unanswered call calls the next person
==============================  ==============================================================

Every request is checked first with the twilio library's ``RequestValidator`` (Twilio docs,
"Webhooks security": ``X-Twilio-Signature`` is HMAC-SHA1 over the full URL Twilio requested —
``BRIDGE_PUBLIC_URL`` + path + query — and the sorted POST parameters, keyed with
``TWILIO_AUTH_TOKEN``). A missing or wrong signature → ``403``, logged, nothing read further,
nothing changed. Answers are TwiML (``text/xml``); a request that fails after the check is
answered ``200`` with a sorry sentence (an error status makes Twilio say "an application
error"), and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from bot.pager.phone_desk import PhoneDesk
from bot.pager.twilio_pager import GATHER_PATH, STATUS_PATH, callback_url
from bot.pager.twiml import gather_twiml, message_twiml, say_twiml
from escalation.notices import CallScript, PageItem, call_script
from escalation.phone import Keypress

__all__ = ["SIGNATURE_HEADER", "SMS_PATH", "Relay", "TwilioWebhooks", "origin_form"]

log = logging.getLogger(__name__)

#: The header Twilio signs webhooks with.
SIGNATURE_HEADER = "X-Twilio-Signature"

#: The incoming-message webhook (Twilio console: the number's "A message comes in").
SMS_PATH = "/twilio/sms"

_TWIML = "text/xml"

#: What a call says when its keypress could not be handled.
_SORRY = "Something went wrong. Please open Discord."
#: The SMS answer when a reply could not be handled.
_SMS_SORRY = "Something went wrong; nothing may have changed. Please use Discord."


class Relay(Protocol):
    """Hands a request to the leader (:class:`bot.leadership.relay.LeaderRelay`)."""

    @property
    def is_leader(self) -> bool:
        """Whether this process leads (it handles the request itself)."""
        ...

    async def forward(self, request: web.Request, *, fallback: web.Response) -> web.Response:
        """The leader's answer to ``request``, or ``fallback`` when it cannot be had."""
        ...


def origin_form(raw_path: str) -> str:
    """The path and query of a request target as sent, undecoded (``/twilio/sms?tasks=a%2Cb``).

    A request in absolute-form (``POST http://host/twilio/sms``, which servers must accept:
    RFC 9112 §3.2.2, and some proxies send) has its scheme and authority dropped, so the URL
    rebuilt from ``BRIDGE_PUBLIC_URL`` is the one Twilio signed. ``yarl`` would re-encode the
    query (``%2C`` → ``,``), which breaks the signature, hence this plain cut.
    """
    if raw_path.startswith("/"):
        return raw_path
    authority = raw_path.find("://")
    if authority == -1:
        return raw_path
    path = raw_path.find("/", authority + 3)
    if path == -1:
        query = raw_path.find("?", authority + 3)
        return "/" + (raw_path[query:] if query != -1 else "")
    return raw_path[path:]


class TwilioWebhooks:
    """The three Twilio routes, added to an aiohttp application (the intake's).

    Parameters
    ----------
    public_url:
        ``BRIDGE_PUBLIC_URL`` without a trailing slash: what Twilio requested (and signed).
    auth_token:
        ``TWILIO_AUTH_TOKEN`` (the signature key; never logged).
    desk:
        What the requests do.
    relay:
        On a replica (README "Production"): while this process stands by, each verified
        request is handed to the leader and answered with the leader's answer
        (:class:`bot.leadership.relay.LeaderRelay`); ``None``: always handled here.
    """

    def __init__(
        self, *, public_url: str, auth_token: str, desk: PhoneDesk, relay: Relay | None = None
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self._validator = RequestValidator(auth_token)
        self.desk = desk
        self.relay = relay

    def _standing_by(self) -> bool:
        """Whether a verified request goes to the leader (this process is a standby)."""
        return self.relay is not None and not self.relay.is_leader

    def attach(self, app: web.Application) -> None:
        """Add the routes to ``app`` (before it starts)."""
        app.router.add_post(SMS_PATH, self.sms)
        app.router.add_post(GATHER_PATH, self.gather)
        app.router.add_post(STATUS_PATH, self.status)

    async def _verified(self, request: web.Request) -> Mapping[str, str] | None:
        """The form when the signature is right, else ``None`` (logged)."""
        # every value of a repeated key, as Twilio signed them (RequestValidator.get_values reads
        # a MultiDict with getall); a file part is no Twilio parameter
        try:
            posted = await request.post()
        except ValueError as exc:  # a body that is no form (not UTF-8, broken multipart)
            log.warning(
                "Twilio webhook %s refused: unreadable form, %s (from %s)",
                request.path,
                type(exc).__name__,
                request.remote,
            )
            return None
        form = MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))
        url = self.public_url + origin_form(request.raw_path)  # as signed, undecoded
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature or not self._validator.validate(url, form, signature):
            log.warning(
                "Twilio webhook %s refused: %s X-Twilio-Signature (from %s)",
                request.path,
                "wrong" if signature else "missing",
                request.remote,
            )
            return None
        return form

    @staticmethod
    def _twiml(text: str, status: int = 200) -> web.Response:
        return web.Response(status=status, text=text, content_type=_TWIML)

    @staticmethod
    def _forbidden() -> web.Response:
        return web.Response(status=403, text="invalid Twilio signature\n")

    @staticmethod
    def _tasks(request: web.Request) -> list[str]:
        return [t for t in request.query.get("tasks", "").split(",") if t]

    async def sms(self, request: web.Request) -> web.Response:
        """``POST /twilio/sms``: the reply to an incoming SMS, as ``<Message>`` TwiML."""
        form = await self._verified(request)
        if form is None:
            return self._forbidden()
        if self._standing_by():
            assert self.relay is not None
            return await self.relay.forward(
                request, fallback=self._twiml(message_twiml(_SMS_SORRY))
            )
        try:
            answer = await self.desk.on_sms(
                form.get("From", ""), form.get("Body", ""), form.get("MessageSid", "")
            )
        except Exception:
            log.exception("SMS reply could not be handled")
            answer = _SMS_SORRY
        return self._twiml(message_twiml(answer))

    async def gather(self, request: web.Request) -> web.Response:
        """``POST /twilio/voice/gather``: the key pressed; TwiML to say what happened."""
        form = await self._verified(request)
        if form is None:
            return self._forbidden()
        if self._standing_by():
            assert self.relay is not None
            return await self.relay.forward(request, fallback=self._twiml(say_twiml(_SORRY)))
        tasks = self._tasks(request)
        try:
            key, said = await self.desk.on_keypress(
                form.get("To", ""), tasks, form.get("Digits"), form.get("CallSid", "")
            )
        except Exception:
            log.exception("keypress could not be handled")
            return self._twiml(say_twiml(_SORRY))
        if key is Keypress.ACKNOWLEDGE:
            return self._twiml(say_twiml(f"{said} Goodbye."))
        try:
            again = await self._script(tasks)
        except Exception:  # an error answer would make Twilio say "an application error"
            log.exception("the call's message could not be read again")
            return self._twiml(say_twiml(_SORRY))
        action = callback_url(self.public_url, GATHER_PATH, tasks)
        return self._twiml(gather_twiml(again, action))

    async def _script(self, task_ids: list[str]) -> CallScript:
        """The call's speech again (task titles re-read from the store)."""
        items = []
        now = self.desk.clock()
        for task_id in task_ids:
            tracked = await self.desk.bridge.store.get_task(task_id)
            if tracked is not None:
                items.append(
                    PageItem(
                        task_id,
                        tracked.task.title,
                        tracked.task.priority.value,
                        (now - tracked.deadline).total_seconds(),
                    )
                )
        if not items:
            return CallScript("There is no open task any more.", task_ids=tuple(task_ids))
        return call_script(items)

    async def status(self, request: web.Request) -> web.Response:
        """``POST /twilio/voice/status``: a call's progress; an empty TwiML answer."""
        form = await self._verified(request)
        if form is None:
            return self._forbidden()
        if self._standing_by():  # the next person's call is planned by the leader
            assert self.relay is not None
            unavailable = web.Response(status=503, text="no leader to hand this to\n")
            return await self.relay.forward(request, fallback=unavailable)
        status = form.get("CallStatus", "")
        log.info(
            "call %s: %s%s",
            form.get("CallSid", "?"),
            status,
            f" (answered by {form['AnsweredBy']})" if form.get("AnsweredBy") else "",
        )
        try:
            await self.desk.on_call_status(
                form.get("To", ""), self._tasks(request), status, form.get("CallSid", "")
            )
        except Exception:
            log.exception("call status %s could not be handled", status)
        return self._twiml("<Response/>")
