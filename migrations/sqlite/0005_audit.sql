-- The audit trail. Every record is linked to the previous one of its chain by a
-- SHA-256 over the previous hash and the record's fields, so editing or deleting a row
-- breaks the chain. Each instance writes its own chains (several instances can share
-- one PostgreSQL database without contending for one head); audit_chains holds each
-- chain's head, and the point up to which retention has purged it.
CREATE TABLE audit_chains (
    chain     TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,
    head      TEXT NOT NULL,
    base_seq  INTEGER NOT NULL DEFAULT 0,
    base_hash TEXT NOT NULL DEFAULT ''
);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    chain         TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    at            TEXT NOT NULL,
    -- 'event' (security event) or 'request' (an authenticated API request)
    kind          TEXT NOT NULL,
    action        TEXT NOT NULL,
    user_id       TEXT,
    username      TEXT,
    resource_type TEXT,
    resource_id   TEXT,
    ip            TEXT,
    user_agent    TEXT,
    method        TEXT,
    path          TEXT,
    status        INTEGER,
    duration_ms   INTEGER,
    request_id    TEXT,
    metadata      TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- audit:read exists since the core schema; services recording their own events need
-- audit:write.
INSERT INTO permissions (name, description) VALUES ('audit:write', 'Record custom audit events');
INSERT INTO role_permissions (role_name, permission_name) VALUES ('admin', 'audit:write');
