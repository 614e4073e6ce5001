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
# The default key was deleted: the settings name none until the next one is minted.
UNBIND_KEY = """
UPDATE mcp_settings SET api_key_id = NULL WHERE tenant_id = $1 AND integration_id = $2
"""

KEY_COLUMNS = (
    "key_id, key_hash, key_prefix, tenant_id, integration_id, scope, created_at, revoked_at, "
    "label, expires_at, tool_ids, last_used_at"
)
INSERT_KEY = """
INSERT INTO api_keys (key_id, key_hash, key_prefix, tenant_id, integration_id, scope,
                      created_at, revoked_at, label, expires_at, tool_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10)
"""
# A key "not ended" has no revocation, or one still ahead (a rotation's grace period).
_NOT_ENDED = "(revoked_at IS NULL OR revoked_at > $3)"
# Every key of the integration that has not ended stops at $3 (deleting the integration).
REVOKE_LIVE_KEYS = f"""
UPDATE api_keys SET revoked_at = $3
WHERE tenant_id = $1 AND integration_id = $2 AND {_NOT_ENDED}
"""
# Rotation: the default keys stop at $3 (now, or the end of a grace period; a grace already
# running is cut short, never lengthened).
END_DEFAULT_KEYS = f"""
UPDATE api_keys SET revoked_at = $3
WHERE tenant_id = $1 AND integration_id = $2 AND label = 'default' AND {_NOT_ENDED}
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = $4
WHERE tenant_id = $1 AND integration_id = $2 AND key_id = $3
  AND (revoked_at IS NULL OR revoked_at > $4)
"""
GET_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
# lastUsedAt only moves forward, whichever replica reports first.
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = $2
WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)
"""
# The keys not ended at $3 (expired ones included: they are listed until deleted).
LIVE_KEYS = f"""
SELECT {KEY_COLUMNS} FROM api_keys
WHERE tenant_id = $1 AND integration_id = $2 AND {_NOT_ENDED}
ORDER BY created_at, key_id
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

# OAuth (settings_api/oauth/grants.py)
UPSERT_OAUTH_CLIENT = """
INSERT INTO oauth_clients (client_id, kind, client_name, redirect_uris, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (client_id)
DO UPDATE SET client_name = excluded.client_name, redirect_uris = excluded.redirect_uris
"""
GET_OAUTH_CLIENT = """
SELECT client_id, kind, client_name, redirect_uris, created_at FROM oauth_clients
WHERE client_id = $1
"""
INSERT_OAUTH_CODE = """
INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, code_challenge, key_id, tenant_id,
                         integration_id, resource, family_id, created_at, expires_at, used_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)
"""
GET_OAUTH_CODE = """
SELECT code_hash, client_id, redirect_uri, code_challenge, key_id, tenant_id, integration_id,
       resource, family_id, created_at, expires_at, used_at
FROM oauth_codes WHERE code_hash = $1
"""
# Single use even under concurrent exchanges: only the first UPDATE finds used_at NULL.
USE_OAUTH_CODE = "UPDATE oauth_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL"
DELETE_EXPIRED_OAUTH_CODES = "DELETE FROM oauth_codes WHERE expires_at < $1"
# Registered clients that never got a code or a token by $1 are dropped, $2 at a time: the
# registration endpoint is open, so what it stores must not pile up.
DELETE_IDLE_OAUTH_CLIENTS = """
DELETE FROM oauth_clients WHERE client_id IN (
    SELECT c.client_id FROM oauth_clients c
    WHERE c.kind = 'registered' AND c.created_at < $1
      AND NOT EXISTS (SELECT 1 FROM oauth_codes o WHERE o.client_id = c.client_id)
      AND NOT EXISTS (SELECT 1 FROM oauth_tokens t WHERE t.client_id = c.client_id)
    LIMIT $2
)
"""
# Tokens expired before $1 are of no use any more (a refresh token's replay included).
DELETE_EXPIRED_OAUTH_TOKENS = """
DELETE FROM oauth_tokens WHERE token_hash IN (
    SELECT token_hash FROM oauth_tokens WHERE expires_at < $1 LIMIT $2
)
"""
INSERT_OAUTH_TOKEN = """
INSERT INTO oauth_tokens (token_hash, kind, family_id, client_id, key_id, tenant_id,
                          integration_id, resource, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
GET_OAUTH_TOKEN = """
SELECT t.token_hash, t.kind, t.family_id, t.client_id, t.key_id, t.tenant_id, t.integration_id,
       t.resource, t.created_at, t.expires_at, t.revoked_at, t.used_at,
       (k.key_id IS NULL OR COALESCE(k.revoked_at <= $2, FALSE)
        OR COALESCE(k.expires_at <= $2, FALSE)) AS key_revoked
FROM oauth_tokens t LEFT JOIN api_keys k ON k.key_id = t.key_id
WHERE t.token_hash = $1
"""
# `revoked` as of $2; the key's end (maybe still ahead) is returned for the data plane to check
# on every request.
GET_ACCESS_TOKEN = """
SELECT t.token_hash, t.key_id, t.tenant_id, t.integration_id, k.scope, t.resource, t.expires_at,
       (t.revoked_at IS NOT NULL OR COALESCE(k.revoked_at <= $2, FALSE)
        OR COALESCE(k.expires_at <= $2, FALSE)) AS revoked,
       k.revoked_at AS key_revoked_at, k.expires_at AS key_expires_at, k.tool_ids AS key_tool_ids
FROM oauth_tokens t JOIN api_keys k ON k.key_id = t.key_id
WHERE t.token_hash = $1 AND t.kind = 'access'
"""
USE_REFRESH_TOKEN = """
UPDATE oauth_tokens SET used_at = $2, last_used_at = $2
WHERE token_hash = $1 AND kind = 'refresh' AND used_at IS NULL AND revoked_at IS NULL
"""
REVOKE_OAUTH_TOKEN = """
UPDATE oauth_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL
"""
REVOKE_OAUTH_FAMILY = """
UPDATE oauth_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL
"""
REVOKE_OAUTH_CLIENT_TOKENS = """
UPDATE oauth_tokens SET revoked_at = $4
WHERE tenant_id = $1 AND integration_id = $2 AND client_id = $3 AND revoked_at IS NULL
"""
TOUCH_OAUTH_TOKEN = """
UPDATE oauth_tokens SET last_used_at = $2
WHERE token_hash = $1 AND (last_used_at IS NULL OR last_used_at < $2)
"""
# A client holds the integration while one of its tokens is live: unrevoked, unexpired, not a
# spent refresh token, and approved by a key that still stands. First and last use span its
# unrevoked tokens (spent refresh tokens included).
LIST_OAUTH_CLIENT_USES = """
SELECT t.client_id, c.client_name, c.redirect_uris, MIN(t.created_at) AS first_used_at,
       MAX(COALESCE(t.last_used_at, t.created_at)) AS last_used_at
FROM oauth_tokens t
JOIN api_keys k ON k.key_id = t.key_id AND (k.revoked_at IS NULL OR k.revoked_at > $3)
                 AND (k.expires_at IS NULL OR k.expires_at > $3)
LEFT JOIN oauth_clients c ON c.client_id = t.client_id
WHERE t.tenant_id = $1 AND t.integration_id = $2 AND t.revoked_at IS NULL AND t.client_id > $4
GROUP BY t.client_id, c.client_name, c.redirect_uris
HAVING SUM(CASE WHEN t.expires_at > $3 AND (t.kind = 'access' OR t.used_at IS NULL)
                THEN 1 ELSE 0 END) > 0
ORDER BY t.client_id
LIMIT $5
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
