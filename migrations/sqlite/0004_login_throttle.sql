-- Consecutive failed logins, for lockout. Keyed 'u:<user id>' for accounts and
-- 'n:<sha-256 of the folded login name>' for names no account has, so unknown names
-- are locked out exactly like real ones (the answer never tells them apart) and a
-- password typed into the username field is never stored. Replaces the counters on
-- users: one mechanism serves both.
CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    locked_until    TEXT,
    last_failure_at TEXT NOT NULL
);
CREATE INDEX login_throttle_last_failure ON login_throttle (last_failure_at);
ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN locked_until;
