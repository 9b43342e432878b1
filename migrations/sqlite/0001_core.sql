-- SQLite twin of migrations/postgres/0001_core.sql: UUIDs are 16-byte BLOBs and
-- timestamps text, as sqlx encodes them.
-- Core schema: accounts, roles and permissions, sessions (refresh-token families),
-- signing keys, and the revocation feed every instance follows.

CREATE TABLE users (
    id                  BLOB PRIMARY KEY,
    username            TEXT NOT NULL,
    email               TEXT NOT NULL,
    full_name           TEXT,
    -- NULL for accounts that sign in only through an upstream provider.
    password_hash       TEXT,
    is_superuser        BOOLEAN NOT NULL DEFAULT FALSE,
    is_active           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    password_changed_at TEXT
);
-- Usernames and emails are ASCII (checked on input), so lower() agrees on both backends.
CREATE UNIQUE INDEX users_username_ci ON users (lower(username));
CREATE UNIQUE INDEX users_email_ci ON users (lower(email));

CREATE TABLE permissions (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE role_permissions (
    role_name       TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE ON UPDATE CASCADE,
    permission_name TEXT NOT NULL REFERENCES permissions(name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (role_name, permission_name)
);

CREATE TABLE user_roles (
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_name   TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE ON UPDATE CASCADE,
    assigned_by BLOB,
    assigned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (user_id, role_name)
);

-- One row per login: the family every rotated refresh token of that login belongs to.
CREATE TABLE sessions (
    id                BLOB PRIMARY KEY,
    user_id           BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    amr               TEXT NOT NULL,
    user_agent        TEXT,
    ip                TEXT,
    created_at        TEXT NOT NULL,
    last_refreshed_at TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    revoked_at        TEXT,
    revoked_reason    TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Only the SHA-256 of a refresh token is kept.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Private keys are AES-256-GCM sealed under the master key.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    retired_at  TEXT
);

-- Revocations every instance must honour without a database round-trip per request:
-- each instance loads the live ones at start and then follows new rows.
CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX revocations_created ON revocations (created_at);
CREATE INDEX revocations_expires ON revocations (expires_at);

INSERT INTO permissions (name, description) VALUES
    ('projects:create', 'Create new projects'),
    ('projects:read', 'View projects'),
    ('projects:update', 'Update projects'),
    ('projects:delete', 'Delete projects'),
    ('runs:create', 'Create analysis runs'),
    ('runs:read', 'View analysis runs'),
    ('runs:update', 'Update analysis runs'),
    ('runs:delete', 'Delete analysis runs'),
    ('reports:read', 'View reports'),
    ('reports:export', 'Export reports'),
    ('models:read', 'View model information'),
    ('models:manage', 'Manage model registry'),
    ('users:read', 'View user information'),
    ('users:manage', 'Manage users and roles'),
    ('audit:read', 'View audit logs'),
    ('roles:manage', 'Manage roles and permissions'),
    ('apikeys:manage', 'Manage every user''s API keys'),
    ('keys:manage', 'Manage signing keys');

INSERT INTO roles (name, description) VALUES
    ('admin', 'Full system access (all permissions)'),
    ('analyst', 'Can create projects, run analyses, view results'),
    ('viewer', 'Read-only access to projects and reports');

INSERT INTO role_permissions (role_name, permission_name)
    SELECT 'admin', name FROM permissions;
INSERT INTO role_permissions (role_name, permission_name) VALUES
    ('analyst', 'projects:create'), ('analyst', 'projects:read'), ('analyst', 'projects:update'),
    ('analyst', 'runs:create'), ('analyst', 'runs:read'), ('analyst', 'runs:update'),
    ('analyst', 'reports:read'), ('analyst', 'reports:export'), ('analyst', 'models:read'),
    ('viewer', 'projects:read'), ('viewer', 'runs:read'), ('viewer', 'reports:read'),
    ('viewer', 'models:read');
