"""A local emulator of the Twilio REST API (2010-04-01 Messages and Calls).

The real ``twilio`` library talks to it over HTTP once its API domain is pointed here with
:func:`bot.pager.twilio_base.configure_client` (the ``TWILIO_API_BASE_URL`` setting). It checks
HTTP Basic auth (account SID : auth token), validates the form parameters the way Twilio does for
the cases the bridge can hit, records everything, and answers with Twilio-shaped resources and
Twilio's error JSON (``{"code", "message", "more_info", "status"}``), so the real client builds
``MessageInstance``/``CallInstance`` objects or raises ``TwilioRestException`` with ``.code`` and
``.status`` exactly as in production.

Routes (``{sid}`` must be the emulator's account SID, else 404 code 20404):

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` — form ``To``, ``From``, ``Body``
  (``Body`` at most 1600 characters, Twilio error 21617).
- ``POST /2010-04-01/Accounts/{sid}/Calls.json`` — form ``To``, ``From`` and ``Twiml`` or ``Url``.
- ``GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json`` and ``.../Calls/{CallSid}.json``
  — fetch a recorded resource (its status can be moved on with :meth:`TwilioEmulator.set_status`).
- ``GET /2010-04-01/Accounts/{sid}.json`` — the account (how a client checks its credentials).
- ``GET /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json`` — the account's numbers
  (``phone_numbers``), filtered by ``PhoneNumber``.

Phone numbers must be E.164 (``+`` and 2–15 digits): an invalid ``To`` is error 21211, an invalid
``From`` 21212, as Twilio answers for both APIs.

Every request is also checked against Twilio's published API description
(:mod:`sandbox.twilio_spec`, ``shared/specs/twilio-api-v2010.json``): each violation is kept in
``spec_violations`` (the end-to-end fixtures assert it stays empty).

Twilio → application traffic (README "Phone") comes from :class:`sandbox.twilio_inbound.InboundMixin`:
:meth:`send_sms` (a signed incoming-message webhook to ``sms_webhook_url``), :meth:`answer_call`
(follows the call's TwiML, presses keys at ``<Gather>``), :meth:`end_call` and
:meth:`status_callback` (signed ``StatusCallback`` requests).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from aiohttp import web

from sandbox.twilio_inbound import InboundMixin
from sandbox.twilio_spec import TwilioSpec, load_twilio_spec

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "MAX_SMS_BODY_CHARS",
    "TwilioEmulator",
]

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
"""Default test account SID ("AC" + 32 hex characters, like a real one)."""

DEFAULT_AUTH_TOKEN = "twilio-emulator-auth-token"
"""Default auth token (the Basic-auth password)."""

MAX_SMS_BODY_CHARS = 1600
"""Twilio's limit on a message body, in characters (error 21617 above it)."""

API_VERSION = "2010-04-01"

