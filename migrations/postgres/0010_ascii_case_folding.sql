-- Login lookups fold case by ASCII rules whatever the database's collation (a
-- Turkish one lowers 'I' to 'ı'), as the lockout key does: these indexes serve
-- them, and keep two names that differ only in ASCII case unique under any collation.
CREATE UNIQUE INDEX users_username_ascii_ci ON users (lower(username COLLATE "C"));
CREATE UNIQUE INDEX users_email_ascii_ci ON users (lower(email COLLATE "C"));
