"""A fault-injecting TCP proxy for fault tests (127.0.0.1 only). Not a test module.

It runs its own event loop in a thread, so a test that blocks its loop (waiting for a process,
say) never stalls the traffic it relays. Three modes:

- ``forward``: every connection is relayed to the target, both ways.
- ``refuse``: the listener is closed (new connections get ECONNREFUSED, as from a stopped
  server) and every open connection is reset.
- ``blackhole``: new connections are accepted and never answered (a partition, or a server that
  hangs); open connections are reset (``drop_existing=True``) or frozen: kept open, nothing
  relayed either way.

Going back to ``forward`` resets blackholed and frozen connections (as a restarted server
would) and relays new ones. ``refuse_before(pattern)`` arms a one-shot trap: the first
client-to-target chunk containing ``pattern`` is never delivered, and the proxy turns to
``refuse`` at that instant (a server stopped in the middle of, say, a transaction). Usage::

    proxy = TcpProxy(5432).start()
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
    proxy.refuse(); ...; proxy.forward()
    proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

from net import free_port

__all__ = ["TcpProxy"]

MODES = ("forward", "refuse", "blackhole")
_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP reset (SO_LINGER 0): the peer sees the connection drop at once."""
    if writer is None:
        return
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Link:
    """One client connection and (when forwarding) its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client)
        _reset(self.target)


class TcpProxy:
    """``127.0.0.1:<port>`` → ``target_host:target_port``, with faults on demand."""

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.mode = "forward"
        self.accepted = 0  # connections accepted, in any mode
        self.relayed = 0  # connections relayed to the target
        self._links: set[_Link] = set()
        self._trap: bytes | None = None
        self.trapped = False  # the trap went off
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )

    # control (from any thread) -----------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def forward(self) -> None:
        """Relay again: frozen and blackholed connections are reset, new ones relayed."""
        self._run(self._set_mode("forward"))

    def refuse(self) -> None:
        """Close the listener and reset every connection."""
        self._run(self._set_mode("refuse"))

    def blackhole(self, *, drop_existing: bool = True) -> None:
        """Accept and never answer; reset open connections, or freeze them."""
        self._run(self._set_mode("blackhole", drop_existing=drop_existing))

    def refuse_before(self, pattern: bytes) -> None:
        """Refuse from the moment a client sends ``pattern`` (that chunk is dropped)."""
        self.trapped = False
        self._trap = pattern

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # the proxy's loop -------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _unlisten(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()

    async def _set_mode(self, mode: str, *, drop_existing: bool = True) -> None:
        assert mode in MODES, mode
        previous, self.mode = self.mode, mode
        if mode == "refuse":
            await self._unlisten()
            self._reset_all()
        elif mode == "blackhole":
            await self._listen()
            if drop_existing:
                self._reset_all()
            else:
                for link in self._links:
                    link.flowing.clear()
        else:
            if previous != "forward":
                self._reset_all()  # frozen and blackholed ones: a restarted server's view
            await self._listen()

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()
        self._links.clear()

    async def _shutdown(self) -> None:
        await self._unlisten()
        self._reset_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.mode != "forward":  # blackhole (refuse has no listener)
                await self._swallow(reader)
                return
            try:
                target_reader, link.target = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self.relayed += 1
            link.tasks = [
                asyncio.create_task(self._pump(reader, link.target, link, True)),
                asyncio.create_task(self._pump(target_reader, writer, link, False)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            if link in self._links:
                self._links.discard(link)
                for end in (writer, link.target):
                    if end is not None:
                        end.close()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(_CHUNK):
                pass

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        outbound: bool,
    ) -> None:
        try:
            while True:
                await link.flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await link.flowing.wait()  # frozen while this chunk was in flight: hold it
                if outbound and self._trap is not None and self._trap in data:
                    self._trap, self.trapped = None, True
                    asyncio.get_running_loop().create_task(self._set_mode("refuse"))
                    return
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
