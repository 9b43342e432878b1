-- When the person at a browser last proved themselves (signing in, or a step-up
-- before a sensitive page action): pages ask again once it is older than the step-up
-- window. NULL: at the session's start.
ALTER TABLE browser_sessions ADD COLUMN verified_at TEXT;
