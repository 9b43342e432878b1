//! Authorization: roles, permissions, assignments and the admin operations on users.
//!
//! A user's effective permissions are the union of their roles' permissions; a
//! superuser holds every permission, including ones created after their token was
//! issued. Tokens carry roles and permissions as of issue, so a change reaches new
//! tokens at once and existing sessions at their next refresh (or immediately, when
//! an administrator ends the user's sessions).

use chrono::Utc;
use uuid::Uuid;

use super::accounts::Registration;
use super::{AuditEvent, Portcullis, validate};
use crate::error::{AppError, AppResult};
use crate::store::{PermissionRow, RoleRow, UserPage, UserRow, UserSort};

/// Role and permission names: lower-case ASCII letters, digits and `_ . : -`,
/// starting with a letter (`projects:create`, `billing_access`, `analyst`).
pub fn check_name(field: &str, name: &str) -> AppResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::validation(
            field,
            "must be 1-100 lower-case ASCII letters, digits or _ . : -, starting with a letter",
        ))
    }
}

/// What an administrator may change on a user in one request.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub is_superuser: Option<bool>,
}

/// Listing parameters for users.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub q: String,
    pub sort: UserSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

impl Default for UserQuery {
    fn default() -> Self {
        Self {
            q: String::new(),
            sort: UserSort::CreatedAt,
            descending: false,
            limit: 50,
            offset: 0,
        }
    }
}

impl Portcullis {
    /// The user's roles and effective permissions, as a new token would carry them.
    pub async fn get_user_permissions(&self, user_id: Uuid) -> AppResult<Vec<String>> {
        let user = self.user(user_id).await?;
        Ok(self.store().user_grants(&user).await?.permissions)
    }

    pub async fn get_user_roles(&self, user_id: Uuid) -> AppResult<Vec<String>> {
        let user = self.user(user_id).await?;
        Ok(self.store().user_grants(&user).await?.roles)
    }

    /// Whether the user, as stored now, holds `permission` (inactive users hold none).
    pub async fn has_permission(&self, user_id: Uuid, permission: &str) -> AppResult<bool> {
        let user = self.user(user_id).await?;
        if !user.is_active {
            return Ok(false);
        }
        if user.is_superuser {
            return Ok(true);
        }
        Ok(self
            .store()
            .user_grants(&user)
            .await?
            .permissions
            .iter()
            .any(|p| p == permission))
    }

