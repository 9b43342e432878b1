-- The instances serving from this database, each with the issuer it signs tokens as,
-- so that one started with another issuer (the default issuer is derived from each
-- instance's own bind address) is caught at start-up instead of refusing the others'
-- tokens. A row is live while seen_at is recent; a stopped instance removes its own.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    issuer     TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL
);
