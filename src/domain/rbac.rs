//! Authorization: roles, permissions, and their assignment to users.
//!
//! A user's effective permissions are the union of their roles' permissions; a
//! superuser holds every permission, including ones created after their token was
//! issued. Tokens carry roles and permissions as of issue, so a change reaches new
//! tokens at once and existing sessions at their next refresh (or immediately, when
//! an administrator ends the user's sessions).

use chrono::Utc;
use uuid::Uuid;

use super::{Actor, Portcullis, validate};
use crate::config::names;
use crate::error::{AppError, AppResult};
use crate::store::{PermissionRow, RoleRow};

/// Refuses a role or permission name that breaks the rule in [`names`], as a
/// validation error on `field`.
pub fn check_name(field: &str, name: &str) -> AppResult<()> {
    if names::is_valid_grant_name(name) {
        Ok(())
    } else {
        Err(AppError::validation(field, names::GRANT_NAME_RULE))
    }
}

impl Portcullis {
    /// The user's roles and effective permissions, as a new token would carry them.
    pub async fn user_permissions(&self, user_id: Uuid) -> AppResult<Vec<String>> {
        let user = self.user(user_id).await?;
        Ok(self.store().grants(user.id, user.is_superuser).await?.permissions)
    }

    pub async fn user_roles(&self, user_id: Uuid) -> AppResult<Vec<String>> {
        let user = self.user(user_id).await?;
        Ok(self.store().grants(user.id, user.is_superuser).await?.roles)
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
            .grants(user.id, user.is_superuser)
            .await?
            .permissions
            .iter()
            .any(|p| p == permission))
    }

    /// Gives a user a role (idempotent: assigning a held role changes and records nothing).
    /// Subject to the privilege rule: `by` ranks at least as high as the user and
    /// holds every permission of the role.
    pub async fn assign_role(&self, user_id: Uuid, role: &str, by: &Actor) -> AppResult<()> {
        self.may_act_on(user_id, by).await?;
        self.may_give_role(role, by).await?;
        let record = self.audit_record(by.event("ROLE_ASSIGN").resource("user", user_id).meta("role", role));
        self.store()
            .assign_role(user_id, role, by.id(), Utc::now(), record.as_ref())
            .await?;
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    /// 404 when the user did not hold the role; 409 for the last administrator.
    pub async fn remove_role(&self, user_id: Uuid, role: &str, by: &Actor) -> AppResult<()> {
        self.may_act_on(user_id, by).await?;
        let record = self.audit_record(by.event("ROLE_REMOVE").resource("user", user_id).meta("role", role));
        if !self.store().remove_role(user_id, role, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("the user does not have role {role}")));
        }
        self.inner().credentials.forget_user(user_id);
        Ok(())
    }

    /// `by` must hold the permission (and be an administrator for the admin role).
    pub async fn grant_permission(&self, role: &str, permission: &str, by: &Actor) -> AppResult<()> {
        self.may_change_role(role, &[permission.to_string()], by)?;
        let record = self.audit_record(
            by.event("PERMISSION_GRANT")
                .resource("role", role)
                .meta("permission", permission),
        );
        self.store().grant_permission(role, permission, record.as_ref()).await?;
        self.inner().credentials.forget_all_users();
        Ok(())
    }

    /// `by` must hold the permission (and be an administrator for the admin role).
    pub async fn revoke_permission(&self, role: &str, permission: &str, by: &Actor) -> AppResult<()> {
        self.may_change_role(role, &[permission.to_string()], by)?;
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
        self.may_change_role(name, permissions, by)?;
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
        // Replacing the set puts in and takes out: `by` must hold both what the role
        // has and what it is to have.
        let mut changed = permissions.map(<[String]>::to_vec).unwrap_or_default();
        if permissions.is_some() {
            changed.extend(self.role(name).await?.permissions);
        }
        self.may_change_role(name, &changed, by)?;
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

    /// `by` must hold every permission the role has.
    pub async fn delete_role(&self, name: &str, by: &Actor) -> AppResult<()> {
        let role = self.role(name).await?;
        if self.config().mfa.required_roles.iter().any(|r| r == name) {
            return Err(AppError::Conflict(format!(
                "role {name} is named in MFA_REQUIRED_ROLES; take it out of the setting first"
            )));
        }
        self.may_change_role(name, &role.permissions, by)?;
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

    /// Deletes a permission and removes it from every role, which is taking it out of
    /// each of them: the privilege rule applies as for revoking it from each.
    pub async fn delete_permission(&self, name: &str, by: &Actor) -> AppResult<()> {
        if self.config().gateway.routes.permissions().any(|p| p == name) {
            return Err(AppError::Conflict(format!(
                "permission {name} is required by VERIFY_ROUTES; take it out of the route map first"
            )));
        }
        let gone = [name.to_string()];
        for role in self.roles().await? {
            if role.permissions.iter().any(|p| p == name) {
                self.may_change_role(&role.name, &gone, by)?;
            }
        }
        let record = self.audit_record(by.event("PERMISSION_DELETE").resource("permission", name));
        if !self.store().delete_permission(name, record.as_ref()).await? {
            return Err(AppError::NotFound(format!("no permission {name}")));
        }
        self.inner().credentials.forget_all_users();
        Ok(())
    }
}

impl Portcullis {
    /// Settings that name roles or permissions must name existing ones:
    /// `MFA_REQUIRED_ROLES=admins` (for `admin`) would otherwise silently turn MFA off
    /// for administrators, and a route map's misspelt permission would guard a path
    /// with a permission no one holds. Checked when the service starts (not by the CLI,
    /// which may be what creates the role or permission).
    pub async fn check_named_roles(&self) -> anyhow::Result<()> {
        let roles = self.roles().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let roles: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        let required = self.config().mfa.required_roles.iter().map(String::as_str);
        all_exist("MFA_REQUIRED_ROLES", "role", "portcullis role create", required, &roles)?;
        let permissions = self.permissions().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let permissions: Vec<&str> = permissions.iter().map(|p| p.name.as_str()).collect();
        let guarding = self.config().gateway.routes.permissions();
        all_exist(
            "VERIFY_ROUTES",
            "permission",
            "portcullis permission create",
            guarding,
            &permissions,
        )
    }
}

/// Refuses the first of the names `setting` gives that is not among `existing`
/// (`kind`s, created with `command`), suggesting the nearest existing one.
fn all_exist<'a>(
    setting: &str,
    kind: &str,
    command: &str,
    named: impl IntoIterator<Item = &'a str>,
    existing: &[&str],
) -> anyhow::Result<()> {
    for name in named {
        if !existing.contains(&name) {
            let hint = crate::config::names::nearest(name, existing.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            anyhow::bail!("{setting}: no {kind} `{name}` exists{hint}; create it ({command}) or fix the setting");
        }
    }
    Ok(())
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
