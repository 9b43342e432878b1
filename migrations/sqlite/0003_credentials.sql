-- SQLite twin of migrations/postgres/0003_credentials.sql.
-- API keys and temporary access tokens. Only SHA-256 digests of their secrets are kept.

CREATE TABLE api_keys (
    -- The public id inside the key (pcx_<id>_<secret>): lookups are by id, then the
    -- secret's digest is compared in constant time.
    id           TEXT PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    permissions  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE temporary_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permissions TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX temporary_tokens_user ON temporary_tokens (user_id);

-- Resource servers that introspect tokens (RFC 7662) need this.
INSERT INTO permissions (name, description) VALUES ('tokens:introspect', 'Introspect any token (RFC 7662)');
INSERT INTO role_permissions (role_name, permission_name) VALUES ('admin', 'tokens:introspect');
