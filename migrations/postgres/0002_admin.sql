-- Admin support: lockout state an admin can clear (the hardening work fills it in),
-- and indexes for the admin queries that go from a role or permission to its holders.
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TIMESTAMPTZ;
CREATE INDEX user_roles_role ON user_roles (role_name);
CREATE INDEX role_permissions_permission ON role_permissions (permission_name);
