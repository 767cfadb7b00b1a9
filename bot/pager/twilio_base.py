"""Point a real :class:`twilio.rest.Client` at another Twilio API base URL.

The bridge's settings expose ``TWILIO_API_BASE_URL`` (default :data:`DEFAULT_TWILIO_API_BASE_URL`,
``https://api.twilio.com``); the sandbox and the tests set it to the local Twilio emulator
(:class:`sandbox.twilio_emulator.TwilioEmulator`) so the unmodified twilio library speaks real
HTTP to it.

How twilio 9.x builds URLs: ``client.messages`` and ``client.calls`` are
``client.api.account.messages`` / ``.calls``; every request goes through
``twilio.rest.api.ApiBase`` (a ``twilio.base.domain.Domain``) whose ``base_url`` attribute is
hard-coded to ``https://api.twilio.com`` and joined with ``/2010-04-01/Accounts/<sid>/...``.
Setting ``client.api.base_url`` therefore redirects the whole 2010-04-01 API (Messages, Calls).
The client also rewrites hosts when ``edge``/``region`` (or ``TWILIO_EDGE``/``TWILIO_REGION``)
are set, which would mangle a non-Twilio host, so those are cleared for such URLs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from twilio.rest import Client

__all__ = ["DEFAULT_TWILIO_API_BASE_URL", "configure_client"]

DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com"
"""Where the 2010-04-01 REST API (Messages, Calls) lives in production."""


def configure_client(client: Client, base_url: str) -> None:
    """Send ``client``'s Messages and Calls requests to ``base_url``.

    Parameters
    ----------
    client
        A ``twilio.rest.Client`` (sync or built with ``AsyncTwilioHttpClient``).
    base_url
        Scheme and authority, optionally with a path prefix, without ``/2010-04-01``:
        e.g. ``"https://api.twilio.com"`` or ``"http://127.0.0.1:8123"``. Driven by the
        ``TWILIO_API_BASE_URL`` setting.

    Raises
    ------
    ValueError
        If ``base_url`` is not an absolute ``http``/``https`` URL.
    """
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"TWILIO_API_BASE_URL must be an absolute http(s) URL, got {base_url!r}")
    client.api.base_url = base_url.rstrip("/")
    if not (parsed.hostname or "").endswith("twilio.com"):
        # ClientBase.get_hostname() would splice edge/region into our host name.
        client.edge = None
        client.region = None
