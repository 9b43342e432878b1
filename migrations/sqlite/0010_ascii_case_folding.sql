-- SQLite's lower() folds ASCII only, so the indexes of 0001 already fold as the
-- login lookup and the lockout key do (PostgreSQL needs new ones: see its 0009).
SELECT 1;
