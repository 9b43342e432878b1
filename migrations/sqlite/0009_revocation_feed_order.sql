-- The revocation feed is followed in commit order, not by its writers' clocks. On
-- SQLite the row id is that order already (writers are serialized and a row's id is
-- taken inside its writing transaction), so followers read by id; the index on the
-- writer's timestamp is no longer used.
DROP INDEX revocations_created;

-- The latest moment an access token issued by any instance may expire: each instance
-- pushes it forward at start and every minute with its own lifetime, so that a
-- revocation outlives tokens issued under a longer lifetime than the one configured
-- now (see revocation_horizon in src/domain/mod.rs).
CREATE TABLE token_horizon (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    until TEXT NOT NULL
);
