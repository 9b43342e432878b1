-- Finding a user's records without a (user_id, id) index on audit_log. Request records
-- are committed by the hundred, and SQLite's write-ahead log takes whole pages: with
-- that index every commit rewrote one index page per user active in the batch, which
-- doubled the cost of a record once dozens of users were active. audit_by_user is
-- filled behind the writer instead, in runs of thousands of records sorted by user,
-- so each user's page is written once per run; records past audit_by_user_mark are
-- not in it yet and a user filter scans them (see src/store/audit.rs).
DROP INDEX audit_log_user;

CREATE TABLE audit_by_user (
    owner  TEXT NOT NULL,
    record INTEGER NOT NULL,
    PRIMARY KEY (owner, record)
) WITHOUT ROWID;

-- The last audit_log id covered by audit_by_user.
CREATE TABLE audit_by_user_mark (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);

INSERT INTO audit_by_user (owner, record)
    SELECT user_id, id FROM audit_log WHERE user_id IS NOT NULL ORDER BY user_id, id;
INSERT INTO audit_by_user_mark (id, last_id) VALUES (1, COALESCE((SELECT MAX(id) FROM audit_log), 0));
