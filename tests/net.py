"""Addresses for tests: a free loopback port, a URL nothing listens on, a new client address."""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A 127.0.0.1 port that was free a moment ago (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url(path: str = "/mcp") -> str:
    """An http URL on a loopback port nothing listens on: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}{path}"


def new_address() -> str:
    """A client address no other test used (a random 10/8 address), for per-address limits."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
