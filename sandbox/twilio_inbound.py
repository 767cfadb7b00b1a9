"""What Twilio sends *to* an application, for the Twilio emulator (README "Phone").

Twilio calls the application's webhooks with form-encoded POSTs signed in the
``X-Twilio-Signature`` header (Twilio docs, "Webhooks security": HMAC-SHA1 of the full URL
followed by each POST parameter name and value, sorted by name, keyed with the auth token,
base64). The signature is computed by the twilio library's own ``RequestValidator``, so the
bridge's check meets exactly what production sends.

* :func:`post_signed` — one signed webhook request; the answer as :class:`WebhookAnswer`.
* :func:`twiml_verbs` — a TwiML document as a list of :class:`Verb`.
* :class:`CallRun` — what happened during one emulated call (said, gathered, messages).

The emulator (:mod:`sandbox.twilio_emulator`) follows a call's TwiML with these: ``<Say>``
(recorded), ``<Pause>`` (ignored: no waiting), ``<Gather>`` (its nested ``<Say>``; with a
pressed key, the ``action`` is requested and its TwiML followed), ``<Message>`` (recorded as
an SMS to the caller), ``<Redirect>`` (followed), ``<Hangup>`` (ends).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

__all__ = [
    "FINAL_STATUSES",
    "SIGNATURE_HEADER",
    "CallRun",
    "InboundMixin",
    "Verb",
    "WebhookAnswer",
    "message_texts",
    "post_signed",
    "twiml_verbs",
]

#: The header Twilio signs webhook requests with.
SIGNATURE_HEADER = "X-Twilio-Signature"


@dataclass(frozen=True)
class WebhookAnswer:
    """The application's answer to a webhook: HTTP status and body (TwiML text)."""

    status: int
    body: str

    @property
    def messages(self) -> list[str]:
        """The ``<Message>`` texts of a TwiML answer (empty when none or not TwiML)."""
        return message_texts(self.body)


@dataclass(frozen=True)
class Verb:
    """One TwiML verb: its name, text, attributes and nested verbs."""

    name: str
    text: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    children: tuple[Verb, ...] = ()


@dataclass
class CallRun:
    """What one emulated call did.

    Attributes
    ----------
    said
        Every ``<Say>`` text spoken, in order.
    gathers
        ``(action URL, digits sent)`` of each ``<Gather>`` met (digits ``None``: none pressed).
    answers
        Each webhook answer (gather actions, status callbacks), in order.
    messages
        ``<Message>`` texts sent to the callee.
    """

    said: list[str] = field(default_factory=list)
    gathers: list[tuple[str, str | None]] = field(default_factory=list)
    answers: list[WebhookAnswer] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _verb(element: ET.Element) -> Verb:
    return Verb(
        name=element.tag,
        text=(element.text or "").strip(),
        attributes=dict(element.attrib),
        children=tuple(_verb(child) for child in element),
    )


def twiml_verbs(document: str) -> list[Verb]:
    """The verbs of a ``<Response>`` document (empty for an empty response).

    Raises
    ------
    ValueError
        When the text is not XML or its root is not ``<Response>`` (Twilio: error 12100,
        "Document parse failure").
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise ValueError(f"TwiML is not XML: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"TwiML root must be <Response>, got <{root.tag}>")
    return [_verb(child) for child in root]


def message_texts(document: str) -> list[str]:
    """The ``<Message>`` texts of a TwiML document (empty when it is not TwiML)."""
    try:
        verbs = twiml_verbs(document)
    except ValueError:
        return []
    return [v.text for v in verbs if v.name == "Message"]


async def post_signed(
    url: str,
    params: Mapping[str, str],
    auth_token: str,
    *,
    signature: str | None = None,
    timeout: float = 10.0,
) -> WebhookAnswer:
    """POST ``params`` form-encoded to ``url``, signed as Twilio signs webhooks.

    Parameters
    ----------
    url
        The absolute webhook URL (with its query); it is also what is signed.
    params
        The form fields.
    auth_token
        The account's auth token (the HMAC key).
    signature
        Send this ``X-Twilio-Signature`` instead of the right one (a forgery, for tests);
        ``""`` sends none.
    timeout
        Seconds for the whole request.

    Raises
    ------
    httpx.HTTPError
        When the application cannot be reached.
    """
    headers = {}
    if signature is None:
        signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    if signature:
        headers[SIGNATURE_HEADER] = signature
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.post(url, data=dict(params), headers=headers)
    return WebhookAnswer(response.status_code, response.text)


#: Final call statuses a status callback may carry (Twilio: ``CallStatus``).
FINAL_STATUSES = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})


class InboundMixin:
    """The emulator's side of Twilio → application traffic (mixed into ``TwilioEmulator``).

    Expects the emulator's ``account_sid``, ``auth_token``, ``phone_numbers``, ``calls``
    (records with ``sid``, ``to``, ``from``, ``twiml``, ``url``, ``status_callback``) and
    ``set_status``; adds ``sms_webhook_url`` (where inbound SMS go: Twilio console, "A message
    comes in") and the records ``inbound_sms`` and ``callbacks``.
    """

    account_sid: str
    auth_token: str
    phone_numbers: list[str]
    calls: list[dict[str, Any]]
    sms_webhook_url: str | None
    inbound_sms: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]

    def set_status(self, sid: str, status: str) -> None:  # provided by the emulator
        raise NotImplementedError

    # ------------------------------------------------------------------ SMS
    async def send_sms(
        self, from_: str, body: str, *, to: str | None = None, signature: str | None = None
    ) -> WebhookAnswer:
        """A person texts ``body`` from ``from_``: Twilio's incoming-message webhook.

        Parameters
        ----------
        from_
            The sender's E.164 number.
        body
            The text.
        to
            The account number texted (default: the first of ``phone_numbers``).
        signature
            A forged ``X-Twilio-Signature`` (``""``: none); default the right one.

        Returns
        -------
        WebhookAnswer
            The application's answer (``.messages``: the ``<Message>`` replies sent back).

        Raises
        ------
        RuntimeError
            When ``sms_webhook_url`` is not set.
        """
        if not self.sms_webhook_url:
            raise RuntimeError("sms_webhook_url is not configured")
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to or (self.phone_numbers[0] if self.phone_numbers else ""),
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        answer = await post_signed(
            self.sms_webhook_url, params, self.auth_token, signature=signature
        )
        self.inbound_sms.append({"from": from_, "body": body, "answer": answer})
        return answer

    # ------------------------------------------------------------------ calls
    def call(self, sid: str) -> dict[str, Any]:
        """The recorded call ``sid`` (``KeyError`` when unknown)."""
        for record in self.calls:
            if record["sid"] == sid:
                return record
        raise KeyError(sid)

    def _call_params(self, record: Mapping[str, object], status: str) -> dict[str, str]:
        return {
            "CallSid": str(record["sid"]),
            "AccountSid": self.account_sid,
            "From": str(record["from"]),
            "To": str(record["to"]),
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }

    async def status_callback(
        self,
        sid: str,
        status: str,
        *,
        answered_by: str | None = None,
        signature: str | None = None,
    ) -> WebhookAnswer | None:
        """Move call ``sid`` to ``status`` and tell its ``StatusCallback`` (signed); ``None``
        when the call was placed without one.

        ``status``: ``ringing``, ``in-progress``, ``completed``, ``no-answer``, ``busy``,
        ``failed``; ``answered_by`` (``human``, ``machine_start`` …) is sent as ``AnsweredBy``.
        """
        record = self.call(sid)
        self.set_status(sid, status)
        url = record.get("status_callback")
        if not url:
            return None
        params = self._call_params(record, status)
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        if status in FINAL_STATUSES:
            params["CallDuration"] = "0" if status != "completed" else "20"
        answer = await post_signed(str(url), params, self.auth_token, signature=signature)
        self.callbacks.append({"sid": sid, "status": status, "answer": answer})
        return answer

    async def end_call(self, sid: str, status: str) -> WebhookAnswer | None:
        """Call ``sid`` ends unanswered: ``ringing`` then ``status`` (``no-answer``, ``busy``;
        ``failed`` without ringing) to the status callback."""
        if status not in FINAL_STATUSES - {"completed"}:
            raise ValueError(f"not an unanswered final status: {status!r}")
        if status != "failed":
            await self.status_callback(sid, "ringing")
        return await self.status_callback(sid, status)

    async def answer_call(
        self,
        sid: str,
        *,
        keys: str | None = None,
        answered_by: str | None = None,
    ) -> CallRun:
        """Call ``sid`` is answered: ``ringing``, ``in-progress``, its TwiML followed with
        ``keys`` pressed (one character per ``<Gather>`` met, in order; ``None``: nothing),
        then ``completed``.

        Raises
        ------
        ValueError
            When the call's TwiML cannot be parsed.
        """
        record = self.call(sid)
        await self.status_callback(sid, "ringing")
        await self.status_callback(sid, "in-progress", answered_by=answered_by)
        run = CallRun()
        pending = list(keys or "")
        document = record.get("twiml")
        if not document and record.get("url"):
            fetched = await post_signed(
                str(record["url"]), self._call_params(record, "in-progress"), self.auth_token
            )
            run.answers.append(fetched)
            document = fetched.body
        await self._follow(record, str(document or "<Response/>"), pending, run, 0)
        await self.status_callback(sid, "completed", answered_by=answered_by)
        return run

    async def _follow(
        self,
        record: Mapping[str, object],
        document: str,
        keys: list[str],
        run: CallRun,
        depth: int,
    ) -> None:
        if depth > 10:  # Twilio ends a call that redirects forever
            return
        for verb in twiml_verbs(document):
            if verb.name == "Say":
                run.said.append(verb.text)
            elif verb.name == "Message":
                run.messages.append(verb.text)
            elif verb.name == "Hangup":
                return
            elif verb.name == "Redirect":
                answer = await post_signed(
                    verb.text, self._call_params(record, "in-progress"), self.auth_token
                )
                run.answers.append(answer)
                await self._follow(record, answer.body, keys, run, depth + 1)
                return
            elif verb.name == "Gather":
                run.said.extend(c.text for c in verb.children if c.name == "Say")
                key = keys.pop(0) if keys else None
                action = verb.attributes.get("action", "")
                run.gathers.append((action, key))
                if key is not None and action:
                    params = {**self._call_params(record, "in-progress"), "Digits": key}
                    answer = await post_signed(action, params, self.auth_token)
                    run.answers.append(answer)
                    await self._follow(record, answer.body, keys, run, depth + 1)
                    return
