"""Service configuration from ``MCPGW_*`` environment variables (docs/configuration.md).

Every value is validated once at start; all bad values are reported together, each with the
variable's name, so an operator fixes them in one go.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from settings_api.egress import Network, parse_networks
from settings_api.secrets_box import SecretKeyError, parse_keys

DEFAULT_DATA_DIR = "~/.local/share/mcp-gateway"
FAILURE_MODES = ("open", "closed")
REDIS_MODES = ("standalone", "cluster", "sentinel")
LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """One or more configuration values are invalid; `problems` lists each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration shared by both planes."""

    data_dir: Path
    database_url: str
    redis_url: str | None
    public_url: str
    jwt_secret: str
    jwt_jwks_url: str | None
    jwt_audience: str | None
    jwt_issuer: str | None
    session_secret: str
    secret_key: str
    rate_limit_rps: float = 10.0
    rate_limit_burst: int = 20
    request_limit_rps: float = 50.0
    request_limit_burst: int = 100
    rate_limit_failure_mode: str = "open"
    upstream_timeout_s: float = 30.0
    # Upstream calls in flight at once per integration (callUrl) and per tenant (catalog
    # reads); more are refused at once, so a slow upstream only holds up its own tenant.
    upstream_max_inflight: int = 32
    store_timeout_s: float = 5.0
    # Postgres connections per process (asyncpg pool max_size); see docs/operations.md.
    db_pool_size: int = 10
    # SIGTERM: /readyz answers 503 this long before the listener closes (0 = at once).
    shutdown_grace_s: float = 2.0
    max_body_bytes: int = 1_048_576
    # An MCP POST's body must have arrived this long after its handler started reading it
    # (408 otherwise): a body announced and never sent must not hold a connection forever.
    body_timeout_s: float = 15.0
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    log_level: str = "INFO"
    # "json" | "text"; None: the command's own default (json for `serve`, text otherwise).
    log_format: str | None = None
    # Take the client address from X-Forwarded-For (its last entry) instead of the peer.
    trust_forwarded: bool = False
    # Failed-auth throttling per client address: this many bad keys per window (0 = off).
    auth_failure_limit: int = 20
    auth_failure_window_s: float = 10.0
    # The settings API's token bucket per JWT identity (issuer, subject, tenant grant).
    settings_rate_limit_rps: float = 20.0
    settings_rate_limit_burst: int = 40
    # Refused upstream ranges the operator opens (settings_api/egress.py); () = the default policy.
    upstream_allowed_networks: tuple[Network, ...] = ()
    # The largest CallToolResult the testUrl simulator writes (UTF-8 JSON bytes).
    simulator_max_result_bytes: int = 1_048_576
    # OAuth for MCP clients: access token, refresh token and authorization code lifetimes.
    oauth_access_token_ttl_s: int = 3600
    oauth_refresh_token_ttl_s: int = 30 * 86400
    oauth_code_ttl_s: int = 60
    # Days the tool-call log keeps a call before the periodic delete removes it.
    call_log_retention_days: int = 7
    # How `redis_url` is read: one server, a cluster's seed nodes, or sentinels
    # (gateway/redis_clients.py builds the clients).
    redis_mode: str = "standalone"
    redis_sentinel_master: str | None = None

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some values replaced (tests and CLI flags)."""
        return replace(self, **changes)  # type: ignore[arg-type]


