//! Roles, permissions, assignments, and the admin queries over users.
//!
//! Changes that could leave the service without an administrator (demoting,
//! disabling or deleting one, deleting the admin role) run under one lock — SQLite's
//! write lock, or a PostgreSQL advisory lock — and re-count the administrators before
//! committing, so two concurrent demotions cannot both succeed.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::audit_tx;
use super::credentials::record_event;
use super::{AuditFields, Store, UserRow, conflict_on_unique};
use crate::error::{AppError, AppResult};

row_struct! {
    #[derive(Debug, Clone)]
    pub struct PermissionRow {
        pub name: String,
        pub description: String,
        pub created_at: DateTime<Utc>,
    }
}

#[derive(Debug, Clone)]
pub struct RoleRow {
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub permissions: Vec<String>,
}

row_struct! {
    struct RoleHead {
        name: String,
        description: String,
        created_at: DateTime<Utc>,
    }
}

/// Sort orders the user listing accepts; each maps to a fixed ORDER BY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSort {
    Username,
    Email,
    CreatedAt,
}

/// A page of users and how many match in all.
#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserRow>,
    pub total: i64,
}

/// An administrator: an active user who is a superuser or holds the `admin` role.
const COUNT_ADMINS: &str = "SELECT COUNT(*) FROM users u WHERE u.is_active AND (u.is_superuser OR EXISTS (SELECT 1 FROM user_roles ur WHERE ur.user_id = u.id AND ur.role_name = 'admin'))";
const PG_ADMIN_LOCK: &str = "SELECT pg_advisory_xact_lock(7260314)";

const LIST_ROLES: &str = "SELECT name, description, created_at FROM roles ORDER BY name";
const GET_ROLE: &str = "SELECT name, description, created_at FROM roles WHERE name = $1";
const ROLE_PERMISSIONS: &str =
    "SELECT role_name, permission_name FROM role_permissions ORDER BY role_name, permission_name";
const PERMISSIONS_OF_ROLE: &str =
    "SELECT permission_name FROM role_permissions WHERE role_name = $1 ORDER BY permission_name";
const INSERT_ROLE: &str = "INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3)";
const UPDATE_ROLE_DESCRIPTION: &str = "UPDATE roles SET description = $2 WHERE name = $1";
const DELETE_ROLE: &str = "DELETE FROM roles WHERE name = $1";
const CLEAR_ROLE_PERMISSIONS: &str = "DELETE FROM role_permissions WHERE role_name = $1";
const GRANT: &str = "INSERT INTO role_permissions (role_name, permission_name) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const REVOKE: &str = "DELETE FROM role_permissions WHERE role_name = $1 AND permission_name = $2";
const PERMISSION_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM permissions WHERE name = $1)";
const ROLE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM roles WHERE name = $1)";
const LIST_PERMISSIONS: &str = "SELECT name, description, created_at FROM permissions ORDER BY name";
const INSERT_PERMISSION: &str = "INSERT INTO permissions (name, description, created_at) VALUES ($1, $2, $3)";
const DELETE_PERMISSION: &str = "DELETE FROM permissions WHERE name = $1";
const ASSIGN: &str = "INSERT INTO user_roles (user_id, role_name, assigned_by, assigned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const UNASSIGN: &str = "DELETE FROM user_roles WHERE user_id = $1 AND role_name = $2";
const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)";
const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
const SET_SUPERUSER: &str = "UPDATE users SET is_superuser = $2, updated_at = $3 WHERE id = $1";
// A changed email is no longer a proven one.
const UPDATE_PROFILE: &str = "UPDATE users SET full_name = $2, email = $3, updated_at = $4, email_verified = CASE WHEN lower(email) = lower($3) THEN email_verified ELSE FALSE END WHERE id = $1";
// Only a real change counts (and is audited): disabling a disabled user changes nothing.
const SET_ACTIVE: &str = "UPDATE users SET is_active = $2, updated_at = $3 WHERE id = $1 AND is_active <> $2";
const ADMIN_SET_PASSWORD: &str =
    "UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3 WHERE id = $1";
const SELECT_USER: &str = "SELECT id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at FROM users WHERE id = $1";
const COUNT_MATCHING: &str = "SELECT COUNT(*) FROM users WHERE ($1 = '' OR lower(username) LIKE $2 ESCAPE '\\' OR lower(email) LIKE $2 ESCAPE '\\' OR lower(COALESCE(full_name, '')) LIKE $2 ESCAPE '\\')";

