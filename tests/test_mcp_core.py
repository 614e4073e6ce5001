"""The layering around mcp_core: the protocol package imports neither plane, the example
upstream needs nothing of the gateway's transport, and dispatch never imports the transport
that calls it (each checked in a fresh interpreter, where sys.modules shows what loaded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_mcp_core_imports_neither_plane() -> None:
    modules = [
        p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        for p in sorted((ROOT / "mcp_core").rglob("*.py"))
    ]
    assert len(modules) > 10
    imports = "; ".join(f"import {m}" for m in modules)
    assert loaded_after(imports, ("gateway", "settings_api", "simulator")) == []


def test_the_example_upstream_uses_the_core_not_the_gateway_transport() -> None:
    loaded = loaded_after("import gateway.example_upstream", ("gateway.", "settings_api"))
    assert [m for m in loaded if not m.startswith("gateway.example_upstream")] == []


def test_dispatch_does_not_import_the_http_transport() -> None:
    assert "gateway.transport.http" not in loaded_after(
        "import gateway.dispatch", ("gateway.transport",)
    )
