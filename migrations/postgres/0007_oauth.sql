-- Sign-in with upstream identity providers. An identity (provider, subject) belongs to
-- one user, and a user has at most one identity per provider. The provider's own
-- access and refresh tokens are sealed under the master key.
CREATE TABLE oauth_identities (
    provider         TEXT NOT NULL,
    subject          TEXT NOT NULL,
    user_id          UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email            TEXT,
    -- The issuer it signed in with (an Okta organisation named per request, say):
    -- where its upstream tokens are refreshed.
    issuer           TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    last_login_at    TIMESTAMPTZ NOT NULL,
    access_token     BYTEA,
    refresh_token    BYTEA,
    token_expires_at TIMESTAMPTZ,
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX oauth_identities_user_provider ON oauth_identities (user_id, provider);

-- One redirect flow in progress: found by the SHA-256 of its `state`, used once, within
-- ten minutes, and only by the browser that started it (the SHA-256 of a value in
-- that browser's cookie).
CREATE TABLE oauth_states (
    state_hash    BYTEA PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    browser_hash  BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

-- Whether the account's email was proven: set when a provider that asserts it created
-- the account, cleared when the email changes. Only such accounts may be linked to a
-- provider identity by email (a self-registered address was never proven).
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
