-- Keyed audit chains. From here on a record's link is an HMAC-SHA-256 under a key
-- derived from the master key, not a bare SHA-256 that anyone who can write the
-- database can recompute. keyed_from is a chain's first keyed position: chains
-- written before this migration keep their unkeyed records (keyed from their next
-- position); chains created later are keyed from position 1. anchor is a MAC, under
-- the same key, of the chain's name, base and keyed_from, written when a chain is
-- created and when a purge moves its base: moving a base, or keyed_from, takes the
-- key. head_mac is a MAC of the chain's name, position and head, moved with the head
-- on every append: moving a head back over cut records takes the key too. The
-- service anchors the chains found here on its first start after this migration
-- (while audit_registry.chains is still '').
ALTER TABLE audit_chains ADD COLUMN keyed_from INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_chains ADD COLUMN anchor TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_chains ADD COLUMN head_mac TEXT NOT NULL DEFAULT '';
UPDATE audit_chains SET keyed_from = seq + 1;

-- The registry of chains: the XOR of a MAC of every chain's name (hex), updated in
-- the transaction that creates a chain, so that removing a whole chain (its records
-- and its row here) shows.
CREATE TABLE audit_registry (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    chains TEXT NOT NULL
);
INSERT INTO audit_registry (id, chains) VALUES (1, '');
