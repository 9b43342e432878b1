-- An upstream identity is the provider's issuer and its subject, not the name a
-- provider is configured under: a renamed provider keeps finding its accounts, two
-- names for one issuer find the same ones, and a name pointed at another issuer finds
-- none of the old issuer's. `provider` stays as the name it last signed in through
-- (what the account's identity routes take).
--
-- Rows keep the issuer recorded when they were linked (normalised: no trailing `/`).
-- A row with none stays NULL here, which no sign-in finds: at start, the service fills
-- it from the issuer configured under its provider's name (a provider no longer
-- configured leaves it NULL until it is configured again). Where two names of one
-- issuer made two identities of one subject, the one linked first keeps it; the
-- others' issuer becomes NULL, and they sign in no more.
CREATE TABLE oauth_identities_0011 (
    issuer           TEXT,
    subject          TEXT NOT NULL,
    provider         TEXT NOT NULL,
    user_id          UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email            TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    last_login_at    TIMESTAMPTZ NOT NULL,
    access_token     BYTEA,
    refresh_token    BYTEA,
    token_expires_at TIMESTAMPTZ
);
INSERT INTO oauth_identities_0011
    (issuer, subject, provider, user_id, email, created_at, last_login_at, access_token, refresh_token, token_expires_at)
SELECT
    CASE WHEN EXISTS (
        SELECT 1 FROM oauth_identities o
        WHERE RTRIM(o.issuer, '/') = RTRIM(i.issuer, '/') AND o.subject = i.subject
          AND (o.created_at < i.created_at OR (o.created_at = i.created_at AND o.provider < i.provider))
    ) THEN NULL ELSE RTRIM(i.issuer, '/') END,
    i.subject, i.provider, i.user_id, i.email, i.created_at, i.last_login_at, i.access_token,
    i.refresh_token, i.token_expires_at
FROM oauth_identities i;
DROP TABLE oauth_identities;
ALTER TABLE oauth_identities_0011 RENAME TO oauth_identities;
-- NULLs are distinct: rows without an issuer do not collide.
CREATE UNIQUE INDEX oauth_identities_issuer_subject ON oauth_identities (issuer, subject);
CREATE UNIQUE INDEX oauth_identities_user_provider ON oauth_identities (user_id, provider);
