-- When every session of the account last ended at once (logout-all, a password
-- change or reset, an administrator's revocation, disabling): tokens that belong to
-- no session (JWT_ACCEPT_UNKEYED) and were issued before it are refused. NULL: never.
ALTER TABLE users ADD COLUMN sessions_ended_at TEXT;
