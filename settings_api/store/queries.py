"""Every SQL statement the store runs, written once for both dialects.

Placeholders are Postgres-style ``$n``; the SQLite backend rewrites them to ``?n``.
``{lock}`` becomes ``FOR UPDATE`` on Postgres and nothing on SQLite, where a write
transaction (BEGIN IMMEDIATE) already excludes every other writer.
"""

PING = "SELECT 1"
# A background job that one replica at a time should run takes its lock in its transaction:
# Postgres has transaction-scoped advisory locks; on SQLite the write transaction (BEGIN
# IMMEDIATE) already excludes every other writer.
PG_JOB_LOCK = "SELECT pg_try_advisory_xact_lock($1) AS locked"
NO_JOB_LOCK = "SELECT $1 = $1 AS locked"

INTEGRATION_COLUMNS = "tenant_id, integration_id, name, created_at, modified_at"
GET_INTEGRATION = f"""
SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE tenant_id = $1 AND integration_id = $2 {{lock}}
"""
LIST_INTEGRATIONS = f"""
SELECT {INTEGRATION_COLUMNS} FROM integrations
WHERE tenant_id = $1 AND integration_id > $2 ORDER BY integration_id LIMIT $3
"""
INSERT_INTEGRATION = """
INSERT INTO integrations (tenant_id, integration_id, name, created_at, modified_at)
VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant_id, integration_id) DO NOTHING
"""
RENAME_INTEGRATION = """
UPDATE integrations SET name = $3, modified_at = $4 WHERE tenant_id = $1 AND integration_id = $2
"""
DELETE_INTEGRATION = "DELETE FROM integrations WHERE tenant_id = $1 AND integration_id = $2"

CONFIG_COLUMNS = (
    "config_id, tenant_id, integration_id, upstream_url, upstream_headers, tools, "
    "created_at, synced_at, upstream_url_sealed"
)
INSERT_CONFIG = f"""
INSERT INTO configs ({CONFIG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
GET_CONFIG = f"""
SELECT {CONFIG_COLUMNS} FROM configs
WHERE tenant_id = $1 AND integration_id = $2 AND config_id = $3
"""
LIST_CONFIGS = f"""
SELECT {CONFIG_COLUMNS} FROM configs
WHERE tenant_id = $1 AND integration_id = $2 AND config_id > $3 ORDER BY config_id LIMIT $4
"""
UPDATE_CONFIG_TOOLS = """
UPDATE configs SET tools = $4, synced_at = $5
WHERE tenant_id = $1 AND integration_id = $2 AND config_id = $3
"""
# Secret rotation walks every tenant's configs in id order, a locked batch at a time.
LOCK_CONFIG_HEADERS = """
SELECT config_id, upstream_headers, upstream_url, upstream_url_sealed FROM configs
WHERE config_id > $1 ORDER BY config_id LIMIT $2
{lock}
"""
UPDATE_CONFIG_HEADERS = "UPDATE configs SET upstream_headers = $2 WHERE config_id = $1"
UPDATE_CONFIG_URL = """
UPDATE configs SET upstream_url = $2, upstream_url_sealed = $3 WHERE config_id = $1
"""

# Audit events recorded before URL credentials were redacted: rotate-secrets redacts them too.
LOCK_CONFIG_AUDIT = """
SELECT seq, details FROM audit_events WHERE action = 'config.created' AND seq > $1
ORDER BY seq LIMIT $2 {lock}
"""
UPDATE_AUDIT_DETAILS = "UPDATE audit_events SET details = $2 WHERE seq = $1"

SETTINGS_SELECT = """
SELECT s.tenant_id, s.integration_id, s.enabled, s.config_id, s.exposed_tool_ids, s.description,
       s.api_key_id, k.key_prefix, s.created_at, s.modified_at, s.fixtures_version
