//! Roles, permissions, which roles grant which permissions and which users hold
//! which roles, and the grants a user holds as a result. The queries over user rows
//! themselves are in `users`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::admins::keeping_an_admin;
use super::audit::append_in_tx;
use super::credentials::record_event;
use super::tx::within;
use super::{AuditFields, Store, conflict_on_unique, on_pool};
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

/// A user's roles and effective permissions, as carried in access tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGrants {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

row_struct! {
    struct RoleHead {
        name: String,
        description: String,
        created_at: DateTime<Utc>,
    }
}

const SELECT_ROLES: &str = "SELECT role_name FROM user_roles WHERE user_id = $1 ORDER BY role_name";
const SELECT_PERMISSIONS: &str = "SELECT DISTINCT rp.permission_name FROM user_roles ur JOIN role_permissions rp ON rp.role_name = ur.role_name WHERE ur.user_id = $1 ORDER BY rp.permission_name";
const SELECT_ALL_PERMISSIONS: &str = "SELECT name FROM permissions ORDER BY name";
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

impl Store {
    /// A user's roles and effective permissions: a superuser's are every permission
    /// that exists.
    pub async fn grants(&self, user_id: Uuid, is_superuser: bool) -> AppResult<UserGrants> {
        let permissions_sql = if is_superuser {
            SELECT_ALL_PERMISSIONS
        } else {
            SELECT_PERMISSIONS
        };
        let (roles, permissions) = on_pool!(self, pool => {
            let roles: Vec<String> = sqlx::query_scalar(SELECT_ROLES).bind(user_id).fetch_all(pool).await?;
            let q = sqlx::query_scalar(permissions_sql);
            let q = if is_superuser { q } else { q.bind(user_id) };
            let permissions: Vec<String> = q.fetch_all(pool).await?;
            (roles, permissions)
        });
        Ok(UserGrants { roles, permissions })
    }

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
            append_in_tx(tx, self.audit_key(), audit).await?;
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
                append_in_tx(tx, self.audit_key(), audit).await?;
            }
            Ok(exists)
        }).await)
    }

    /// Deletes a role (and its assignments); 409 when that leaves no administrator.
    pub async fn delete_role(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => keeping_an_admin(pool, &format!("cannot delete role {name}"), async |tx| {
            let deleted = sqlx::query(DELETE_ROLE).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| deleted)).await?;
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
            append_in_tx(tx, self.audit_key(), audit.filter(|_| granted)).await?;
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
            append_in_tx(tx, self.audit_key(), audit.filter(|_| revoked)).await?;
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
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// Deletes a permission, removing it from every role.
    pub async fn delete_permission(&self, name: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let deleted = sqlx::query(DELETE_PERMISSION).bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "grants", "*", Utc::now()).await?;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| deleted)).await?;
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
            append_in_tx(tx, self.audit_key(), audit.filter(|_| assigned)).await?;
            Ok(())
        }).await)
    }

    /// Takes a role from a user; 409 when that demotes the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str, audit: Option<&AuditFields>) -> AppResult<bool> {
        on_pool!(self, pool => keeping_an_admin(pool, "cannot remove the role", async |tx| {
            let removed = sqlx::query(UNASSIGN).bind(user_id).bind(role).execute(&mut *tx).await?.rows_affected() > 0;
            record_event(tx, "user", &user_id.to_string(), Utc::now()).await?;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| removed)).await?;
            Ok(removed)
        }).await)
    }
}
