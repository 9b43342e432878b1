-- The revocation feed is followed in commit order, not by its writers' clocks: each
-- row carries the id of the transaction that wrote it, and a follower re-reads every
-- row whose transaction may still have been running at its last poll (see
-- src/store/revocations.rs). created_at stays, for people reading the table.
ALTER TABLE revocations ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX revocations_txid ON revocations (txid);
DROP INDEX revocations_created;

-- The latest moment an access token issued by any instance may expire: each instance
-- pushes it forward at start and every minute with its own lifetime, so that a
-- revocation outlives tokens issued under a longer lifetime than the one configured
-- now (see revocation_horizon in src/domain/mod.rs).
CREATE TABLE token_horizon (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    until TIMESTAMPTZ NOT NULL
);