Kind = Literal["messages", "calls"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_ROUTE = re.compile(
    r"/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<kind>Messages|Calls)"
    r"(?:/(?P<sid>[^/]+))?\.json"
)
_ACCOUNT_ROUTE = re.compile(
    r"/2010-04-01/Accounts/(?P<account>[^/]+)(?P<numbers>/IncomingPhoneNumbers)?\.json"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _TwilioError(Exception):
    def __init__(
        self, status: int, code: int, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Fault:
    kind: Kind
    status: int
    code: int
    message: str
    remaining: int
    retry_after: float | None


@dataclass(frozen=True)
class _NumberFault:
    status: int
    code: int
    message: str
    kind: Kind | None


class TwilioEmulator(InboundMixin):
    """Twilio REST API emulator served by aiohttp on a local port.

    Parameters
    ----------
    account_sid
        The account SID clients must use as Basic-auth user and in the URL path.
    auth_token
        The auth token clients must use as Basic-auth password.
    clock
        Returns the current time as an aware UTC ``datetime``; stamps records and resources.
    phone_numbers
        The account's incoming phone numbers (E.164), listed by ``IncomingPhoneNumbers.json``.
    sms_webhook_url
        Where an inbound SMS is delivered (:meth:`send_sms`); may be set later.
    spec
        Twilio's API description to check requests against; default: the one found beside
        the checkout (:func:`sandbox.twilio_spec.load_twilio_spec`), ``None`` if absent.

    Attributes
    ----------
    messages : list[dict]
        Every SMS accepted, oldest first: ``sid``, ``to``, ``from``, ``body``, ``status``, ``at``.
    calls : list[dict]
        Every call accepted: ``sid``, ``to``, ``from``, ``twiml`` (or ``None``), ``url`` (or
        ``None``), ``status_callback`` (or ``None``), ``status_callback_events`` (list),
        ``status``, ``at``.
    spec_violations : list[str]
        Every way a request did not conform to Twilio's API description.
    attempts : list[dict]
        Every request received, accepted or not: ``kind`` (``"messages"``, ``"calls"`` or
        ``"other"``), ``method``, ``to``, ``from``, ``status`` (HTTP), ``code`` (Twilio error code
        or ``None``), ``sid`` (or ``None``), ``at``.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        clock: Callable[[], datetime] = _utc_now,
        phone_numbers: tuple[str, ...] = (),
        sms_webhook_url: str | None = None,
        spec: TwilioSpec | Literal["default"] | None = "default",
    ) -> None:
        self.account_sid = account_sid
        self.sms_webhook_url = sms_webhook_url
        self.spec = load_twilio_spec() if spec == "default" else spec
        self.spec_violations: list[str] = []
        self.inbound_sms: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self._events: list[str] = []  # StatusCallbackEvent values of the request at hand
        self.phone_numbers = list(phone_numbers)
        self.auth_token = auth_token
        self._clock = clock
        self.messages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self._resources: dict[str, dict[str, Any]] = {}
        self._faults: list[_Fault] = []
        self._number_faults: dict[str, _NumberFault] = {}
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on ``host``:``port`` (``port=0`` picks a free port).

        Raises
        ------
        RuntimeError
            If the emulator is already running.
        """
        if self._runner is not None:
            raise RuntimeError("TwilioEmulator is already running")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` — the value for ``TWILIO_API_BASE_URL``.

        Raises
        ------
        RuntimeError
            If the emulator has not been started.
        """
        if self._port is None:
            raise RuntimeError("TwilioEmulator is not started")
        return f"http://{self._host}:{self._port}"

    # ------------------------------------------------------------------ fault injection

    def fail_number(
        self,
        to: str,
        *,
        status: int = 400,
        code: int = 21610,
        message: str = "Attempt to send to unsubscribed recipient",
        kind: Kind | None = None,
    ) -> None:
        """Make every later request to ``to`` fail permanently.

        Parameters
        ----------
        to
            The E.164 destination number.
        status, code, message
            HTTP status, Twilio error code and message of the error answered (default: 400,
            21610 "Attempt to send to unsubscribed recipient", the STOP-ed number case).
        kind
            ``"messages"`` or ``"calls"`` to limit the failure to one API; ``None`` (default)
            fails both.
        """
        self._number_faults[to] = _NumberFault(status, code, message, kind)

    def fail_next(
        self,
        kind: Kind,
        *,
        status: int,
        code: int | None = None,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` authenticated create requests of ``kind`` with an error.

        Parameters
        ----------
        kind
            ``"messages"`` or ``"calls"``.
        status
            HTTP status, e.g. 429 or 500.
        code
            Twilio error code; default ``20000 + status`` (20429 Too Many Requests, 20500
            Internal Server Error, 20503 Service Unavailable — Twilio's own numbering).
        times
            How many requests fail (at least 1); later ones succeed again.
        retry_after
            Seconds sent in a ``Retry-After`` header (fractions allowed, for fast tests).
        message
            Error message; a generic one for the status by default.

        Raises
        ------
        ValueError
            If ``kind`` is unknown or ``times`` < 1.
        """
        if kind not in ("messages", "calls"):
            raise ValueError(f"kind must be 'messages' or 'calls', got {kind!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        default_message = {
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(status, f"Error {status}")
        self._faults.append(
            _Fault(
                kind=kind,
                status=status,
                code=code if code is not None else 20000 + status,
                message=message or default_message,
                remaining=times,
                retry_after=retry_after,
            )
        )

    def clear_faults(self) -> None:
        """Forget every fault set with :meth:`fail_number` and :meth:`fail_next`."""
        self._faults.clear()
        self._number_faults.clear()

    def set_status(self, sid: str, status: str) -> None:
        """Move a recorded message or call to another status, as seen by later fetches.

        Parameters
        ----------
        sid
            SID of a message (``SM…``) or call (``CA…``) this emulator created.
        status
            Twilio status, e.g. ``"delivered"``, ``"undelivered"``, ``"no-answer"``,
            ``"completed"``.

        Raises
        ------
        KeyError
            If no message or call has that SID.
        """
        self._resources[sid]["status"] = status
        self._resources[sid]["date_updated"] = format_datetime(self._clock())
        for record in (*self.messages, *self.calls):
            if record["sid"] == sid:
                record["status"] = status

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form: Mapping[str, str] = {}
        pairs: list[tuple[str, str]] = []
        if request.method == "POST":
            pairs = [(k, v) for k, v in (await request.post()).items() if isinstance(v, str)]
            form = dict(pairs)
            self._events = [v for k, v in pairs if k == "StatusCallbackEvent"]
        if self.spec is not None:
            self.spec_violations.extend(self.spec.check(request.method, request.path, pairs))
        match = _ROUTE.fullmatch(request.path)
        kind: str = match["kind"].lower() if match else "other"
        attempt: dict[str, Any] = {
            "kind": kind,
            "method": request.method,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": 0,
            "code": None,
            "sid": None,
            "at": self._clock(),
        }
        self.attempts.append(attempt)
        headers: dict[str, str] = {}
        try:
            body, status = self._route(request, match, form)
            attempt["sid"] = body.get("sid")
        except _TwilioError as err:
            body, status = _error_body(err.status, err.code, err.message), err.status
            attempt["code"] = err.code
            if err.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            if err.retry_after is not None:
                headers["Retry-After"] = f"{err.retry_after:g}"
        attempt["status"] = status
        return web.json_response(body, status=status, headers=headers)

    def _check_auth(self, header: str | None) -> None:
        unauthorized = _TwilioError(401, 20003, "Authenticate")
        if not header or not header.startswith("Basic "):
            raise unauthorized
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized from None
        ok_user = hmac.compare_digest(user.encode(), self.account_sid.encode())
        ok_password = hmac.compare_digest(password.encode(), self.auth_token.encode())
        if not (ok_user and ok_password):
            raise unauthorized

    def _route(
        self, request: web.Request, match: re.Match[str] | None, form: Mapping[str, str]
    ) -> tuple[dict[str, Any], int]:
        self._check_auth(request.headers.get("Authorization"))
        account = _ACCOUNT_ROUTE.fullmatch(request.path)
        if account is not None and account["account"] == self.account_sid:
            if request.method != "GET":
                raise _TwilioError(405, 20004, "Method not allowed")
            return self._account_resource(account["numbers"], request.query.get("PhoneNumber")), 200
        if match is None or match["account"] != self.account_sid:
            raise _TwilioError(404, 20404, f"The requested resource {request.path} was not found")
        kind: Kind = "messages" if match["kind"] == "Messages" else "calls"
        if match["sid"] is not None:
            if request.method != "GET" or match["sid"] not in self._resources:
                raise _TwilioError(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
            return self._resources[match["sid"]], 200
        if request.method != "POST":
            raise _TwilioError(405, 20004, "Method not allowed")
        self._take_fault(kind)
        if kind == "messages":
            return self._create_message(form), 201
        return self._create_call(form), 201

    def _account_resource(self, numbers: str | None, phone_number: str | None) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}"
        if numbers is None:
            return {
                "sid": self.account_sid,
                "friendly_name": "Emulated account",
                "status": "active",
                "type": "Full",
                "uri": f"{base}.json",
            }
        listed = [n for n in self.phone_numbers if phone_number in (None, n)]
        uri = f"{base}/IncomingPhoneNumbers.json"
        return {
            "incoming_phone_numbers": [
                {"sid": "PN" + f"{i:032x}", "account_sid": self.account_sid, "phone_number": n}
                for i, n in enumerate(listed)
            ],
            "end": max(len(listed) - 1, 0),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": 50,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def _take_fault(self, kind: Kind) -> None:
        for fault in self._faults:
            if fault.kind == kind and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                raise _TwilioError(
                    fault.status, fault.code, fault.message, retry_after=fault.retry_after
                )

    def _check_numbers(self, kind: Kind, form: Mapping[str, str]) -> tuple[str, str]:
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            raise _TwilioError(400, 21604, "A 'To' phone number is required.")
        if not from_:
            raise _TwilioError(400, 21603, "A 'From' phone number is required.")
        if not _E164.fullmatch(to):
            raise _TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not _E164.fullmatch(from_):
            raise _TwilioError(
                400, 21212, f"The 'From' number {from_} is not a valid phone number."
            )
        fault = self._number_faults.get(to)
        if fault is not None and fault.kind in (None, kind):
            raise _TwilioError(fault.status, fault.code, fault.message)
        return to, from_

    def _resource_common(self, prefix: str, kind: str, to: str, from_: str) -> dict[str, Any]:
        sid = prefix + secrets.token_hex(16)
        stamp = format_datetime(self._clock())
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/{kind}/{sid}"
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "to": to,
            "from": from_,
            "status": "queued",
            "direction": "outbound-api",
            "date_created": stamp,
            "date_updated": stamp,
            "price": None,
            "price_unit": "USD",
            "uri": f"{uri}.json",
            "subresource_uris": {},
        }

    def _create_message(self, form: Mapping[str, str]) -> dict[str, Any]:
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            raise _TwilioError(400, 21602, "Message body is required.")
        if len(body) > MAX_SMS_BODY_CHARS:
            raise _TwilioError(
                400,
                21617,
                f"The concatenated message body exceeds the {MAX_SMS_BODY_CHARS} character limit.",
            )
        to, from_ = self._check_numbers("messages", form)
        resource = self._resource_common("SM", "Messages", to, from_)
        resource.update(
            body=body,
            num_segments=str(1 if len(body) <= 160 else -(-len(body) // 153)),
            num_media="0",
            date_sent=None,
            error_code=None,
            error_message=None,
            messaging_service_sid=None,
        )
        resource["subresource_uris"] = {"media": resource["uri"].replace(".json", "/Media.json")}
        self._resources[resource["sid"]] = resource
        self.messages.append(
            {
                "sid": resource["sid"],
                "to": to,
                "from": from_,
                "body": body,
                "status": "queued",
                "at": self._clock(),
            }
        )
        return resource

    def _create_call(self, form: Mapping[str, str]) -> dict[str, Any]:
        twiml, url = form.get("Twiml"), form.get("Url")
        if not twiml and not url and not form.get("ApplicationSid"):
            raise _TwilioError(400, 21205, "Url, Twiml or ApplicationSid is required.")
        to, from_ = self._check_numbers("calls", form)
        resource = self._resource_common("CA", "Calls", to, from_)
        resource.update(
            to_formatted=to,
            from_formatted=from_,
            parent_call_sid=None,
            phone_number_sid=None,
            start_time=None,
            end_time=None,
            duration=None,
            answered_by=None,
            forwarded_from=None,
            caller_name=None,
            group_sid=None,
            queue_time="0",
            trunk_sid=None,
            annotation=None,
        )
        self._resources[resource["sid"]] = resource
        self.calls.append(
            {
                "sid": resource["sid"],
                "to": to,
                "from": from_,
                "twiml": twiml,
                "url": url,
                "status_callback": form.get("StatusCallback"),
                "status_callback_events": list(self._events),
                "status": "queued",
                "at": self._clock(),
            }
        )
        return resource
