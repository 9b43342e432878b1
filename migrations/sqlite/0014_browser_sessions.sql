-- A browser session of the hosted pages (src/ui) is a row of `sessions`, like a token
-- login's, so listing, logout-all, password change, disabling the user and revocation
-- end it the same way. The browser holds an opaque cookie; only its SHA-256 is kept.
CREATE TABLE browser_sessions (
    cookie_hash  BLOB PRIMARY KEY,
    session_id   BLOB NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    last_seen_at TEXT NOT NULL
);
