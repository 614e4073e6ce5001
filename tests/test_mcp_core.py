"""The layering: the protocol package imports neither plane, the example upstream needs nothing
of the gateway's transport, dispatch never imports the transport that calls it, and the console
sits on the settings API (each checked in a fresh interpreter, where sys.modules shows what
loaded)."""

from __future__ import annotations

from processes import ROOT, loaded_after


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


def test_the_console_is_a_client_of_the_settings_api_not_of_the_gateway() -> None:
    # gateway/ mounts the console; the console uses settings_api/; settings_api/ uses neither.
    assert loaded_after("import console.app", ("gateway",)) == []
    assert loaded_after("import settings_api.app", ("gateway", "console")) == []
