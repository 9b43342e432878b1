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
use super::{Actor, Portcullis, validate};
use crate::config::names;
use crate::error::{AppError, AppResult};
use crate::store::{PermissionRow, RoleRow, UserPage, UserRow, UserSort};

/// Refuses a role or permission name that breaks the rule in [`names`], as a
/// validation error on `field`.
pub fn check_name(field: &str, name: &str) -> AppResult<()> {
    if names::is_valid_grant_name(name) {
        Ok(())
    } else {
        Err(AppError::validation(field, names::GRANT_NAME_RULE))
    }
}

/// What an administrator may change on a user in one request.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub is_superuser: Option<bool>,
}

impl UserChanges {
    /// The fields given, for the audit record (never their values).
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("full_name", self.full_name.is_some()),
            ("is_superuser", self.is_superuser.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, given)| given.then_some(f))
        .collect()
    }
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

    /// Gives a user a role (idempotent: assigning a held role changes and records nothing).
    pub async fn assign_role(&self, user_id: Uuid, role: &str, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(by.event("ROLE_ASSIGN").resource("user", user_id).meta("role", role));
        self.store()
            .assign_role(user_id, role, by.id(), Utc::now(), record.as_ref())
            .await?;
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    /// 404 when the user did not hold the role; 409 for the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str, by: &Actor) -> AppResult<()> {
        self.user(user_id).await?;
        let record = self.audit_record(by.event("ROLE_REMOVE").resource("user", user_id).meta("role", role));
        if !self.store().remove_role(user_id, role, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("the user does not have role {role}")));
        }
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    pub async fn grant_permission(&self, role: &str, permission: &str, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(
            by.event("PERMISSION_GRANT")
                .resource("role", role)
                .meta("permission", permission),
        );
        self.store().grant_permission(role, permission, record.as_ref()).await?;
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn revoke_permission(&self, role: &str, permission: &str, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(
            by.event("PERMISSION_REVOKE")
                .resource("role", role)
                .meta("permission", permission),
        );
        if !self
            .store()
            .revoke_permission(role, permission, record.as_ref())
            .await?
        {
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

    pub async fn create_role(
        &self,
        name: &str,
        description: &str,
        permissions: &[String],
        by: &Actor,
    ) -> AppResult<RoleRow> {
        check_name("name", name)?;
        validate::all([validate::text("description", description, validate::DESCRIPTION_MAX)])?;
        let record = self.audit_record(
            by.event("ROLE_CREATE")
                .resource("role", name)
                .meta("permissions", permissions),
        );
        self.store()
            .create_role(name, description, permissions, Utc::now(), record.as_ref())
            .await?;
        self.role(name).await
    }

    pub async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: Option<&[String]>,
        by: &Actor,
    ) -> AppResult<RoleRow> {
        validate::all([description
            .map(|d| validate::text("description", d, validate::DESCRIPTION_MAX))
            .unwrap_or(Ok(()))])?;
        let mut event = by.event("ROLE_UPDATE").resource("role", name);
        if let Some(p) = permissions {
            event = event.meta("permissions", p);
        }
        let record = self.audit_record(event);
        if !self
            .store()
            .update_role(name, description, permissions, record.as_ref())
            .await?
        {
            return Err(AppError::NotFound(format!("no role {name}")));
        }
        self.inner().credentials.forget_all_users();
        self.role(name).await
    }

    pub async fn delete_role(&self, name: &str, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(by.event("ROLE_DELETE").resource("role", name));
        if !self.store().delete_role(name, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("no role {name}")));
        }
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    pub async fn permissions(&self) -> AppResult<Vec<PermissionRow>> {
        self.store().list_permissions().await
    }

    pub async fn create_permission(&self, name: &str, description: &str, by: &Actor) -> AppResult<PermissionRow> {
        check_name("name", name)?;
        validate::all([validate::text("description", description, validate::DESCRIPTION_MAX)])?;
        let now = Utc::now();
        let record = self.audit_record(by.event("PERMISSION_CREATE").resource("permission", name));
        self.store()
            .create_permission(name, description, now, record.as_ref())
            .await?;
        self.inner().credentials.forget_all_users();
        Ok(PermissionRow {
            name: name.to_string(),
            description: description.to_string(),
            created_at: now,
        })
    }

    /// Deletes a permission and removes it from every role.
    pub async fn delete_permission(&self, name: &str, by: &Actor) -> AppResult<()> {
        let record = self.audit_record(by.event("PERMISSION_DELETE").resource("permission", name));
        if !self.store().delete_permission(name, record.as_ref()).await? {
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
    pub async fn create_user(&self, registration: Registration, by: &Actor) -> AppResult<UserRow> {
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
                by.event("USER_CREATE"),
            )
            .await?;
        for role in roles {
            self.assign_role(user.id, &role, by).await?;
        }
        Ok(user)
    }

    /// Changes a user's profile and superuser flag in one transaction, recorded as
    /// one USER_UPDATE naming the fields given (never their values).
    pub async fn update_user(&self, id: Uuid, changes: UserChanges, by: &Actor) -> AppResult<UserRow> {
        let event = by
            .event("USER_UPDATE")
            .resource("user", id)
            .meta("fields", changes.fields());
        self.change_profile(id, changes, event)
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))
    }

    /// Deletes a user and ends their sessions; 409 for the last administrator.
    pub async fn delete_user(&self, id: Uuid, by: &Actor) -> AppResult<()> {
        let user = self.user(id).await?;
        let now = Utc::now();
        let record = self.audit_record(
            by.event("USER_DELETE")
                .resource("user", id)
                .meta("username", &user.username),
        );
        let ended = self
            .store()
            .delete_user(id, now, self.revocation_horizon(now), record.as_ref())
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))?;
        self.forget_sessions(&ended, now);
        self.inner().credentials.forget_user(id);
        // A later account of the same name must not inherit a lock.
        self.clear_lockout(&user).await
    }

    /// Sets a user's password (policy-checked) and ends their sessions.
    pub async fn set_password(&self, id: Uuid, password: &str, by: &Actor) -> AppResult<()> {
        let user = self.user(id).await?;
        validate::all([self
            .inner()
            .policy
            .check("password", password, &user.username, &user.email)])?;
        let hash = self.inner().hasher.hash(password).await?;
        let now = Utc::now();
        let record = self.audit_record(by.event("PASSWORD_RESET").resource("user", id));
        let ended = self
            .store()
            .admin_set_password(id, &hash, now, self.revocation_horizon(now), record.as_ref())
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))?;
        self.forget_sessions(&ended, now);
        self.clear_lockout(&user).await
    }

    /// Lifts the login lock on the user's username and email.
    pub async fn unlock_user(&self, id: Uuid, by: &Actor) -> AppResult<()> {
        let user = self.user(id).await?;
        self.clear_lockout(&user).await?;
        self.log_event(by.event("USER_UNLOCK").resource("user", id)).await
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
