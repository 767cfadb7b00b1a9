"""Send one raw HTTP/1.1 request the way a real network delivers it: in small pieces.

A request over a real network reaches the server in TCP segments (about 1,448 bytes of payload
each on an Ethernet path) spread over time, and a relay or a proxy may re-chunk it again. A
server that reads "what is buffered" instead of "the whole body" works against a local client
that writes everything at once and fails over a real network. :func:`send_segmented` writes the
request over a plain TCP connection (``TCP_NODELAY``, so each write leaves as its own segment)
in ``segment_bytes`` pieces with a pause between them, optionally with a chunked body
(``Transfer-Encoding: chunked``, RFC 9112 §7.1) or a ``Content-Length`` that lies about the
body, and reads the answer back.

Used by the intake tests and the intake fuzz test; the factory emulator's own webhooks are
plain ``httpx`` posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PAUSE_SECONDS",
    "SEGMENT_BYTES",
    "RawResponse",
    "chunked_body",
    "send_segmented",
]

#: TCP payload per segment on an Ethernet path (1,500 MTU − 40 bytes of IP/TCP headers − 12
#: bytes of TCP timestamp option).
SEGMENT_BYTES = 1448
#: Pause between two segments (seconds): what a relay forwarding segments one by one adds.
PAUSE_SECONDS = 0.0002


@dataclass(frozen=True)
class RawResponse:
    """The server's answer: status, headers (lower-case names) and body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON.

        Raises
        ------
        ValueError
            When the body is not JSON.
        """
        return json.loads(self.body)


def chunked_body(body: bytes, chunk_bytes: int = 4096) -> bytes:
    """``body`` in the chunked transfer coding (RFC 9112 §7.1): sized chunks, then ``0``.

    Parameters
    ----------
    body:
        The content.
    chunk_bytes:
        Size of every chunk but the last (> 0).
    """
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    out = bytearray()
    for start in range(0, len(body), chunk_bytes):
        piece = body[start : start + chunk_bytes]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


def _request_bytes(
    method: str,
    path: str,
    host: str,
    port: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    chunked: bool,
    chunk_bytes: int,
    content_length: int | None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    names = {name.lower() for name in headers}
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = chunked_body(body, chunk_bytes)
    else:
        if "content-length" not in names and "transfer-encoding" not in names:
            length = len(body) if content_length is None else content_length
            lines.append(f"Content-Length: {length}")
        payload = body
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
    return head + payload


def _parse_response(raw: bytes) -> RawResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"no HTTP answer (got {raw[:80]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = rest[: int(length)] if length is not None and length.isdigit() else rest
    return RawResponse(int(parts[1]), headers, body)


async def send_segmented(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    segment_bytes: int = SEGMENT_BYTES,
    pause_seconds: float = PAUSE_SECONDS,
    chunked: bool = False,
    chunk_bytes: int = 4096,
    content_length: int | None = None,
    timeout: float = 30.0,
) -> RawResponse:
    """Send one request in ``segment_bytes`` pieces, ``pause_seconds`` apart; its answer.

    The request line and headers travel in the same byte stream as the body, so a segment
    boundary can fall anywhere (inside a header, between headers and body, inside a chunk-size
    line). ``Connection: close`` is sent, and the answer is read until the server closes.

    Parameters
    ----------
    host, port:
        The server.
    path:
        Request target, e.g. ``/events``.
    body:
        The content (before any transfer coding).
    headers:
        Extra headers; ``Host``, ``Connection`` and the framing header are added (no
        ``Content-Length`` when ``headers`` name a ``Transfer-Encoding``: ``body`` is then
        sent as it is, to test broken framing).
    method:
        HTTP method.
    segment_bytes:
        Bytes per write (> 0); every write is flushed (``TCP_NODELAY``) before the pause.
    pause_seconds:
        Seconds between two writes (0 yields to the event loop only).
    chunked:
        Send the body with ``Transfer-Encoding: chunked`` (no ``Content-Length``).
    chunk_bytes:
        Chunk size of the chunked coding.
    content_length:
        ``Content-Length`` to announce instead of the body's length (a lying client);
        ignored when ``chunked``.
    timeout:
        Seconds for the whole exchange.

    Returns
    -------
    RawResponse
        The server's answer. When the server stops reading and closes while the request is
        still being written (e.g. an early 413), the answer it sent is still returned.

    Raises
    ------
    ConnectionError
        When the server closed without any HTTP answer.
    TimeoutError
        When the exchange took longer than ``timeout``.
    """
    if segment_bytes <= 0:
        raise ValueError("segment_bytes must be positive")
    wire = _request_bytes(
        method,
        path,
        host,
        port,
        body,
        headers or {},
        chunked=chunked,
        chunk_bytes=chunk_bytes,
        content_length=content_length,
    )
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await _write_in_segments(writer, wire, segment_bytes, pause_seconds)
            raw = await _read_all(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if not raw:
        raise ConnectionError("the server closed the connection without answering")
    return _parse_response(raw)


async def _write_in_segments(
    writer: asyncio.StreamWriter, wire: bytes, segment_bytes: int, pause_seconds: float
) -> None:
    """Write ``wire`` piece by piece; stop quietly when the server stopped reading."""
    for start in range(0, len(wire), segment_bytes):
        if writer.is_closing():
            return
        try:
            writer.write(wire[start : start + segment_bytes])
            await writer.drain()
        except (ConnectionError, OSError):
            return  # the server answered early and closed; its answer is read next
        await asyncio.sleep(pause_seconds)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """The server's answer: up to its ``Content-Length``, else until it closes.

    A reset after the answer is tolerated. The server may keep the connection open after
    answering (e.g. while it drains a body it refused), so a complete answer is not waited on.
    """
    data = bytearray()
    while not _complete(data):
        try:
            piece = await reader.read(65536)
        except (ConnectionError, OSError):
            break
        if not piece:
            break
        data += piece
    return bytes(data)


def _complete(data: bytearray) -> bool:
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    for line in bytes(data[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(data) - head_end - 4 >= int(value.strip())
    return False
