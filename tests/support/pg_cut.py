"""A TCP proxy in front of PostgreSQL that loses a commit's answer.

Armed with a marker (bytes of a statement), the connection that next sends a statement holding
it has its following ``COMMIT`` forwarded to the server and is then cut before the server's
answer comes back: what a network drop or a server crash right after a commit does to a
client, which cannot tell whether its transaction was stored.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["CommitCutter"]


class CommitCutter:
    """The proxy (threads, daemon): connect to ``127.0.0.1:<port>`` instead of the server.

    Parameters
    ----------
    upstream:
        The PostgreSQL server's ``(host, port)``.
    """

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(50)
        self.port: int = self._listener.getsockname()[1]
        #: the next connection sending a statement with these bytes loses its next COMMIT's answer
        self.marker: bytes | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting connections (those open are cut by the server's end)."""
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            state = {"cut": False, "target": False, "committing": False}
            for a, b, outbound in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pipe, args=(a, b, state, outbound), daemon=True
                ).start()

    def _pipe(
        self, a: socket.socket, b: socket.socket, state: dict[str, bool], outbound: bool
    ) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data or state["cut"]:
                    break
                if not outbound and state["committing"]:
                    # the server's answer to the COMMIT: it committed; the client never hears
                    state["cut"] = True
                    self.cuts += 1
                    break
                b.sendall(data)
                if not outbound:
                    continue
                if self.marker is not None and self.marker in data:
                    state["target"] = True
                    self.marker = None
                if state["target"] and b"COMMIT" in data:
                    state["committing"] = True
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
