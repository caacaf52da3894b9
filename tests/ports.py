"""Ports for the servers the tests start, safe when several test processes run at once."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_PORTS = random.Random()


def free_port() -> int:
    """A free port for a server the test starts in another process.

    Never one of the kernel's ephemeral ports: a port from ``bind(0)`` is released before
    the child binds it, and meanwhile any outgoing connection on the machine (another test
    worker's, say) may take it as its source port. Below the ephemeral range only another
    ``free_port`` caller could, and it draws from ~10,000 ports at random.
    """
    low, _ = _ephemeral_range()
    for _attempt in range(200):
        port = _PORTS.randrange(max(1024, low - 10_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def bound_socket() -> socket.socket:
    """A listening-ready socket on a kernel-chosen port, for a server in this process
    (uvicorn serves it as given, so no other process can take the port meanwhile)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock
