-- Nothing to do on PostgreSQL: SQLite's version of this migration replaces the
-- (user_id, id) index on audit_log, whose cost there comes from its write-ahead log
-- taking whole pages at every commit. PostgreSQL logs index insertions as tuples and
-- keeps audit_log_user. The file exists so both backends share version numbers.
SELECT 1;
