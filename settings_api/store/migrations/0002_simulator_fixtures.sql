-- Scripted simulator answers per tool, and a per-integration version that seeds the simulator
-- (bumped by every fixture change, so cached and derived results change with it).
ALTER TABLE mcp_settings ADD COLUMN fixtures_version bigint NOT NULL DEFAULT 0;

CREATE TABLE simulator_fixtures (
    tenant_id      text   NOT NULL,
    integration_id text   NOT NULL,
    tool_id        text   NOT NULL,
    rules          text   NOT NULL,
    created_at     bigint NOT NULL,
    modified_at    bigint NOT NULL,
    PRIMARY KEY (tenant_id, integration_id, tool_id),
    FOREIGN KEY (tenant_id, integration_id)
        REFERENCES integrations (tenant_id, integration_id) ON DELETE CASCADE
);