/// Runs `$body` in a transaction holding the admin-change lock, with `$tx` bound and
/// `$before` the number of administrators before the change.
macro_rules! admin_tx {
    ($store:expr, $tx:ident, $before:ident => $body:expr) => {
        match $store {
            Store::Sqlite(pool) => {
                let mut $tx = super::begin_write!(sqlite, pool);
                let $before: i64 = sqlx::query_scalar(COUNT_ADMINS).fetch_one(&mut *$tx).await?;
                $body
            }
            Store::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query(PG_ADMIN_LOCK).execute(&mut *$tx).await?;
                let $before: i64 = sqlx::query_scalar(COUNT_ADMINS).fetch_one(&mut *$tx).await?;
                $body
            }
        }
    };
}

/// Inside an admin transaction: fails with 409 (dropping, so rolling back, the
/// transaction) when the change would take the last administrator away, else
/// commits. A database that had no administrator to begin with (users created
/// from the shell before the first `serve`) is not held to the rule.
macro_rules! commit_if_admin_remains {
    ($tx:ident, $before:ident, $what:expr) => {{
        let admins: i64 = sqlx::query_scalar(COUNT_ADMINS).fetch_one(&mut *$tx).await?;
        if admins == 0 && $before > 0 {
            abort!(
                $tx,
                AppError::Conflict(format!("{}: it would leave no active administrator", $what))
            );
        }
        $tx.commit().await?;
    }};
}

/// Rolls an open transaction back and returns `$err`. Always roll back explicitly:
/// sqlx rolls a dropped transaction back lazily, and its connection can serve another
/// query (the revocation feed, say) inside the abandoned transaction first.
macro_rules! abort {
    ($tx:ident, $err:expr) => {{
        $tx.rollback().await?;
        return Err($err);
    }};
}
pub(crate) use abort;

fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    pub async fn list_roles(&self) -> AppResult<Vec<RoleRow>> {
        let (heads, pairs): (Vec<RoleHead>, Vec<(String, String)>) = super::on_pool!(self, pool => {
            let heads = sqlx::query_as(LIST_ROLES).fetch_all(pool).await?;
            let pairs = sqlx::query_as(ROLE_PERMISSIONS).fetch_all(pool).await?;
            (heads, pairs)
        });
        Ok(heads
            .into_iter()
            .map(|h| RoleRow {
                permissions: pairs
                    .iter()
                    .filter(|(r, _)| *r == h.name)
                    .map(|(_, p)| p.clone())
                    .collect(),
                name: h.name,
                description: h.description,
                created_at: h.created_at,
            })
            .collect())
    }

    pub async fn role(&self, name: &str) -> AppResult<Option<RoleRow>> {
        let found: Option<(RoleHead, Vec<String>)> = super::on_pool!(self, pool => {
            let head: Option<RoleHead> = sqlx::query_as(GET_ROLE).bind(name).fetch_optional(pool).await?;
            match head {
                Some(h) => Some((h, sqlx::query_scalar(PERMISSIONS_OF_ROLE).bind(name).fetch_all(pool).await?)),
                None => None,
            }
        });
        Ok(found.map(|(h, permissions)| RoleRow {
            name: h.name,
            description: h.description,
            created_at: h.created_at,
            permissions,
        }))
    }

    /// Creates a role with its permissions; unknown permissions are a 422 naming them.
    pub async fn create_role(
        &self,
        name: &str,
        description: &str,
        permissions: &[String],
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(INSERT_ROLE)
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                abort!(tx, conflict_on_unique(e, "a role with that name exists"));
            }
            for p in permissions {
                let exists: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(p).fetch_one(&mut *tx).await?;
                if !exists {
                    abort!(tx, AppError::validation("permissions", format!("unknown permission {p}")));
                }
                sqlx::query(GRANT).bind(name).bind(p).execute(&mut *tx).await?;
            }
            audit_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Updates a role's description and/or replaces its permission set. False when
    /// there is no such role.
    pub async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: Option<&[String]>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        Ok(super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(name).fetch_one(&mut *tx).await?;
            if exists {
                if let Some(d) = description {
                    sqlx::query(UPDATE_ROLE_DESCRIPTION).bind(name).bind(d).execute(&mut *tx).await?;
                }
                if let Some(perms) = permissions {
                    record_event!(tx, "grants", "*", Utc::now());
                    sqlx::query(CLEAR_ROLE_PERMISSIONS).bind(name).execute(&mut *tx).await?;
                    for p in perms {
                        let known: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(p).fetch_one(&mut *tx).await?;
                        if !known {
                            abort!(tx, AppError::validation("permissions", format!("unknown permission {p}")));
                        }
                        sqlx::query(GRANT).bind(name).bind(p).execute(&mut *tx).await?;
                    }
                }
                audit_tx!(tx, audit);
                tx.commit().await?;
            }
            exists
        }))
    }

    /// Deletes a role (and its assignments); 409 when that leaves no administrator.
    pub async fn delete_role(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        Ok(admin_tx!(self, tx, before => {
            let deleted = sqlx::query(DELETE_ROLE).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "grants", "*", Utc::now());
            audit_tx!(tx, audit.filter(|_| deleted));
            commit_if_admin_remains!(tx, before, format!("cannot delete role {name}"));
            deleted
        }))
    }

    /// Grants a permission to a role (idempotent).
    pub async fn grant_permission(&self, role: &str, permission: &str, audit: Option<&AuditFields>) -> AppResult<()> {
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let role_exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
            if !role_exists {
                abort!(tx, AppError::NotFound(format!("no role {role}")));
            }
            let known: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(permission).fetch_one(&mut *tx).await?;
            if !known {
                abort!(tx, AppError::NotFound(format!("no permission {permission}")));
            }
            let granted = sqlx::query(GRANT).bind(role).bind(permission).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "grants", "*", Utc::now());
            audit_tx!(tx, audit.filter(|_| granted));
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes a permission from a role; false when the role did not have it.
    pub async fn revoke_permission(
        &self,
        role: &str,
        permission: &str,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        Ok(super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let revoked = sqlx::query(REVOKE).bind(role).bind(permission).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "grants", "*", Utc::now());
            audit_tx!(tx, audit.filter(|_| revoked));
            tx.commit().await?;
            revoked
        }))
    }

    pub async fn list_permissions(&self) -> AppResult<Vec<PermissionRow>> {
        Ok(super::on_pool!(self, pool => sqlx::query_as::<_, PermissionRow>(LIST_PERMISSIONS).fetch_all(pool).await)?)
    }

    /// Creates a permission; superusers' grants now include it.
    pub async fn create_permission(
        &self,
        name: &str,
        description: &str,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(INSERT_PERMISSION)
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                abort!(tx, conflict_on_unique(e, "a permission with that name exists"));
            }
            record_event!(tx, "grants", "*", now);
            audit_tx!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a permission, removing it from every role.
    pub async fn delete_permission(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        Ok(super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query(DELETE_PERMISSION).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "grants", "*", Utc::now());
            audit_tx!(tx, audit.filter(|_| deleted));
            tx.commit().await?;
            deleted
        }))
    }

    /// Gives a user a role (idempotent). 404 for an unknown user or role.
    pub async fn assign_role(
        &self,
        user_id: Uuid,
        role: &str,
        assigned_by: Option<Uuid>,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let user_exists: bool = sqlx::query_scalar(USER_EXISTS).bind(user_id).fetch_one(&mut *tx).await?;
            if !user_exists {
                abort!(tx, AppError::NotFound("user not found".into()));
            }
            let role_exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
            if !role_exists {
                abort!(tx, AppError::NotFound(format!("no role {role}")));
            }
            let assigned = sqlx::query(ASSIGN).bind(user_id).bind(role).bind(assigned_by).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "user", user_id.to_string(), now);
            audit_tx!(tx, audit.filter(|_| assigned));
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes a role from a user; 409 when that demotes the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        Ok(admin_tx!(self, tx, before => {
            let removed = sqlx::query(UNASSIGN).bind(user_id).bind(role).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "user", user_id.to_string(), Utc::now());
            audit_tx!(tx, audit.filter(|_| removed));
            commit_if_admin_remains!(tx, before, "cannot remove the role");
            removed
        }))
    }

    /// Sets a user's profile (full name and email) and, when given, superuser flag, in
    /// one transaction: 409 for a taken email or when that demotes the last
    /// administrator. None when there is no such user.
    pub async fn update_user(
        &self,
        id: Uuid,
        full_name: Option<&str>,
        email: &str,
        superuser: Option<bool>,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<UserRow>> {
        Ok(admin_tx!(self, tx, before => {
            let updated = sqlx::query(UPDATE_PROFILE).bind(id).bind(full_name).bind(email).bind(now).execute(&mut *tx).await;
            let found = match updated {
                Ok(r) => r.rows_affected() > 0,
                Err(e) => abort!(tx, conflict_on_unique(e, "email is already registered")),
            };
            if let Some(su) = superuser {
                sqlx::query(SET_SUPERUSER).bind(id).bind(su).bind(now).execute(&mut *tx).await?;
            }
            record_event!(tx, "user", id.to_string(), now);
            audit_tx!(tx, audit.filter(|_| found));
            let user: Option<UserRow> = sqlx::query_as(SELECT_USER).bind(id).fetch_optional(&mut *tx).await?;
            commit_if_admin_remains!(tx, before, "cannot remove superuser");
            user
        }))
    }

    /// Enables or disables a user; disabling ends every session in the same
    /// transaction and is refused (409) for the last administrator. None when there is
    /// no such user; else the user and the ended session ids.
    pub async fn set_user_active(
        &self,
        id: Uuid,
        active: bool,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<(UserRow, Vec<Uuid>)>> {
        Ok(admin_tx!(self, tx, before => {
            let changed = sqlx::query(SET_ACTIVE).bind(id).bind(active).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "user", id.to_string(), now);
            audit_tx!(tx, audit.filter(|_| changed));
            let user: Option<UserRow> = sqlx::query_as(SELECT_USER).bind(id).fetch_optional(&mut *tx).await?;
            let ended = match (&user, active) {
                (Some(_), false) => super::sessions::revoke_user_sessions_tx!(tx, id, None::<Uuid>, "user_disabled", now, revocation_expires),
                _ => Vec::new(),
            };
            commit_if_admin_remains!(tx, before, "cannot disable this user");
            user.map(|u| (u, ended))
        }))
    }

    /// Deletes a user, ending their sessions first; 409 for the last administrator.
    /// Returns the ended session ids, or None when there was no such user.
    pub async fn delete_user(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<Vec<Uuid>>> {
        Ok(admin_tx!(self, tx, before => {
            let ended = super::sessions::revoke_user_sessions_tx!(tx, id, None::<Uuid>, "user_deleted", now, revocation_expires);
            let deleted = sqlx::query(DELETE_USER).bind(id).execute(&mut *tx).await?.rows_affected() > 0;
            record_event!(tx, "user", id.to_string(), now);
            audit_tx!(tx, audit.filter(|_| deleted));
            commit_if_admin_remains!(tx, before, "cannot delete this user");
            deleted.then_some(ended)
        }))
    }

    /// Sets a password chosen by an administrator, clears any lockout and ends the
    /// user's sessions. False when there is no such user.
    pub async fn admin_set_password(
        &self,
        id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<Vec<Uuid>>> {
        Ok(super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(ADMIN_SET_PASSWORD).bind(id).bind(hash).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            let ended = super::sessions::revoke_user_sessions_tx!(tx, id, None::<Uuid>, "password_reset", now, revocation_expires);
            sqlx::query(super::mfa::DELETE_USER_TICKETS).bind(id).execute(&mut *tx).await?;
            audit_tx!(tx, audit.filter(|_| changed));
            tx.commit().await?;
            changed.then_some(ended)
        }))
    }

    /// A page of users matching `q` (substring of username, email or full name).
    pub async fn list_users(
        &self,
        q: &str,
        sort: UserSort,
        descending: bool,
        limit: i64,
        offset: i64,
    ) -> AppResult<UserPage> {
        let column = match sort {
            UserSort::Username => "lower(username)",
            UserSort::Email => "lower(email)",
            UserSort::CreatedAt => "created_at",
        };
        let direction = if descending { "DESC" } else { "ASC" };
        // Column and direction come from the fixed lists above, never from input.
        let sql = format!(
            "SELECT id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at FROM users WHERE ($1 = '' OR lower(username) LIKE $2 ESCAPE '\\' OR lower(email) LIKE $2 ESCAPE '\\' OR lower(COALESCE(full_name, '')) LIKE $2 ESCAPE '\\') ORDER BY {column} {direction}, id LIMIT $3 OFFSET $4"
        );
        let pattern = like_pattern(q);
        let (users, total) = super::on_pool!(self, pool => {
            let users: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(q)
                .bind(&pattern)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(COUNT_MATCHING).bind(q).bind(&pattern).fetch_one(pool).await?;
            (users, total)
        });
        Ok(UserPage { users, total })
    }

    pub async fn count_admins(&self) -> AppResult<i64> {
        Ok(super::on_pool!(self, pool => sqlx::query_scalar::<_, i64>(COUNT_ADMINS).fetch_one(pool).await)?)
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Al_i%"), "%al\\_i\\%%");
        assert_eq!(like_pattern("a\\b"), "%a\\\\b%");
    }
}
