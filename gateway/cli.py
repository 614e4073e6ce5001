"""`mcp-gateway` command line: serve, token, migrate, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway.observability.logs import configure_logging
from gateway.server import (
    ROLES,
    build_app,
    drain_on_signals,
    tune_collector,
    use_fast_event_loop,
)
from mcp_core.version import __version__
from settings_api.config import ConfigError, Settings, load_settings
from settings_api.jwt_auth import issue_token
from settings_api.store import StoreError, apply_migrations

log = logging.getLogger("mcp_gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-gateway",
        description="Expose each integration of a tenant as a remote MCP server.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8080)
    serve.add_argument("--workers", type=_positive, default=1)
    serve.add_argument("--role", choices=ROLES, default="all")

    token = commands.add_parser("token", help="print a settings-API JWT (HS256)")
    token.add_argument("--tenant", required=True, help="tenant id, or '*' for every tenant")
    token.add_argument("--ttl", type=_positive, default=3600, help="lifetime in seconds")
    token.add_argument("--subject", help="the token's sub claim (the audit actor)")

    commands.add_parser("migrate", help="apply database migrations and exit")
    commands.add_parser(
        "rotate-secrets",
        help="re-encrypt stored upstream header values with the first key of MCPGW_SECRET_KEY",
    )

    demo = commands.add_parser(
        "demo",
        help="run a demo tenant, integration and example "
        "upstream on the embedded store; print a key",
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=_port, default=8080)
    demo.add_argument(
        "--upstream-port",
        type=_port,
        default=0,
        help="port of the example upstream MCP server (0: a free one)",
    )
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return int(text)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers > 1:
        if settings.redis_url is None:
            print(
                "mcp-gateway: --workers > 1 needs MCPGW_REDIS_URL (rate limits and cache "
                "invalidation must be shared between processes)",
                file=sys.stderr,
            )
            return 2
        from gateway.workers import run_workers

        return run_workers(
            settings, host=args.host, port=args.port, role=args.role, workers=args.workers
        )
    app = build_app(settings, args.role)
    # SIGTERM: /readyz 503 first, the listener closes after the grace, in-flight requests
    # then get shutdown_timeout to finish.
    drain_on_signals(app, settings.shutdown_grace_s)

    async def announce(_: web.Application) -> None:
        # After the contexts opened the store: the line means the service is really up.
        log.info(
            "mcp-gateway %s serving role=%s on http://%s:%d (store: %s)",
            __version__,
            args.role,
            args.host,
            args.port,
            "postgres" if settings.uses_postgres else "sqlite",
        )

    app.on_startup.append(announce)
    app.on_startup.append(tune_collector)
    use_fast_event_loop()
    # handler_cancellation: a client that hangs up stops its request's work (upstream calls
    # included) instead of leaving it running; transactions roll back on cancellation.
    # access_log=None: the request middleware writes one JSON line per request instead.
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=10,
        handler_cancellation=True,
        access_log=None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mcp-gateway` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    # JSON lines for the service (log shippers), text for the commands people run by hand.
    configure_logging(
        settings.log_level, settings.log_format or ("json" if args.command == "serve" else "text")
    )
    if args.command == "token":
        print(
            issue_token(
                settings.jwt_secret,
                args.tenant,
                ttl_s=args.ttl,
                subject=args.subject,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
            )
        )
        return 0
    if args.command == "demo":
        from gateway.demo import run_demo

        return run_demo(args.host, args.port, args.upstream_port)
    if args.command == "rotate-secrets":
        from settings_api.rotation import run as rotate_secrets

        return rotate_secrets(settings)
    if args.command == "migrate":
        try:
            applied = asyncio.run(
                apply_migrations(settings.database_url, timeout_s=settings.store_timeout_s)
            )
        except StoreError as exc:
            print(f"mcp-gateway: {exc}", file=sys.stderr)
            return 1
        print(f"applied migrations: {applied}" if applied else "database is up to date")
        return 0
    try:
        return _serve(settings, args)
    except StoreError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
