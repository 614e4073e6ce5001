"""`mcp-gateway rotate-secrets`: re-encrypt every stored config's upstream header values and URL
credentials with the first key of ``MCPGW_SECRET_KEY`` (docs/configuration.md, "Rotating
MCPGW_SECRET_KEY"); those stored in clear before get encrypted, and audit events that recorded
a URL's credentials in clear get them redacted."""

from __future__ import annotations

import asyncio
import sys

from settings_api.config import Settings
from settings_api.secrets_box import SecretBox
from settings_api.store import RotationReport, StoreError, create_store

_SHOWN_IDS = 20


async def rotate_stored_secrets(settings: Settings) -> RotationReport:
    """Apply pending migrations, then re-encrypt in batches, one transaction each."""
    store = create_store(
        settings.database_url,
        timeout_s=settings.store_timeout_s,
        secrets=SecretBox.from_setting(settings.secret_key),
    )
    await store.open()
    try:
        await store.migrate()
        return await store.rotate_secrets()
    finally:
        await store.close()


def run(settings: Settings) -> int:
    """The command: prints what it did; exit status 1 when a config could not be decrypted."""
    try:
        report = asyncio.run(rotate_stored_secrets(settings))
    except StoreError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1
    rewritten = report.rotated + report.encrypted
    print(
        f"re-encrypted {rewritten} config(s) with the first key of MCPGW_SECRET_KEY "
        f"({report.rotated} from an older key, {report.encrypted} stored in plaintext before); "
        f"{report.current} already current"
    )
    if report.audit_redacted:
        print(
            f"redacted the upstream URL credentials of {report.audit_redacted} audit event(s) "
            "recorded before"
        )
    if report.unreadable:
        shown = ", ".join(report.unreadable[:_SHOWN_IDS])
        more = len(report.unreadable) - _SHOWN_IDS
        print(
            f"mcp-gateway: {len(report.unreadable)} config(s) cannot be decrypted with any key "
            f"of MCPGW_SECRET_KEY and were left as they are: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
            + ". Add the key they were encrypted with to MCPGW_SECRET_KEY and run again, or "
            "have their tenants create new configs.",
            file=sys.stderr,
        )
        return 1
    return 0