class _Reader:
    """Reads typed values from the environment, collecting every problem instead of stopping."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def number(
        self,
        name: str,
        default: float,
        *,
        integer: bool = False,
        minimum: float = 0.0,
        exclusive: bool = True,
    ) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "an integer" if integer else "a number"
            self.problems.append(f"{name}={raw!r}: must be {kind}")
            return default
        if value != value or value in (float("inf"), float("-inf")):
            self.problems.append(f"{name}={raw!r}: must be finite")
            return default
        if (value <= minimum) if exclusive else (value < minimum):
            bound = "greater than" if exclusive else "at least"
            self.problems.append(f"{name}={raw!r}: must be {bound} {minimum:g}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        value = _BOOLEANS.get(raw.lower())
        if value is None:
            self.problems.append(f"{name}={raw!r}: must be true or false")
            return default
        return value

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "sqlite"):
            self.problems.append(f"{name}={_redact(raw)!r}: must be a {'/'.join(schemes)} URL")
            return None
        return raw


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
_SCHEME_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/*")


def _redact(url: str) -> str:
    # Database and Redis URLs may carry passwords; never echo them back, not even from a
    # malformed URL (`postgresql:/user:pw@host`) that urlsplit cannot take apart.
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    match = _SCHEME_PREFIX.match(head)
    prefix = match.group(0) if match else ""
    user, colon, _ = head[len(prefix) :].partition(":")
    return f"{prefix}{user}:***@{tail}" if colon else f"{prefix}***@{tail}"


def redis_nodes(redis_url: str) -> list[str]:
    """The URLs of a comma-separated `MCPGW_REDIS_URL` (cluster seeds, sentinels)."""
    return [part.strip() for part in redis_url.split(",") if part.strip()]


def _redis_url(r: _Reader, mode: str) -> str | None:
    """`MCPGW_REDIS_URL` checked against `MCPGW_REDIS_MODE`: one URL for a standalone server,
    a list of `redis://host:port` nodes for a cluster's seeds or the sentinels."""
    name = "MCPGW_REDIS_URL"
    if mode not in REDIS_MODES:
        r.problems.append(
            f"MCPGW_REDIS_MODE={mode!r}: must be 'standalone', 'cluster' or 'sentinel'"
        )
        return None
    raw = r.text(name)
    master = r.text("MCPGW_REDIS_SENTINEL_MASTER")
    if mode == "sentinel" and master is None:
        r.problems.append(
            "MCPGW_REDIS_SENTINEL_MASTER: must be set when MCPGW_REDIS_MODE=sentinel (the "
            "name of the master set the sentinels monitor)"
        )
    if raw is None:
        if mode != "standalone":
            r.problems.append(f"{name}: must list the nodes when MCPGW_REDIS_MODE={mode}")
        return None
    if mode == "standalone":
        if "," in raw:
            r.problems.append(
                f"{name}: a list of nodes needs MCPGW_REDIS_MODE=cluster or sentinel "
                "(standalone takes one URL)"
            )
            return None
        return r.url(name, ("redis", "rediss", "unix"))
    nodes = redis_nodes(raw)
    for node in nodes:
        parts = urlsplit(node)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or port is None:
            r.problems.append(
                f"{name}: {_redact(node)!r} is not a redis://host:port or rediss://host:port "
                f"node (MCPGW_REDIS_MODE={mode})"
            )
            return None
    if not nodes:
        r.problems.append(f"{name}: must list the nodes when MCPGW_REDIS_MODE={mode}")
        return None
    return raw


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, as browsers send it in `Origin`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def load_secret(data_dir: Path, name: str) -> str:
    """Read a secret from the data dir, generating it exactly once even when processes race."""
    directory = data_dir / "secrets"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    if not path.exists():
        # Write to a private temp file, then hard-link it into place: link() fails if another
        # process won the race, and nobody ever reads a half-written secret.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    value = path.read_text().strip()
    if not value:
        raise ConfigError([f"secret file {path} is empty"])
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validated `Settings` from the environment; `ConfigError` lists every bad value."""
    env = os.environ if env is None else env
    r = _Reader(env)
    data_dir = Path(r.text("MCPGW_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    database_url = r.url("MCPGW_DATABASE_URL", ("postgresql", "postgres", "sqlite"))
    redis_mode = (r.text("MCPGW_REDIS_MODE") or "standalone").lower()
    redis_url = _redis_url(r, redis_mode)
    public_url = r.url("MCPGW_PUBLIC_URL", ("http", "https")) or "http://127.0.0.1:8080"
    public_url = public_url.rstrip("/")
    jwks_url = r.url("MCPGW_JWT_JWKS_URL", ("http", "https"))
    if jwks_url is not None and r.text("MCPGW_JWT_AUDIENCE") is None:
        # An IdP signs the tokens of all its applications with the keys of one JWKS: without
        # an audience, a token issued for another application would open the settings API.
        r.problems.append(
            "MCPGW_JWT_AUDIENCE: must be set when MCPGW_JWT_JWKS_URL is (the "
            "audience the identity provider puts in this gateway's tokens)"
        )
    mode = (r.text("MCPGW_RATE_LIMIT_FAILURE_MODE") or "open").lower()
    if mode not in FAILURE_MODES:
        r.problems.append(f"MCPGW_RATE_LIMIT_FAILURE_MODE={mode!r}: must be 'open' or 'closed'")
    level = (r.text("MCPGW_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        r.problems.append(f"MCPGW_LOG_LEVEL={level!r}: must be DEBUG, INFO, WARNING or ERROR")
    log_format = r.text("MCPGW_LOG_FORMAT")
    if log_format is not None:
        log_format = log_format.lower()
        if log_format not in LOG_FORMATS:
            r.problems.append(f"MCPGW_LOG_FORMAT={log_format!r}: must be 'json' or 'text'")
            log_format = None
    origins_raw = r.text("MCPGW_ALLOWED_ORIGINS")
    origins = (
        frozenset(o.strip().rstrip("/") for o in origins_raw.split(",") if o.strip())
        if origins_raw
        else frozenset({origin_of(public_url)})
    )
    for origin in origins:
        if origin != "*" and urlsplit(origin).scheme not in ("http", "https"):
            r.problems.append(f"MCPGW_ALLOWED_ORIGINS: {origin!r} is not an http(s) origin")

    values = {
        "rate_limit_rps": r.number("MCPGW_RATE_LIMIT_RPS", 10.0),
        "rate_limit_burst": int(r.number("MCPGW_RATE_LIMIT_BURST", 20, integer=True)),
        "request_limit_rps": r.number("MCPGW_REQUEST_LIMIT_RPS", 50.0),
        "request_limit_burst": int(r.number("MCPGW_REQUEST_LIMIT_BURST", 100, integer=True)),
        "upstream_timeout_s": r.number("MCPGW_UPSTREAM_TIMEOUT_S", 30.0),
        "upstream_max_inflight": int(
            r.number("MCPGW_UPSTREAM_MAX_INFLIGHT", 32, integer=True, minimum=1, exclusive=False)
        ),
        "store_timeout_s": r.number("MCPGW_STORE_TIMEOUT_S", 5.0),
        "db_pool_size": int(
            r.number("MCPGW_DB_POOL_SIZE", 10, integer=True, minimum=1, exclusive=False)
        ),
        "shutdown_grace_s": r.number("MCPGW_SHUTDOWN_GRACE_S", 2.0, exclusive=False),
        "max_body_bytes": int(r.number("MCPGW_MAX_BODY_BYTES", 1_048_576, integer=True)),
        "body_timeout_s": r.number("MCPGW_BODY_TIMEOUT_S", 15.0),
        "auth_failure_limit": int(
            r.number("MCPGW_AUTH_FAILURE_LIMIT", 20, integer=True, exclusive=False)
        ),
        "auth_failure_window_s": r.number("MCPGW_AUTH_FAILURE_WINDOW_S", 10.0),
        "trust_forwarded": r.flag("MCPGW_TRUST_FORWARDED", False),
        "settings_rate_limit_rps": r.number("MCPGW_SETTINGS_RATE_LIMIT_RPS", 20.0),
        "settings_rate_limit_burst": int(
            r.number("MCPGW_SETTINGS_RATE_LIMIT_BURST", 40, integer=True)
        ),
        "oauth_access_token_ttl_s": int(
            r.number(
                "MCPGW_OAUTH_ACCESS_TOKEN_TTL_S", 3600, integer=True, minimum=1, exclusive=False
            )
        ),
        "oauth_refresh_token_ttl_s": int(
            r.number(
                "MCPGW_OAUTH_REFRESH_TOKEN_TTL_S",
                30 * 86400,
                integer=True,
                minimum=1,
                exclusive=False,
            )
        ),
        "oauth_code_ttl_s": int(
            r.number("MCPGW_OAUTH_CODE_TTL_S", 60, integer=True, minimum=1, exclusive=False)
        ),
        "call_log_retention_days": int(
            r.number("MCPGW_CALL_LOG_RETENTION_DAYS", 7, integer=True, minimum=1, exclusive=False)
        ),
        "simulator_max_result_bytes": int(
            r.number(
                "MCPGW_SIMULATOR_MAX_RESULT_BYTES",
                1_048_576,
                integer=True,
                minimum=1024,
                exclusive=False,
            )
        ),
    }
    allowed_networks: tuple[Network, ...] = ()
    try:
        allowed_networks = parse_networks(r.text("MCPGW_UPSTREAM_ALLOWED_NETWORKS") or "")
    except ValueError as exc:
        r.problems.append(f"MCPGW_UPSTREAM_ALLOWED_NETWORKS: {exc}")
    explicit_jwt_secret = r.text("MCPGW_JWT_SECRET")
    if explicit_jwt_secret is not None and len(explicit_jwt_secret) < 32:
        r.problems.append("MCPGW_JWT_SECRET: must be at least 32 characters (HS256, 256 bits)")
    explicit_secret_key = r.text("MCPGW_SECRET_KEY")
    if explicit_secret_key is not None:
        try:
            parse_keys(explicit_secret_key)  # comma-separated: the first encrypts, all decrypt
        except SecretKeyError as exc:
            r.problems.append(f"MCPGW_SECRET_KEY: {exc}")
    if r.problems:
        raise ConfigError(r.problems)

    try:
        jwt_secret = r.text("MCPGW_JWT_SECRET") or load_secret(data_dir, "jwt_secret")
        session_secret = r.text("MCPGW_SESSION_SECRET") or load_secret(data_dir, "session_secret")
        secret_key = r.text("MCPGW_SECRET_KEY") or load_secret(data_dir, "secret_key")
    except OSError as exc:
        problem = f"MCPGW_DATA_DIR={str(data_dir)!r}: cannot be used ({exc.strerror})"
        raise ConfigError([problem]) from exc
    if len(jwt_secret) < 32:
        raise ConfigError(["MCPGW_JWT_SECRET: must be at least 32 characters (HS256, 256 bits)"])

    return Settings(
        data_dir=data_dir,
        database_url=database_url or f"sqlite:///{data_dir / 'mcp-gateway.db'}",
        redis_url=redis_url,
        public_url=public_url,
        jwt_secret=jwt_secret,
        jwt_jwks_url=jwks_url,
        jwt_audience=r.text("MCPGW_JWT_AUDIENCE"),
        jwt_issuer=r.text("MCPGW_JWT_ISSUER"),
        session_secret=session_secret,
        secret_key=secret_key,
        rate_limit_failure_mode=mode,
        allowed_origins=origins,
        log_level=level,
        log_format=log_format,
        upstream_allowed_networks=allowed_networks,
        redis_mode=redis_mode,
        redis_sentinel_master=r.text("MCPGW_REDIS_SENTINEL_MASTER"),
        **values,  # type: ignore[arg-type]
    )
