-- Multi-factor authentication. A TOTP factor is pending until confirmed with a code;
-- its secret is sealed under the master key. last_step is the last time step accepted,
-- so a code is never accepted twice.
CREATE TABLE mfa_totp (
    user_id      BLOB PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret       BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    confirmed_at TEXT,
    last_step    INTEGER NOT NULL DEFAULT 0
);

-- Single-use recovery codes: only their SHA-256 (80 random bits each).
CREATE TABLE mfa_recovery_codes (
    code_hash  BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

-- Short-lived tickets, by the SHA-256 of the token handed out: 'verify' (the
-- mfa_token a password login returns, spent by /auth/mfa/verify) or 'enroll' (the
-- restricted token of a user who must enrol before anything else).
CREATE TABLE mfa_tickets (
    token_hash BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    amr        TEXT NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX mfa_tickets_expires ON mfa_tickets (expires_at);
