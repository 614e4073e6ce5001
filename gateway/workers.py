"""`mcp-gateway serve --workers N`: N worker processes serving one port (``SO_REUSEPORT``).

The parent is a small supervisor; it serves no requests itself:

1. applies pending migrations once, before any worker starts;
2. reserves the port: it binds (without listening) a ``SO_REUSEPORT`` socket to the address,
   so a port that is taken fails at once, ``--port 0`` picks one port for every worker, and
   the port stays reserved while a worker restarts;
3. starts the workers, ``python -m gateway.workers …``, each in its own process group (a
   Ctrl-C in a terminal reaches the parent only, which then stops the workers in order), and
   waits until every one has started its application (store and Redis connected, socket
   listening). A worker that exits before that fails the start: the others are stopped and
   the parent exits 1;
4. supervises: a worker that exits on its own is restarted at once, at most
   ``MAX_RESTARTS`` times in any ``RESTART_WINDOW_S`` seconds; past that budget something is
   persistently wrong (the store is gone, the code crashes), so the parent stops the others
   and exits 1 for the service manager to act on;
5. on SIGTERM or SIGINT sends SIGTERM to every worker. Each drains as `serve` does: /readyz
   answers 503 for ``MCPGW_SHUTDOWN_GRACE_S`` while the listener stays open, then the
   listener closes and in-flight requests get ``SHUTDOWN_TIMEOUT_S`` to finish. A second
   signal is passed on and skips the rest of the grace. A worker still running after that
   (plus ``KILL_GRACE_S``) is killed. The parent exits 0.

The kernel spreads new connections over the workers' listening sockets (Linux; other systems
may favour one socket). Workers share nothing in memory: rate limits, legacy-session ends and
cache invalidation go through Redis, which is why ``--workers > 1`` needs ``MCPGW_REDIS_URL``
(the CLI checks it). A worker stops by itself when its parent disappears (checked every
second), so killing the parent with SIGKILL leaves no orphan serving requests. Their metrics
meet in snapshot files in a directory the parent makes and removes, so `/metrics` answers for
every worker, whichever one the scrape reaches (gateway/observability/shared_metrics.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from aiohttp import web

from gateway.health import DRAIN
from gateway.observability.logs import configure_logging
from gateway.observability.shared_metrics import (
    SHARED_METRICS,
    SharedMetrics,
    shared_metrics_ctx,
)
from gateway.server import bind_socket, build_app, tune_collector, use_fast_event_loop
from mcp_core.version import __version__
from settings_api.config import ConfigError, Settings, load_settings
from settings_api.store import StoreError, apply_migrations

__all__ = [
    "MAX_RESTARTS",
    "RESTART_WINDOW_S",
    "SHUTDOWN_TIMEOUT_S",
    "Supervisor",
    "run_workers",
    "worker_main",
]

log = logging.getLogger("mcp_gateway.workers")

SHUTDOWN_TIMEOUT_S = 10.0  # a worker's graceful shutdown (as `serve` with one process)
KILL_GRACE_S = 5.0  # then SIGKILL
START_TIMEOUT_S = 60.0  # every worker must be serving within this
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
PARENT_CHECK_S = 1.0
_TICK_S = 0.1
_READY = b"ready\n"


# --------------------------------------------------------------------------- parent


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready_fd: int | None  # read end of the readiness pipe until the worker reports
    ready: bool = False


class Supervisor:
    """Starts, watches, restarts and stops the worker processes (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        role: str,
        count: int,
        grace_s: float = 0.0,
        max_restarts: int = MAX_RESTARTS,
        window_s: float = RESTART_WINDOW_S,
        metrics_dir: Path | None = None,
    ) -> None:
        self.host, self.port, self.role, self.count = host, port, role, count
        self.metrics_dir = metrics_dir  # where the workers share their metrics snapshots
        self.grace_s = grace_s  # the workers' drain before they close the listener
        self.signals = 0  # SIGTERM/SIGINT received
        self.max_restarts, self.window_s = max_restarts, window_s
        self.workers: dict[int, _Worker] = {}
        self.restarts: collections.deque[float] = collections.deque()
        self.stop_requested = False
        self._selector = selectors.DefaultSelector()

    # signal handlers run between bytecodes of the main loop: they only set a flag
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.stop_requested = True

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self._run()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()

    def _run(self) -> int:
        for index in range(self.count):
            self._spawn(index)
        if not self._wait_ready():
            return 0 if self.stop_requested else 1
        log.info(
            "mcp-gateway %s serving role=%s on http://%s:%d with %d workers (pids %s)",
            __version__,
            self.role,
            self.host,
            self.port,
            self.count,
            ", ".join(str(w.proc.pid) for w in self.workers.values()),
        )
        while not self.stop_requested:
            self._poll_ready(_TICK_S)
            for worker in list(self.workers.values()):
                status = worker.proc.poll()
                if status is None or self.stop_requested:
                    continue
                if not self._restart(worker, status):
                    return 1
        return 0

    def _spawn(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        command = [
            sys.executable,
            "-m",
            "gateway.workers",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--role",
            self.role,
            "--index",
            str(index),
            "--ready-fd",
            str(write_fd),
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.metrics_dir is not None:
            command += ["--metrics-dir", str(self.metrics_dir)]
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own CLI
                command,
                pass_fds=(write_fd,),
                process_group=0,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.workers[index] = _Worker(index, proc, read_fd)
        self._selector.register(read_fd, selectors.EVENT_READ, index)

    def _poll_ready(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            worker = self.workers[key.data]
            try:
                data = os.read(key.fd, 64)
            except OSError:
                data = b""
            self._close_ready(worker)
            if data.startswith(_READY):
                worker.ready = True
                log.info("worker %d (pid %d) is serving", worker.index, worker.proc.pid)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in self.workers.values()):
            if self.stop_requested:
                return False
            for worker in self.workers.values():
                status = worker.proc.poll()
                if status is not None and not worker.ready:
                    log.error(
                        "worker %d exited with status %d while starting; stopping",
                        worker.index,
                        status,
                    )
                    return False
            if time.monotonic() > deadline:
                log.error("workers did not start within %.0f s; stopping", START_TIMEOUT_S)
                return False
            self._poll_ready(_TICK_S)
        return True

    def _restart(self, worker: _Worker, status: int) -> bool:
        """Replace a worker that exited; False once the restart budget is spent."""
        self._close_ready(worker)
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > self.window_s:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            log.error(
                "worker %d (pid %d) exited with status %d; %d restarts in the last "
                "%.0f s already: giving up",
                worker.index,
                worker.proc.pid,
                status,
                len(self.restarts),
                self.window_s,
            )
            return False
        self.restarts.append(now)
        log.warning(
            "worker %d (pid %d) exited with status %d; restarting it",
            worker.index,
            worker.proc.pid,
            status,
        )
        self._spawn(worker.index)
        return True

    def _stop_all(self) -> None:
        """SIGTERM to every worker; a further signal to the parent is passed on (skipping
        the workers' drain grace); SIGKILL for any still running past the deadline."""
        live = [w for w in self.workers.values() if w.proc.poll() is None]
        if live:
            log.info("stopping %d workers", len(live))
        signalled = 0
        deadline = time.monotonic() + self.grace_s + SHUTDOWN_TIMEOUT_S + KILL_GRACE_S
        while live and time.monotonic() < deadline:
            if signalled < max(1, self.signals):
                signalled = max(1, self.signals)
                for worker in live:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.send_signal(signal.SIGTERM)
            time.sleep(_TICK_S / 2)
            live = [w for w in live if w.proc.poll() is None]
        for worker in live:
            log.warning(
                "worker %d (pid %d) did not stop in time; killing it", worker.index, worker.proc.pid
            )
            worker.proc.kill()
        for worker in self.workers.values():
            self._close_ready(worker)
            worker.proc.wait()
        log.info("all workers stopped")


def run_workers(settings: Settings, *, host: str, port: int, role: str, workers: int) -> int:
    """`serve --workers N` (N > 1, Redis configured): the exit status."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print(
            "mcp-gateway: --workers > 1 needs SO_REUSEPORT, which this system lacks",
            file=sys.stderr,
        )
        return 2
    try:
        applied = asyncio.run(
            apply_migrations(settings.database_url, timeout_s=settings.store_timeout_s)
        )
    except StoreError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before any worker started
        return 0
    if applied:
        log.info("applied migrations %s", applied)
    try:
        reservation = bind_socket(host, port, reuse_port=True)  # the workers join it
    except OSError as exc:
        print(
            f"mcp-gateway: cannot listen on {host}:{port} ({exc.strerror or exc})", file=sys.stderr
        )
        return 1
    metrics_dir = Path(tempfile.mkdtemp(prefix="mcpgw-metrics-"))
    try:
        with reservation:
            actual_port = reservation.getsockname()[1]
            return Supervisor(
                host=host,
                port=actual_port,
                role=role,
                count=workers,
                grace_s=settings.shutdown_grace_s,
                metrics_dir=metrics_dir,
            ).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


# --------------------------------------------------------------------------- worker


def _worker_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mcp-gateway-worker", description="one worker of `mcp-gateway serve --workers`"
    )
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--metrics-dir", type=Path)
    return parser.parse_args(argv)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # Polling: no event tells a process that its parent died (portably).
    while True:
        await asyncio.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            break
    log.warning("the supervisor (pid %d) is gone: stopping", parent_pid)
    stop.set()


async def _serve_worker(settings: Settings, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    app = build_app(settings, args.role)  # type: ignore[arg-type]
    app.on_startup.append(tune_collector)
    if args.metrics_dir is not None:
        app[SHARED_METRICS] = SharedMetrics(args.metrics_dir, args.index)
        app.cleanup_ctx.append(shared_metrics_ctx)

    def on_sigterm() -> None:
        # As `serve` (gateway/server.py drain_on_signals): /readyz turns 503 at once, the
        # listener stays open for the grace, then the graceful shutdown. A second SIGTERM
        # skips what is left of the grace.
        if app[DRAIN].draining:
            stop.set()
            return
        app[DRAIN].start()
        log.info(
            "SIGTERM: not ready any more; closing the listener in %g s", settings.shutdown_grace_s
        )
        loop.call_later(settings.shutdown_grace_s, stop.set)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    # As `serve`: no aiohttp access log (the request middleware logs every request).
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None
    )
    watcher = asyncio.create_task(_watch_parent(args.parent_pid, stop))
    try:
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port, reuse_port=True).start()
        with contextlib.suppress(OSError):  # the supervisor may be gone already
            os.write(args.ready_fd, _READY)
        with contextlib.suppress(OSError):
            os.close(args.ready_fd)
        log.info(
            "worker %d (pid %d) serving on http://%s:%d",
            args.index,
            os.getpid(),
            args.host,
            args.port,
        )
        await stop.wait()
        return 0
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runner.cleanup()


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (started by :class:`Supervisor`)."""
    # The supervisor coordinates Ctrl-C; a stray SIGINT must not kill a worker mid-request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = _worker_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mcp-gateway worker {args.index}: {exc}", file=sys.stderr)
        return 2
    # As `serve`: JSON lines unless MCPGW_LOG_FORMAT says otherwise; each record names its
    # worker (a field of the formatter, so request lines keep their direct path).
    configure_logging(
        settings.log_level, settings.log_format or "json", static={"worker": args.index}
    )
    use_fast_event_loop()
    try:
        return asyncio.run(_serve_worker(settings, args))
    except (StoreError, OSError) as exc:
        log.error("worker %d cannot serve: %s", args.index, exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(worker_main())
