-- OAuth 2.1 for MCP clients (docs/mcp-endpoints.md, "OAuth"): registered clients, single-use
-- authorization codes and the tokens issued from them. Codes and tokens are stored as their
-- SHA-256; every grant names the API key that approved it, so revoking or rotating that key
-- ends every token derived from it.
CREATE TABLE oauth_clients (
    client_id     text   PRIMARY KEY,
    -- 'registered' (RFC 7591) or 'metadata_document' (an https client_id URL, recorded when
    -- it is first approved so the settings API can name it)
    kind          text   NOT NULL,
    client_name   text,
    redirect_uris text   NOT NULL,
    created_at    bigint NOT NULL
);
CREATE INDEX oauth_clients_by_age ON oauth_clients (kind, created_at);

CREATE TABLE oauth_codes (
    code_hash      text   PRIMARY KEY,
    client_id      text   NOT NULL,
    redirect_uri   text   NOT NULL,
    code_challenge text   NOT NULL,
    key_id         text   NOT NULL,
    tenant_id      text   NOT NULL,
    integration_id text   NOT NULL,
    resource       text   NOT NULL,
    -- the grant: the tokens issued from this code (and their refreshed successors) share it
    family_id      text   NOT NULL,
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    used_at        bigint
);
CREATE INDEX oauth_codes_by_expiry ON oauth_codes (expires_at);

CREATE TABLE oauth_tokens (
    token_hash     text   PRIMARY KEY,
    kind           text   NOT NULL,
    family_id      text   NOT NULL,
    client_id      text   NOT NULL,
    key_id         text   NOT NULL,
    tenant_id      text   NOT NULL,
    integration_id text   NOT NULL,
    resource       text   NOT NULL,
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    revoked_at     bigint,
    -- a refresh token is single use: set when it was exchanged for the next pair
    used_at        bigint,
    last_used_at   bigint
);
CREATE INDEX oauth_tokens_by_client ON oauth_tokens (tenant_id, integration_id, client_id);
CREATE INDEX oauth_tokens_by_family ON oauth_tokens (family_id);
CREATE INDEX oauth_tokens_by_expiry ON oauth_tokens (expires_at);