FROM mcp_settings s LEFT JOIN api_keys k ON k.key_id = s.api_key_id
WHERE s.tenant_id = $1 AND s.integration_id = $2
"""
# Row lock on the settings row alone: it serializes every enable/rotate of one integration.
LOCK_SETTINGS = """
SELECT api_key_id FROM mcp_settings WHERE tenant_id = $1 AND integration_id = $2 {lock}
"""
INSERT_SETTINGS = """
INSERT INTO mcp_settings (tenant_id, integration_id, enabled, config_id, exposed_tool_ids,
                          description, api_key_id, created_at, modified_at)
VALUES ($1, $2, FALSE, NULL, '[]', NULL, NULL, $3, $3)
"""
UPDATE_SETTINGS = """
UPDATE mcp_settings SET enabled = $3, config_id = $4, exposed_tool_ids = $5, description = $6,
                        api_key_id = $7, modified_at = $8
WHERE tenant_id = $1 AND integration_id = $2
"""

KEY_COLUMNS = (
    "key_id, key_hash, key_prefix, tenant_id, integration_id, scope, created_at, revoked_at"
)
INSERT_KEY = f"""
INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
"""
REVOKE_LIVE_KEYS = """
UPDATE api_keys SET revoked_at = $3
WHERE tenant_id = $1 AND integration_id = $2 AND revoked_at IS NULL
"""
GET_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
# lastUsedAt only moves forward, whichever replica reports first.
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = $2
WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)
"""
LIVE_KEYS = f"""
SELECT {KEY_COLUMNS} FROM api_keys
WHERE tenant_id = $1 AND integration_id = $2 AND revoked_at IS NULL
"""

INSERT_AUDIT = """
INSERT INTO audit_events (event_id, tenant_id, actor, action, target, at, details)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
LIST_AUDIT = """
SELECT seq, event_id, tenant_id, actor, action, target, at, details FROM audit_events
WHERE tenant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
"""

FIXTURE_COLUMNS = "tenant_id, integration_id, tool_id, rules, created_at, modified_at"
GET_FIXTURE = f"""
SELECT {FIXTURE_COLUMNS} FROM simulator_fixtures
WHERE tenant_id = $1 AND integration_id = $2 AND tool_id = $3
"""
LIST_FIXTURES = f"""
SELECT {FIXTURE_COLUMNS} FROM simulator_fixtures
WHERE tenant_id = $1 AND integration_id = $2 ORDER BY tool_id
"""
UPSERT_FIXTURE = """
INSERT INTO simulator_fixtures (tenant_id, integration_id, tool_id, rules, created_at, modified_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (tenant_id, integration_id, tool_id)
DO UPDATE SET rules = excluded.rules, modified_at = excluded.modified_at
"""
DELETE_FIXTURE = """
DELETE FROM simulator_fixtures WHERE tenant_id = $1 AND integration_id = $2 AND tool_id = $3
"""
BUMP_FIXTURES_VERSION = """
UPDATE mcp_settings SET fixtures_version = fixtures_version + 1
WHERE tenant_id = $1 AND integration_id = $2
"""

# The tool-call log: newest first, keyset-paginated on (at, id); `$4`/`$5` are the cursor
# (the first page passes a cursor past every row), `$6`/`$7` the optional filters.
CALL_COLUMNS = (
    "tenant_id, integration_id, at, url, api_key_id, tool, outcome, duration_ms, request_id, "
    "run_id, arguments_sha256, arguments"
)
INSERT_CALL = f"""
INSERT INTO tool_calls ({CALL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
LIST_CALLS = f"""
SELECT id, {CALL_COLUMNS} FROM tool_calls
WHERE tenant_id = $1 AND integration_id = $2 AND (at, id) < ($4, $5)
  AND (CAST($6 AS text) IS NULL OR url = $6) AND (CAST($7 AS text) IS NULL OR run_id = $7)
ORDER BY at DESC, id DESC LIMIT $3
"""
# A bounded chunk per statement, so no delete holds its locks for long.
DELETE_OLD_CALLS = """
DELETE FROM tool_calls WHERE id IN (SELECT id FROM tool_calls WHERE at < $1 LIMIT $2)
"""
