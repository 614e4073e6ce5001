-- The tool-call log: one row per MCP tools/call, written in batches by the data plane and
-- deleted after MCPGW_CALL_LOG_RETENTION_DAYS. No foreign key: a call outlives nothing it
-- names (a deleted integration's calls expire with the rest), and a batch never fails on one.
-- `arguments` (testUrl only) is the canonical JSON the SHA-256 is taken of.
CREATE TABLE tool_calls (
    id               @SERIAL_PK@,
    tenant_id        text    NOT NULL,
    integration_id   text    NOT NULL,
    at               bigint  NOT NULL,
    url              text    NOT NULL,
    api_key_id       text    NOT NULL,
    tool             text,
    outcome          text    NOT NULL,
    duration_ms      integer NOT NULL,
    request_id       text,
    run_id           text,
    arguments_sha256 text,
    arguments        text
);
-- Newest first per integration (the cursor is at, id), with or without a run id.
CREATE INDEX tool_calls_newest ON tool_calls (tenant_id, integration_id, at DESC, id DESC);
CREATE INDEX tool_calls_by_run ON tool_calls (tenant_id, integration_id, run_id, at DESC, id DESC)
    WHERE run_id IS NOT NULL;
-- The retention delete.
CREATE INDEX tool_calls_by_age ON tool_calls (at);
