"""docker-compose.yml cannot be run here (no Docker engine): check it against what the service
reads, so it stays a working deployment for users."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from settings_api.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
GATEWAYS = ("gateway-a", "gateway-b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def variables_the_service_reads() -> set[str]:
    source = (ROOT / "settings_api" / "config.py").read_text()
    return set(re.findall(r'"(MCPGW_[A-Z0-9_]+)"', source))


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} with sample values, as an operator sets."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if op == ":-":
            return rest
        return f"sample-{name.lower()}-" + "x" * 32

    return re.sub(r"\$\{([A-Z0-9_]+)(:[-?])([^}]*)\}", one, str(value))


def test_services_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "nginx", *GATEWAYS}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    for name in GATEWAYS:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    for name in GATEWAYS:
        assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"


def test_gateway_environment_is_what_the_service_reads(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    known = variables_the_service_reads()
    envs = [compose["services"][name]["environment"] for name in GATEWAYS]
    for env in envs:
        unknown = set(env) - known
        assert not unknown, f"variables the service never reads: {unknown}"
        resolved = {k: interpolate(v) for k, v in env.items()}
        resolved["MCPGW_DATA_DIR"] = str(tmp_path / "data")
        settings = load_settings(resolved)  # every value passes the service's own validation
        assert settings.uses_postgres and settings.redis_url == "redis://redis:6379/0"
        assert "@postgres:5432/" in settings.database_url
    # Replicas must share the secrets that sign sessions, JWTs and encrypt headers.
    for secret in ("MCPGW_JWT_SECRET", "MCPGW_SESSION_SECRET", "MCPGW_SECRET_KEY"):
        assert envs[0][secret] == envs[1][secret]
        assert ":?" in envs[0][secret], f"{secret} must be required, not defaulted"


def test_gateway_health_check_and_port_match_the_command(compose: dict[str, Any]) -> None:
    for name in GATEWAYS:
        service = compose["services"][name]
        command = service["command"]
        assert command[:2] == ["mcp-gateway", "serve"]
        port = command[command.index("--port") + 1]
        check = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in check


def test_nginx_balances_both_replicas_and_keeps_sse_unbuffered(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    mount = next(v for v in nginx["volumes"] if "nginx.conf" in v)
    conf = (ROOT / mount.split(":")[0]).read_text()
    command = compose["services"]["gateway-a"]["command"]
    gateway_port = command[command.index("--port") + 1]
    for name in GATEWAYS:
        assert f"server {name}:{gateway_port}" in conf
    for directive in (
        "proxy_buffering off;",
        "proxy_cache off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert directive in conf
    assert re.search(r"client_max_body_size\s+1m;", conf)
    assert any(str(p).endswith(":80") for p in nginx["ports"])


def test_image_contains_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in patterns}
    assert {"gateway", "settings_api", "simulator"} <= packages
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
