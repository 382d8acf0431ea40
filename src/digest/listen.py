"""Listening sockets for digest's two local servers (`preview` and `serve`), in one place.

The socket is bound here rather than by uvicorn so the real port is known (``--port 0``) before
serving and a port in use is one clear error, and with uvicorn's own backlog (2048): a burst of
one-click POSTs after a send must queue, not be refused.
"""

from __future__ import annotations

import socket

from digest.errors import DigestError

BACKLOG = 2048


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise DigestError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise DigestError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pass another --port, or --port 0 to pick a free one",
        ) from exc
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    """The address to print and open: IPv6 hosts in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