    pub async fn assign_role(&self, user_id: Uuid, role: &str, assigned_by: Option<Uuid>) -> AppResult<()> {
        self.store().assign_role(user_id, role, assigned_by, Utc::now()).await?;
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    /// 404 when the user did not hold the role; 409 for the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str) -> AppResult<()> {
        self.user(user_id).await?;
        if !self.store().remove_role(user_id, role).await? {
            return Err(AppError::NotFound(format!("the user does not have role {role}")));
        }
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    pub async fn grant_permission(&self, role: &str, permission: &str) -> AppResult<()> {
        self.store().grant_permission(role, permission).await?;
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn revoke_permission(&self, role: &str, permission: &str) -> AppResult<()> {
        if !self.store().revoke_permission(role, permission).await? {
            return Err(AppError::NotFound(format!(
                "role {role} does not have permission {permission}"
            )));
        }
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn roles(&self) -> AppResult<Vec<RoleRow>> {
        self.store().list_roles().await
    }

    pub async fn role(&self, name: &str) -> AppResult<RoleRow> {
        self.store()
            .role(name)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no role {name}")))
    }

    pub async fn create_role(&self, name: &str, description: &str, permissions: &[String]) -> AppResult<RoleRow> {
        check_name("name", name)?;
        validate::all([validate::text("description", description, validate::DESCRIPTION_MAX)])?;
        self.store()
            .create_role(name, description, permissions, Utc::now())
            .await?;
        self.role(name).await
    }

    pub async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: Option<&[String]>,
    ) -> AppResult<RoleRow> {
        validate::all([description
            .map(|d| validate::text("description", d, validate::DESCRIPTION_MAX))
            .unwrap_or(Ok(()))])?;
        if !self.store().update_role(name, description, permissions).await? {
            return Err(AppError::NotFound(format!("no role {name}")));
        }
        self.inner().credentials.forget_all_users();
        self.role(name).await
    }

    pub async fn delete_role(&self, name: &str) -> AppResult<()> {
        if !self.store().delete_role(name).await? {
            return Err(AppError::NotFound(format!("no role {name}")));
        }
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn permissions(&self) -> AppResult<Vec<PermissionRow>> {
        self.store().list_permissions().await
    }

    pub async fn create_permission(&self, name: &str, description: &str) -> AppResult<PermissionRow> {
        check_name("name", name)?;
        validate::all([validate::text("description", description, validate::DESCRIPTION_MAX)])?;
        let now = Utc::now();
        self.store().create_permission(name, description, now).await?;
        self.inner().credentials.forget_all_users();
        Ok(PermissionRow {
            name: name.to_string(),
            description: description.to_string(),
            created_at: now,
        })
    }

    /// Deletes a permission and removes it from every role.
    pub async fn delete_permission(&self, name: &str) -> AppResult<()> {
        if !self.store().delete_permission(name).await? {
            return Err(AppError::NotFound(format!("no permission {name}")));
        }
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn list_users(&self, query: &UserQuery) -> AppResult<UserPage> {
        if query.q.len() > 200 {
            return Err(AppError::validation("q", "must be at most 200 characters"));
        }
        self.store()
            .list_users(&query.q, query.sort, query.descending, query.limit, query.offset)
            .await
    }

    /// Creates a user on an administrator's behalf, with roles.
    pub async fn create_user(&self, registration: Registration, created_by: Option<Uuid>) -> AppResult<UserRow> {
        let roles = registration.roles.clone();
        for role in &roles {
            self.store()
                .role(role)
                .await?
                .ok_or_else(|| AppError::validation("roles", format!("unknown role {role}")))?;
        }
        let user = self
            .register_audited(
                Registration {
                    roles: Vec::new(),
                    ..registration
                },
                AuditEvent::new("USER_CREATE").actor_id(created_by),
            )
            .await?;
        for role in roles {
            self.assign_role(user.id, &role, created_by).await?;
        }
        Ok(user)
    }

    pub async fn update_user(&self, id: Uuid, mut changes: UserChanges) -> AppResult<UserRow> {
        let user = self.user(id).await?;
        changes.email = changes.email.as_deref().map(validate::fold);
        validate::all([
            changes.email.as_deref().map(validate::email).unwrap_or(Ok(())),
            changes.full_name.as_deref().map(validate::full_name).unwrap_or(Ok(())),
        ])?;
        let now = Utc::now();
        if changes.email.is_some() || changes.full_name.is_some() {
            let full_name = match changes.full_name {
                Some(n) if n.is_empty() => None,
                Some(n) => Some(n),
                None => user.full_name.clone(),
            };
            let email = changes.email.unwrap_or(user.email.clone());
            self.store()
                .update_profile(id, full_name.as_deref(), &email, now)
                .await?;
            self.inner().credentials.forget_user(id);
        }
        if let Some(su) = changes.is_superuser {
            self.store().set_superuser(id, su, now).await?;
            self.inner().credentials.forget_user(id);
        }
        self.user(id).await
    }

    /// Deletes a user and ends their sessions; 409 for the last administrator.
    pub async fn delete_user(&self, id: Uuid) -> AppResult<()> {
        let user = self.user(id).await?;
        let now = Utc::now();
        let ended = self
            .store()
            .delete_user(id, now, self.revocation_horizon(now))
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))?;
        self.forget_sessions(&ended, now);
        self.inner().credentials.forget_user(id);
        // A later account of the same name must not inherit a lock.
        self.clear_lockout(&user).await
    }

    /// Sets a user's password (policy-checked) and ends their sessions.
    pub async fn set_password(&self, id: Uuid, password: &str) -> AppResult<()> {
        let user = self.user(id).await?;
        validate::all([self
            .inner()
            .policy
            .check("password", password, &user.username, &user.email)])?;
        let hash = self.inner().hasher.hash(password).await?;
        let now = Utc::now();
        let ended = self
            .store()
            .admin_set_password(id, &hash, now, self.revocation_horizon(now))
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))?;
        self.forget_sessions(&ended, now);
        self.clear_lockout(&user).await
    }

    /// Lifts the login lock on the user's username and email.
    pub async fn unlock_user(&self, id: Uuid) -> AppResult<()> {
        let user = self.user(id).await?;
        self.clear_lockout(&user).await
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        for ok in ["projects:create", "billing_access", "analyst", "a.b-c"] {
            assert!(check_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "1role", "has space", "x'--", &"a".repeat(101)] {
            assert!(check_name("name", bad).is_err(), "{bad}");
        }
    }
}
