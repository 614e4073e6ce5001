-- Several keys per integration (docs/settings-api.md, "API keys"): each with a label, an
-- optional expiry and an optional narrowing to some of the exposed tools (a JSON array of tool
-- names; NULL: every exposed tool). The label `default` is reserved for the integration's own
-- key (minted on enable, replaced by mcp:rotateKey); the keys that existed are that key.
-- `revoked_at` may lie in the future: a rotation's grace period, when the old key stops.
ALTER TABLE api_keys ADD COLUMN label text NOT NULL DEFAULT 'default';
ALTER TABLE api_keys ADD COLUMN expires_at bigint;
ALTER TABLE api_keys ADD COLUMN tool_ids text;

-- One unrevoked default key per integration (the other keys are as many as the tenant made).
DROP INDEX api_keys_one_live;
CREATE UNIQUE INDEX api_keys_one_default ON api_keys (tenant_id, integration_id)
    WHERE revoked_at IS NULL AND label = 'default';
CREATE INDEX api_keys_by_integration ON api_keys (tenant_id, integration_id, created_at);
