-- Portcullis as an OpenID provider: the applications that sign in with it, the
-- authorization codes, consents and device codes in flight. Secrets and codes are kept
-- only as their SHA-256 (they are long random values, so a fast hash is enough).

-- One application (OAuth client). `id` is its client_id; `uid` is the service account
-- id its client_credentials tokens carry (uid and sid), so deleting the client or
-- rotating its secret can end them through the revocation feed like a session.
CREATE TABLE oidc_clients (
    id                         TEXT PRIMARY KEY,
    uid                        UUID NOT NULL UNIQUE,
    name                       TEXT NOT NULL,
    -- 'confidential' or 'public'
    kind                       TEXT NOT NULL,
    -- client_secret_basic, client_secret_post, private_key_jwt or none
    auth_method                TEXT NOT NULL,
    -- JSON arrays of strings
    redirect_uris              TEXT NOT NULL,
    post_logout_redirect_uris  TEXT NOT NULL,
    grant_types                TEXT NOT NULL,
    scopes                     TEXT NOT NULL,
    first_party                BOOLEAN NOT NULL DEFAULT FALSE,
    backchannel_logout_uri     TEXT,
    -- The client's public keys (a JWKS document) for private_key_jwt.
    jwks                       TEXT,
    -- Seconds; NULL: the service's defaults.
    access_token_ttl           INTEGER,
    refresh_token_ttl          INTEGER,
    secret_hash                BYTEA,
    -- The secret before the last rotation, accepted until previous_secret_expires_at.
    previous_secret_hash       BYTEA,
    previous_secret_expires_at TIMESTAMPTZ,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

-- Roles a client holds as a service account (client_credentials).
CREATE TABLE client_roles (
    client_id TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    role_name TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (client_id, role_name)
);

-- An authorization code: single use, minutes long. `session_id` is the token session
-- its redemption started; presenting the code again ends that session.
CREATE TABLE oidc_codes (
    code_hash          BYTEA PRIMARY KEY,
    client_id          TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    user_id            UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    browser_session_id UUID NOT NULL,
    redirect_uri       TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    code_challenge     TEXT NOT NULL,
    auth_time          TIMESTAMPTZ NOT NULL,
    amr                TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    used_at            TIMESTAMPTZ,
    session_id         UUID
);
CREATE INDEX oidc_codes_expires ON oidc_codes (expires_at);

-- What a person allowed an application (space-separated scopes), remembered so the
-- consent page is shown again only when the application asks for more.
CREATE TABLE oidc_consents (
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- A device authorization (RFC 8628) in flight.
CREATE TABLE oidc_device_codes (
    device_code_hash   BYTEA PRIMARY KEY,
    -- Kept normalised (upper case, no separator); unique while it lives.
    user_code          TEXT NOT NULL UNIQUE,
    client_id          TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    scope              TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    interval_secs      INTEGER NOT NULL,
    last_polled_at     TIMESTAMPTZ,
    -- pending, approved, denied or used
    status             TEXT NOT NULL,
    user_id            UUID REFERENCES users(id) ON DELETE CASCADE,
    browser_session_id UUID,
    auth_time          TIMESTAMPTZ,
    amr                TEXT
);
CREATE INDEX oidc_device_codes_expires ON oidc_device_codes (expires_at);

-- A session whose tokens were issued to an application: which one, with what scope,
-- and the browser session that authorized it (the `sid` of its ID tokens; ending that
-- browser session ends this one). NULL client_id: Portcullis's own login.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT;
-- When the person last proved themselves before the application's session began
-- (the ID tokens' auth_time at every refresh). NULL: at the session's start.
ALTER TABLE sessions ADD COLUMN auth_time TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN browser_session_id UUID;
CREATE INDEX sessions_client ON sessions (client_id, user_id);
CREATE INDEX sessions_browser_session ON sessions (browser_session_id);

INSERT INTO permissions (name, description) VALUES ('clients:manage', 'Manage OpenID Connect clients (applications)');
INSERT INTO role_permissions (role_name, permission_name)
    SELECT name, 'clients:manage' FROM roles WHERE name = 'admin';
