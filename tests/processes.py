"""Real `mcp-gateway serve` processes for multi-replica and fault tests (127.0.0.1 only), and
what a statement imports in a fresh interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from net import free_port

CLI = str(Path(sys.executable).with_name("mcp-gateway"))
ROOT = Path(__file__).resolve().parent.parent


def loaded_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules under `prefixes` that `statement` loads in a fresh interpreter."""
    code = (
        f"import sys; {statement}; "
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return out.stdout.split()


_ANNOUNCED = " serving role="  # gateway/cli.py's start-up line


class GatewayProcess:
    """One `mcp-gateway serve` on a free port; its output goes to a log file in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        env: dict[str, str],
        role: str = "all",
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        # No readiness grace on SIGTERM unless a test asks for one: `stop` stays quick.
        base["MCPGW_SHUTDOWN_GRACE_S"] = "0"
        # The tests' stub upstreams listen on loopback, which the egress policy refuses.
        base["MCPGW_UPSTREAM_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
        # Its own address, unless a test names another: the URLs it hands out (callUrl,
        # OAuth metadata) then work for a client that follows them.
        base["MCPGW_PUBLIC_URL"] = self.url
        base.update(env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--role", role],
            env=base,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
            if _ANNOUNCED not in self.log():
                # Until this process says it is serving, a 200 on its port may come from
                # another process that held the port a moment ago (parallel test runs).
                time.sleep(0.05)
                continue
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
