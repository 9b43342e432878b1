//! Roles, permissions, assignments, and the admin queries over users.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::admins::keeping_an_admin;
use super::audit::append_in_tx;
use super::credentials::record_event;
use super::mfa::DELETE_USER_TICKETS;
use super::sessions::revoke_user_sessions_in_tx;
use super::tx::within;
use super::{AuditFields, Store, UserRow, conflict_on_unique, on_pool};
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
        let (heads, pairs): (Vec<RoleHead>, Vec<(String, String)>) = on_pool!(self, pool => {
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
        let found: Option<(RoleHead, Vec<String>)> = on_pool!(self, pool => {
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let inserted = sqlx::query(INSERT_ROLE)
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                return Err(conflict_on_unique(e, "a role with that name exists"));
            }
            for p in permissions {
                let exists: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(p).fetch_one(&mut *tx).await?;
                if !exists {
                    return Err(AppError::validation("permissions", format!("unknown permission {p}")));
                }
                sqlx::query(GRANT).bind(name).bind(p).execute(&mut *tx).await?;
            }
            append_in_tx(tx, audit).await?;
            Ok(())
        }).await)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(name).fetch_one(&mut *tx).await?;
            if exists {
                if let Some(d) = description {
                    sqlx::query(UPDATE_ROLE_DESCRIPTION).bind(name).bind(d).execute(&mut *tx).await?;
                }
                if let Some(perms) = permissions {
                    record_event(tx, "grants", "*", Utc::now()).await?;
                    sqlx::query(CLEAR_ROLE_PERMISSIONS).bind(name).execute(&mut *tx).await?;
                    for p in perms {
                        let known: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(p).fetch_one(&mut *tx).await?;
                        if !known {
                            return Err(AppError::validation("permissions", format!("unknown permission {p}")));
                        }
                        sqlx::query(GRANT).bind(name).bind(p).execute(&mut *tx).await?;
                    }
                }
                append_in_tx(tx, audit).await?;
            }
            Ok(exists)
        }).await)
    }

    /// Deletes a role (and its assignments); 409 when that leaves no administrator.
    pub async fn delete_role(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => keeping_an_admin(pool, &format!("cannot delete role {name}"), async |tx| {
            let deleted = sqlx::query(DELETE_ROLE).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, audit.filter(|_| deleted)).await?;
            Ok(deleted)
        }).await)
    }

    /// Grants a permission to a role (idempotent).
    pub async fn grant_permission(&self, role: &str, permission: &str, audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let role_exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
            if !role_exists {
                return Err(AppError::NotFound(format!("no role {role}")));
            }
            let known: bool = sqlx::query_scalar(PERMISSION_EXISTS).bind(permission).fetch_one(&mut *tx).await?;
            if !known {
                return Err(AppError::NotFound(format!("no permission {permission}")));
            }
            let granted = sqlx::query(GRANT).bind(role).bind(permission).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, audit.filter(|_| granted)).await?;
            Ok(())
        }).await)
    }

    /// Revokes a permission from a role; false when the role did not have it.
    pub async fn revoke_permission(
        &self,
        role: &str,
        permission: &str,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let revoked = sqlx::query(REVOKE).bind(role).bind(permission).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, audit.filter(|_| revoked)).await?;
            Ok(revoked)
        }).await)
    }

    pub async fn list_permissions(&self) -> AppResult<Vec<PermissionRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, PermissionRow>(LIST_PERMISSIONS).fetch_all(pool).await)?)
    }

    /// Creates a permission; superusers' grants now include it.
    pub async fn create_permission(
        &self,
        name: &str,
        description: &str,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let inserted = sqlx::query(INSERT_PERMISSION)
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                return Err(conflict_on_unique(e, "a permission with that name exists"));
            }
            record_event(tx, "grants", "*", now).await?;
            append_in_tx(tx, audit).await?;
            Ok(())
        }).await)
    }

    /// Deletes a permission, removing it from every role.
    pub async fn delete_permission(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let deleted = sqlx::query(DELETE_PERMISSION).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, audit.filter(|_| deleted)).await?;
            Ok(deleted)
        }).await)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let user_exists: bool = sqlx::query_scalar(USER_EXISTS).bind(user_id).fetch_one(&mut *tx).await?;
            if !user_exists {
                return Err(AppError::NotFound("user not found".into()));
            }
            let role_exists: bool = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
            if !role_exists {
                return Err(AppError::NotFound(format!("no role {role}")));
            }
            let assigned = sqlx::query(ASSIGN).bind(user_id).bind(role).bind(assigned_by).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "user", &user_id.to_string(), now).await?;
            append_in_tx(tx, audit.filter(|_| assigned)).await?;
            Ok(())
        }).await)
    }

    /// Takes a role from a user; 409 when that demotes the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => keeping_an_admin(pool, "cannot remove the role", async |tx| {
            let removed = sqlx::query(UNASSIGN).bind(user_id).bind(role).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "user", &user_id.to_string(), Utc::now()).await?;
            append_in_tx(tx, audit.filter(|_| removed)).await?;
            Ok(removed)
        }).await)
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
        on_pool!(self, pool => keeping_an_admin(pool, "cannot remove superuser", async |tx| {
            let updated = sqlx::query(UPDATE_PROFILE).bind(id).bind(full_name).bind(email).bind(now).execute(&mut *tx).await;
            let found = match updated {
                Ok(r) => r.rows_affected() > 0,
                Err(e) => return Err(conflict_on_unique(e, "email is already registered")),
            };
            if let Some(su) = superuser {
                sqlx::query(SET_SUPERUSER).bind(id).bind(su).bind(now).execute(&mut *tx).await?;
            }
            record_event(tx, "user", &id.to_string(), now).await?;
            append_in_tx(tx, audit.filter(|_| found)).await?;
            let user: Option<UserRow> = sqlx::query_as(SELECT_USER).bind(id).fetch_optional(&mut *tx).await?;
            Ok(user)
        }).await)
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
        on_pool!(self, pool => keeping_an_admin(pool, "cannot disable this user", async |tx| {
            let changed = sqlx::query(SET_ACTIVE).bind(id).bind(active).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "user", &id.to_string(), now).await?;
            append_in_tx(tx, audit.filter(|_| changed)).await?;
            let user: Option<UserRow> = sqlx::query_as(SELECT_USER).bind(id).fetch_optional(&mut *tx).await?;
            let ended = match (&user, active) {
                (Some(_), false) => revoke_user_sessions_in_tx(tx, id, None, "user_disabled", now, revocation_expires).await?,
                _ => Vec::new(),
            };
            Ok(user.map(|u| (u, ended)))
        }).await)
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
        on_pool!(self, pool => keeping_an_admin(pool, "cannot delete this user", async |tx| {
            let ended = revoke_user_sessions_in_tx(tx, id, None, "user_deleted", now, revocation_expires).await?;
            let deleted = sqlx::query(DELETE_USER).bind(id).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "user", &id.to_string(), now).await?;
            append_in_tx(tx, audit.filter(|_| deleted)).await?;
            Ok(deleted.then_some(ended))
        }).await)
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
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let changed = sqlx::query(ADMIN_SET_PASSWORD).bind(id).bind(hash).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            let ended = revoke_user_sessions_in_tx(tx, id, None, "password_reset", now, revocation_expires).await?;
            sqlx::query(DELETE_USER_TICKETS).bind(id).execute(&mut *tx).await?;
            append_in_tx(tx, audit.filter(|_| changed)).await?;
            Ok(changed.then_some(ended))
        }).await)
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
        let (users, total) = on_pool!(self, pool => {
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
