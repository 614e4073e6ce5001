"""Configuration from MCPGW_* variables and the `mcp-gateway` command line
(docs/configuration.md)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
from net import free_port

from settings_api.config import ConfigError, load_settings
from settings_api.jwt_auth import JwtVerifier, TokenError

CLI = str(Path(sys.executable).with_name("mcp-gateway"))
SECRET = "s" * 40
SECRET_FILES = ("jwt_secret", "session_secret", "secret_key")


def _cli_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    base.update(env)
    return base


def _run(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env=_cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# defaults ------------------------------------------------------------------------------------
def test_defaults_follow_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings({})
    data_dir = tmp_path / ".local" / "share" / "mcp-gateway"
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'mcp-gateway.db'}"
    assert not settings.uses_postgres
    assert settings.redis_url is None
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.allowed_origins == frozenset({"http://127.0.0.1:8080"})
    assert (settings.rate_limit_rps, settings.rate_limit_burst) == (10, 20)
    assert (settings.request_limit_rps, settings.request_limit_burst) == (50, 100)
    assert settings.rate_limit_failure_mode == "open"
    assert settings.upstream_timeout_s == 30
    assert settings.max_body_bytes == 1_048_576
    assert settings.call_log_retention_days == 7
    assert (settings.jwt_jwks_url, settings.jwt_audience, settings.jwt_issuer) == (None,) * 3
    # Secrets are generated into the data dir, strong and distinct.
    for name in SECRET_FILES:
        assert (data_dir / "secrets" / name).is_file()
    assert len({settings.jwt_secret, settings.session_secret, settings.secret_key}) == 3
    assert len(settings.jwt_secret) >= 32


def test_explicit_values_are_used(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "MCPGW_DATA_DIR": str(tmp_path),
            "MCPGW_DATABASE_URL": "postgresql://db.internal/gw",
            "MCPGW_REDIS_URL": "redis://cache:6379/0",
            "MCPGW_PUBLIC_URL": "https://gw.example.com/",
            "MCPGW_JWT_SECRET": SECRET,
            "MCPGW_SESSION_SECRET": "session-" + SECRET,
            "MCPGW_SECRET_KEY": "key-" + SECRET,
            "MCPGW_RATE_LIMIT_RPS": "2.5",
            "MCPGW_RATE_LIMIT_BURST": "5",
            "MCPGW_REQUEST_LIMIT_RPS": "7",
            "MCPGW_REQUEST_LIMIT_BURST": "9",
            "MCPGW_RATE_LIMIT_FAILURE_MODE": "closed",
            "MCPGW_UPSTREAM_TIMEOUT_S": "1.5",
            "MCPGW_MAX_BODY_BYTES": "4096",
            "MCPGW_JWT_JWKS_URL": "https://idp.example.com/jwks",
            "MCPGW_JWT_AUDIENCE": "gw",
            "MCPGW_JWT_ISSUER": "https://idp.example.com/",
            "MCPGW_CALL_LOG_RETENTION_DAYS": "30",
        }
    )
    assert settings.database_url == "postgresql://db.internal/gw" and settings.uses_postgres
    assert settings.call_log_retention_days == 30
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.public_url == "https://gw.example.com"
    assert settings.allowed_origins == frozenset({"https://gw.example.com"})
    assert (settings.jwt_secret, settings.session_secret, settings.secret_key) == (
        SECRET,
        "session-" + SECRET,
        "key-" + SECRET,
    )
    assert (settings.rate_limit_rps, settings.rate_limit_burst) == (2.5, 5)
    assert (settings.request_limit_rps, settings.request_limit_burst) == (7, 9)
    assert settings.rate_limit_failure_mode == "closed"
    assert (settings.upstream_timeout_s, settings.max_body_bytes) == (1.5, 4096)
    assert (settings.jwt_jwks_url, settings.jwt_audience, settings.jwt_issuer) == (
        "https://idp.example.com/jwks",
        "gw",
        "https://idp.example.com/",
    )
    # Given secrets are not written to disk.
    assert not (tmp_path / "secrets").exists() or not any((tmp_path / "secrets").iterdir())


def test_allowed_origins_list_is_parsed(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "MCPGW_DATA_DIR": str(tmp_path),
            "MCPGW_JWT_SECRET": SECRET,
            "MCPGW_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080/",
        }
    )
    assert settings.allowed_origins == frozenset({"https://a.example", "http://b.example:8080"})


# validation ----------------------------------------------------------------------------------
def test_every_bad_value_is_reported_at_once_with_its_variable(tmp_path: Path) -> None:
    env = {
        "MCPGW_DATA_DIR": str(tmp_path),
        "MCPGW_JWT_SECRET": "too-short",
        "MCPGW_RATE_LIMIT_RPS": "abc",
        "MCPGW_MAX_BODY_BYTES": "-1",
        "MCPGW_RATE_LIMIT_FAILURE_MODE": "maybe",
        "MCPGW_PUBLIC_URL": "ftp://x",
        "MCPGW_DATABASE_URL": "mysql://x",
        "MCPGW_RATE_LIMIT_BURST": "1.5",
        "MCPGW_UPSTREAM_TIMEOUT_S": "nan",
        "MCPGW_REDIS_URL": "http://cache",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    problems = caught.value.problems
    expected = (
        "MCPGW_RATE_LIMIT_RPS",
        "MCPGW_MAX_BODY_BYTES",
        "MCPGW_RATE_LIMIT_FAILURE_MODE",
        "MCPGW_PUBLIC_URL",
        "MCPGW_DATABASE_URL",
        "MCPGW_RATE_LIMIT_BURST",
        "MCPGW_UPSTREAM_TIMEOUT_S",
        "MCPGW_REDIS_URL",
        "MCPGW_JWT_SECRET",
    )
    for name in expected:
        assert sum(p.startswith(name) for p in problems) == 1, (name, problems)
    assert len(problems) == len(expected)
    message = str(caught.value)
    for name in expected:
        assert name in message
    assert "too-short" not in message  # a secret, even a bad one, is never echoed
    # Nothing was generated for a configuration that will not start.
    assert not (tmp_path / "secrets").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MCPGW_RATE_LIMIT_RPS", "0"),
        ("MCPGW_RATE_LIMIT_RPS", "inf"),
        ("MCPGW_REQUEST_LIMIT_BURST", "ten"),
        ("MCPGW_MAX_BODY_BYTES", "0"),
        ("MCPGW_UPSTREAM_TIMEOUT_S", "-3"),
        ("MCPGW_PUBLIC_URL", "gw.example.com"),
        ("MCPGW_PUBLIC_URL", "http://"),
        ("MCPGW_JWT_JWKS_URL", "file:///etc/jwks.json"),
        ("MCPGW_ALLOWED_ORIGINS", "gw.example.com"),
        ("MCPGW_RATE_LIMIT_FAILURE_MODE", "sometimes"),
        ("MCPGW_CALL_LOG_RETENTION_DAYS", "0"),
        ("MCPGW_CALL_LOG_RETENTION_DAYS", "1.5"),
    ],
)
def test_a_single_bad_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": SECRET, name: value})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(name)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://admin:hunter2-pw@db.internal/gw",
        "postgresql:/admin:hunter2-pw@db.internal/gw",
        "postgresql//admin:hunter2-pw@db.internal/gw",
        "admin:hunter2-pw@db.internal",
        "mysql://admin:hunter2-pw@db.internal:notaport/gw",
        "mysql://admin:hunter2%40pw@db.internal/gw",
    ],
)
@pytest.mark.parametrize("variable", ["MCPGW_DATABASE_URL", "MCPGW_REDIS_URL"])
def test_passwords_in_urls_are_never_echoed(tmp_path: Path, variable: str, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": SECRET, variable: url})
    message = str(caught.value)
    assert variable in message
    assert "hunter2" not in message
    assert "db.internal" in message  # still enough to find the mistake


# generated secrets ---------------------------------------------------------------------------
def test_generated_secrets_are_stable_across_loads_and_private(tmp_path: Path) -> None:
    env = {"MCPGW_DATA_DIR": str(tmp_path / "data")}
    first, second = load_settings(env), load_settings(env)
    assert (first.jwt_secret, first.session_secret, first.secret_key) == (
        second.jwt_secret,
        second.session_secret,
        second.secret_key,
    )
    secrets_dir = tmp_path / "data" / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) & 0o077 == 0
    for name in SECRET_FILES:
        path = secrets_dir / name
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, oct(path.stat().st_mode)
    assert secrets_dir.joinpath("jwt_secret").read_text().strip() == first.jwt_secret
    # No temporary files are left behind.
    assert sorted(p.name for p in secrets_dir.iterdir()) == sorted(SECRET_FILES)


def test_an_explicit_secret_wins_over_the_generated_one(tmp_path: Path) -> None:
    generated = load_settings({"MCPGW_DATA_DIR": str(tmp_path)})
    explicit = load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": SECRET})
    assert explicit.jwt_secret == SECRET != generated.jwt_secret
    assert explicit.session_secret == generated.session_secret


_RACER = """
import json, sys
from settings_api.config import load_settings
print("ready", flush=True)
sys.stdin.readline()
s = load_settings({"MCPGW_DATA_DIR": sys.argv[1]})
print(json.dumps([s.jwt_secret, s.session_secret, s.secret_key]), flush=True)
"""


@pytest.mark.slow  # starts the CLI
def test_racing_processes_generate_each_secret_exactly_once(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "shared-data")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, data_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        # Barrier: every process has imported everything before any of them loads settings.
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=30) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * len(procs), outputs
    seen = {out.strip() for out, _ in outputs}
    assert len(seen) == 1, seen
    on_disk = load_settings({"MCPGW_DATA_DIR": data_dir})
    assert json.loads(seen.pop()) == [
        on_disk.jwt_secret,
        on_disk.session_secret,
        on_disk.secret_key,
    ]


def test_an_unusable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(blocker / "data")})
    assert caught.value.problems[0].startswith("MCPGW_DATA_DIR")


# command line --------------------------------------------------------------------------------
@pytest.mark.slow  # starts the CLI
def test_serve_with_a_bad_value_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = _run(
        "serve",
        "--port",
        "0",
        MCPGW_DATA_DIR=str(tmp_path),
        MCPGW_RATE_LIMIT_RPS="abc",
        MCPGW_DATABASE_URL="mysql://u:hunter2@db/x",
    )
    assert result.returncode == 2
    assert "MCPGW_RATE_LIMIT_RPS" in result.stderr
    assert "MCPGW_DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow  # starts the CLI
def test_a_jwks_without_an_audience_refuses_to_start(tmp_path: Path) -> None:
    # An IdP signs every application's tokens with one JWKS: with no audience to check, a
    # token it issued for another application would open the settings API.
    env = {
        "MCPGW_DATA_DIR": str(tmp_path),
        "MCPGW_JWT_SECRET": SECRET,
        "MCPGW_JWT_JWKS_URL": "https://idp.example.com/jwks",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("MCPGW_JWT_AUDIENCE")
    assert load_settings({**env, "MCPGW_JWT_AUDIENCE": "gw"}).jwt_audience == "gw"

    result = _run("serve", "--port", "0", **env)
    assert result.returncode == 2
    assert "MCPGW_JWT_AUDIENCE" in result.stderr and "MCPGW_JWT_JWKS_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # starts the CLI
@pytest.mark.parametrize(
    "args", [["serve", "--port", "http"], ["serve", "--workers", "0"], ["token"], ["frobnicate"]]
)
def test_bad_arguments_exit_2_with_usage(tmp_path: Path, args: list[str]) -> None:
    result = _run(*args, MCPGW_DATA_DIR=str(tmp_path), MCPGW_JWT_SECRET=SECRET)
    assert result.returncode == 2
    assert "usage: mcp-gateway" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # starts the CLI
def test_workers_above_one_without_redis_refuses_to_start(tmp_path: Path) -> None:
    result = _run(
        "serve",
        "--workers",
        "2",
        "--port",
        "0",
        MCPGW_DATA_DIR=str(tmp_path),
        MCPGW_JWT_SECRET=SECRET,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr and "MCPGW_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # starts the CLI
async def test_token_is_accepted_with_the_data_dirs_generated_secret(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    result = _run("token", "--tenant", "acme", "--ttl", "600", MCPGW_DATA_DIR=data_dir)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2

    # What `serve` loads from the same data dir (no MCPGW_JWT_SECRET anywhere).
    settings = load_settings({"MCPGW_DATA_DIR": data_dir})
    principal = await JwtVerifier(secret=settings.jwt_secret).verify(token)
    assert principal.can_access("acme") and not principal.can_access("globex")
    assert principal.subject == "cli:acme"

    # Another data dir has another secret: the token means nothing there.
    other = load_settings({"MCPGW_DATA_DIR": str(tmp_path / "other")})
    with pytest.raises(TokenError):
        await JwtVerifier(secret=other.jwt_secret).verify(token)


@pytest.mark.slow  # starts the CLI
def test_token_options_are_honoured(tmp_path: Path) -> None:
    result = _run(
        "token",
        "--tenant",
        "*",
        "--ttl",
        "120",
        "--subject",
        "ops@example.com",
        MCPGW_DATA_DIR=str(tmp_path),
        MCPGW_JWT_SECRET=SECRET,
        MCPGW_JWT_AUDIENCE="gw",
        MCPGW_JWT_ISSUER="https://issuer.example",
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(
        result.stdout.strip(),
        SECRET,
        algorithms=["HS256"],
        audience="gw",
        issuer="https://issuer.example",
    )
    assert claims["tenants"] == ["*"] and claims["sub"] == "ops@example.com"
    assert 110 <= claims["exp"] - claims["iat"] <= 120


def _status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow  # starts the CLI
def test_serve_and_token_agree_on_the_generated_secret(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [CLI, "serve", "--port", str(port)],
            env=_cli_env(MCPGW_DATA_DIR=data_dir, MCPGW_LOG_LEVEL="WARNING"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        token = _run("token", "--tenant", "acme", MCPGW_DATA_DIR=data_dir).stdout.strip()
        stranger = _run(
            "token", "--tenant", "acme", MCPGW_DATA_DIR=str(tmp_path / "elsewhere")
        ).stdout.strip()
        url = f"http://127.0.0.1:{port}/v1/tenants/acme/integrations"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                status = _status(url, token)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)  # polling interval until the port is open, bounded above
        assert status == 200
        assert _status(url, stranger) == 401
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


# Redis modes ---------------------------------------------------------------------------------
SEEDS = "redis://10.0.0.1:7000,redis://10.0.0.2:7000, rediss://:pw@10.0.0.3:7000"


@pytest.mark.parametrize(
    ("env", "mode", "master"),
    [
        ({"MCPGW_REDIS_URL": "redis://cache:6379/0"}, "standalone", None),
        ({"MCPGW_REDIS_MODE": "cluster", "MCPGW_REDIS_URL": SEEDS}, "cluster", None),
        (
            {
                "MCPGW_REDIS_MODE": "Sentinel",
                "MCPGW_REDIS_URL": "redis://s1:26379,redis://s2:26379",
                "MCPGW_REDIS_SENTINEL_MASTER": "mymaster",
            },
            "sentinel",
            "mymaster",
        ),
    ],
)
def test_redis_modes_take_their_node_lists(
    tmp_path: Path, env: dict[str, str], mode: str, master: str | None
) -> None:
    settings = load_settings({"MCPGW_DATA_DIR": str(tmp_path), **env})
    assert (settings.redis_mode, settings.redis_sentinel_master) == (mode, master)
    assert settings.redis_url == env["MCPGW_REDIS_URL"]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MCPGW_REDIS_URL": SEEDS}, "MCPGW_REDIS_MODE=cluster or sentinel"),
        ({"MCPGW_REDIS_MODE": "replicated", "MCPGW_REDIS_URL": SEEDS}, "'standalone'"),
        ({"MCPGW_REDIS_MODE": "cluster"}, "must list the nodes"),
        ({"MCPGW_REDIS_MODE": "cluster", "MCPGW_REDIS_URL": "redis://a:1,http://b:2"}, "'http"),
        ({"MCPGW_REDIS_MODE": "cluster", "MCPGW_REDIS_URL": "redis://a:1,redis://b"}, "host:port"),
        ({"MCPGW_REDIS_MODE": "sentinel", "MCPGW_REDIS_URL": "redis://s:26379"}, "MASTER"),
    ],
)
def test_redis_mode_mistakes_are_named(tmp_path: Path, env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), **env})
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    assert problem.startswith(("MCPGW_REDIS_URL", "MCPGW_REDIS_MODE", "MCPGW_REDIS_SENTINEL"))
    assert says in problem and "pw" not in problem


@pytest.mark.slow  # starts the CLI
def test_a_seed_list_in_standalone_mode_is_a_config_error_at_start(tmp_path: Path) -> None:
    result = _run("serve", "--port", "0", MCPGW_DATA_DIR=str(tmp_path), MCPGW_REDIS_URL=SEEDS)
    assert result.returncode == 2, result.stderr
    assert "MCPGW_REDIS_MODE=cluster or sentinel" in result.stderr
    assert "Traceback" not in result.stderr and ":pw@" not in result.stderr
