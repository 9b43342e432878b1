-- The identifiers (jti) of the signed assertions clients authenticated with
-- (private_key_jwt, RFC 7523): each is accepted once, so one captured assertion cannot
-- be replayed. Kept until the assertion expires; afterwards its `exp` refuses it anyway.
CREATE TABLE oidc_client_assertions (
    client_id  TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oidc_client_assertions_expires ON oidc_client_assertions (expires_at);
