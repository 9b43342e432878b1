-- API keys and temporary access tokens. Only SHA-256 digests of their secrets are kept.

CREATE TABLE api_keys (
    -- The public id inside the key (pcx_<id>_<secret>): lookups are by id, then the
    -- secret's digest is compared in constant time.
    id           TEXT PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,
    permissions  TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE temporary_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permissions TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX temporary_tokens_user ON temporary_tokens (user_id);

-- Resource servers that introspect tokens (RFC 7662) need this.
INSERT INTO permissions (name, description) VALUES ('tokens:introspect', 'Introspect any token (RFC 7662)');
INSERT INTO role_permissions (role_name, permission_name) VALUES ('admin', 'tokens:introspect');
