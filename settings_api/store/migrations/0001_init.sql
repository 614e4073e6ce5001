-- Integrations, their upstream configs, MCP settings, API keys and the audit trail.
-- One file for both dialects: words between @ signs are spelled per dialect (store/base.py).
CREATE TABLE integrations (
    tenant_id      text   NOT NULL,
    integration_id text   NOT NULL,
    name           text   NOT NULL,
    created_at     bigint NOT NULL,
    modified_at    bigint NOT NULL,
    PRIMARY KEY (tenant_id, integration_id)
);

CREATE TABLE configs (
    config_id        text   PRIMARY KEY,
    tenant_id        text   NOT NULL,
    integration_id   text   NOT NULL,
    upstream_url     text,
    upstream_headers text   NOT NULL,
    tools            text   NOT NULL,
    created_at       bigint NOT NULL,
    synced_at        bigint,
    FOREIGN KEY (tenant_id, integration_id)
        REFERENCES integrations (tenant_id, integration_id) ON DELETE CASCADE
);
CREATE INDEX configs_by_integration ON configs (tenant_id, integration_id, config_id);

CREATE TABLE mcp_settings (
    tenant_id        text    NOT NULL,
    integration_id   text    NOT NULL,
    enabled          boolean NOT NULL,
    config_id        text,
    exposed_tool_ids text    NOT NULL,
    description      text,
    api_key_id       text,
    created_at       bigint  NOT NULL,
    modified_at      bigint  NOT NULL,
    PRIMARY KEY (tenant_id, integration_id),
    FOREIGN KEY (tenant_id, integration_id)
        REFERENCES integrations (tenant_id, integration_id) ON DELETE CASCADE
);

-- Keys outlive their integration (revoked) so the audit trail can name them.
CREATE TABLE api_keys (
    key_id         text   PRIMARY KEY,
    key_hash       text   NOT NULL UNIQUE,
    key_prefix     text   NOT NULL,
    tenant_id      text   NOT NULL,
    integration_id text   NOT NULL,
    scope          text   NOT NULL,
    created_at     bigint NOT NULL,
    revoked_at     bigint,
    last_used_at   bigint
);
-- The schema itself guarantees at most one live key per integration.
CREATE UNIQUE INDEX api_keys_one_live ON api_keys (tenant_id, integration_id)
    WHERE revoked_at IS NULL;

CREATE TABLE audit_events (
    seq       @SERIAL_PK@,
    event_id  text   NOT NULL UNIQUE,
    tenant_id text   NOT NULL,
    actor     text   NOT NULL,
    action    text   NOT NULL,
    target    text   NOT NULL,
    at        bigint NOT NULL,
    details   text   NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_events (tenant_id, seq DESC);
