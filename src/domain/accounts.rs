//! Accounts: registration, profile, password change, enable/disable, bootstrap.

use chrono::Utc;
use uuid::Uuid;

use super::rbac::UserChanges;
use super::{Actor, AuditEvent, ClientContext, Portcullis, Principal, validate};
use crate::error::{AppError, AppResult};
use crate::store::{NewUser, UserRow};

/// What `register` and the CLI need to create an account.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub password: Option<String>,
    /// An existing hash (passlib bcrypt or argon2), for bringing users along.
    pub password_hash: Option<String>,
    pub superuser: bool,
    pub roles: Vec<String>,
}

/// Whether a stored hash is in a format Portcullis can verify.
fn is_importable_hash(hash: &str) -> bool {
    [
        "$argon2id$",
        "$argon2i$",
        "$argon2d$",
        "$2a$",
        "$2b$",
        "$2y$",
        "$bcrypt-sha256$",
    ]
    .iter()
    .any(|p| hash.starts_with(p))
        && hash.len() < 512
        && hash.bytes().all(|b| b.is_ascii_graphic())
}

impl Portcullis {
    /// Creates an account after checking every field; a taken username or email is 409.
    pub async fn register(&self, r: Registration) -> AppResult<UserRow> {
        self.register_audited(r, AuditEvent::new("REGISTER")).await
    }

    /// Creates an account, recording `event` (REGISTER by the user, USER_CREATE by
    /// someone else) in the same transaction.
    pub async fn register_audited(&self, mut r: Registration, event: AuditEvent) -> AppResult<UserRow> {
        let inner = self.inner();
        r.username = validate::fold(&r.username);
        r.email = validate::fold(&r.email);
        validate::all([
            validate::username(&r.username),
            validate::email(&r.email),
            r.full_name.as_deref().map(validate::full_name).unwrap_or(Ok(())),
        ])?;
        let hash = match (&r.password, &r.password_hash) {
            (Some(p), None) => {
                validate::all([inner.policy.check("password", p, &r.username, &r.email)])?;
                Some(inner.hasher.hash(p).await?)
            }
            (None, Some(h)) if is_importable_hash(h) => Some(h.clone()),
            (None, Some(_)) => {
                return Err(AppError::validation(
                    "password_hash",
                    "is not a bcrypt ($2a$/$2b$/$2y$), bcrypt-sha256 or argon2 hash",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(AppError::BadRequest(
                    "give a password or a password hash, not both".into(),
                ));
            }
            (None, None) => return Err(AppError::validation("password", "is required")),
        };
        let user = inner
            .store
            .insert_user(
                &NewUser {
                    username: r.username,
                    email: r.email,
                    full_name: r.full_name.filter(|n| !n.is_empty()),
                    password_hash: hash,
                    is_superuser: r.superuser,
                    roles: r.roles,
                    identity: None,
                    email_verified: false,
                },
                Utc::now(),
                self.audit_record(event).as_ref(),
            )
            .await?;
        metrics::counter!("portcullis_registrations_total").increment(1);
        Ok(user)
    }

    /// On an empty database, creates the superuser `admin`. Returns the password when
    /// one was generated, for printing once; None when users already existed.
    pub async fn bootstrap_admin(&self) -> anyhow::Result<Option<BootstrapAdmin>> {
        let inner = self.inner();
        if inner.store.count_users().await.map_err(|e| anyhow::anyhow!("{e}"))? > 0 {
            return Ok(None);
        }
        let config = &inner.config;
        // A generated password (144 random bits) is hashed here rather than put
        // through the strength policy, which has nothing to say about it and would
        // build zxcvbn's dictionaries (4 MB, kept for the process's life) on every
        // first start. A configured one is checked like any other.
        let (password, password_hash, generated) = match &config.admin_password {
            Some(p) => (Some(p.clone()), None, None),
            None => {
                let p = crate::crypto::tokens::random_token()[..24].to_string();
                let hash = inner.hasher.hash(&p).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                (None, Some(hash), Some(p))
            }
        };
        let result = self
            .register_audited(
                Registration {
                    username: config.admin_username.clone(),
                    email: config.admin_email.clone(),
                    full_name: Some("Administrator".into()),
                    password,
                    password_hash,
                    superuser: true,
                    roles: vec!["admin".into()],
                },
                AuditEvent::new("USER_CREATE").meta("via", "bootstrap"),
            )
            .await;
        match result {
            Ok(user) => Ok(Some(BootstrapAdmin {
                username: user.username,
                password: generated,
            })),
            // Another instance sharing the database bootstrapped it first.
            Err(AppError::Conflict(_)) => Ok(None),
            Err(AppError::Validation(errors)) => anyhow::bail!(
                "PORTCULLIS_ADMIN_PASSWORD/PORTCULLIS_ADMIN_USERNAME/PORTCULLIS_ADMIN_EMAIL: {}",
                errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Err(e) => anyhow::bail!("creating the admin account failed: {e:?}"),
        }
    }

    pub async fn user(&self, id: Uuid) -> AppResult<UserRow> {
        self.inner()
            .store
            .user_by_id(id)
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))
    }

    /// The caller's own account; a token of a deleted or disabled user is refused.
    pub async fn me(&self, caller: &Principal) -> AppResult<UserRow> {
        match self.inner().store.user_by_id(caller.user_id).await? {
            Some(u) if u.is_active => Ok(u),
            _ => Err(AppError::InvalidToken("account is no longer active".into())),
        }
    }

    /// Updates the caller's full name and/or email.
    pub async fn update_me(
        &self,
        caller: &Principal,
        full_name: Option<String>,
        email: Option<String>,
        ctx: &ClientContext,
    ) -> AppResult<UserRow> {
        self.me(caller).await?;
        let changes = UserChanges {
            email,
            full_name,
            is_superuser: None,
        };
        let event = Actor::user(caller.user_id, &caller.username, ctx)
            .event("USER_UPDATE")
            .resource("user", caller.user_id)
            .meta("fields", changes.fields());
        self.change_profile(caller.user_id, changes, event)
            .await?
            .ok_or_else(|| AppError::InvalidToken("account is no longer active".into()))
    }

    /// Applies `changes` (validated; an empty full name clears it) as one change
    /// recorded by `event`. None when there is no such user.
    pub(crate) async fn change_profile(
        &self,
        id: Uuid,
        mut changes: UserChanges,
        event: AuditEvent,
    ) -> AppResult<Option<UserRow>> {
        changes.email = changes.email.as_deref().map(validate::fold);
        validate::all([
            changes.full_name.as_deref().map(validate::full_name).unwrap_or(Ok(())),
            changes.email.as_deref().map(validate::email).unwrap_or(Ok(())),
        ])?;
        let Some(current) = self.store().user_by_id(id).await? else {
            return Ok(None);
        };
        let full_name = match changes.full_name {
            Some(n) if n.is_empty() => None,
            Some(n) => Some(n),
            None => current.full_name,
        };
        let email = changes.email.unwrap_or(current.email);
        let record = self.audit_record(event);
        let user = self
            .store()
            .update_user(
                id,
                full_name.as_deref(),
                &email,
                changes.is_superuser,
                Utc::now(),
                record.as_ref(),
            )
            .await?;
        self.inner().credentials.forget_user(id);
        Ok(user)
    }

    /// Changes the caller's password after checking the current one, ending every
    /// other session of theirs.
    pub async fn change_password(
        &self,
        caller: &Principal,
        current: &str,
        new: &str,
        ctx: &ClientContext,
    ) -> AppResult<()> {
        let inner = self.inner();
        let user = self.me(caller).await?;
        // Guessing the current password with a stolen token counts like guessing at login.
        self.begin_login_attempt(&user.username).await?;
        let verified = inner.hasher.verify(current, user.password_hash.as_deref()).await?;
        if !verified.ok {
            return Err(AppError::validation("current_password", "is incorrect"));
        }
        self.login_succeeded(&user.username).await?;
        validate::all([inner.policy.check("new_password", new, &user.username, &user.email)])?;
        if current == new {
            return Err(AppError::validation(
                "new_password",
                "must differ from the current password",
            ));
        }
        let hash = inner.hasher.hash(new).await?;
        let now = Utc::now();
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("PASSWORD_CHANGE")
                .resource("user", user.id),
        );
        let ended = inner
            .store
            .change_password(
                user.id,
                &hash,
                caller.session_id,
                now,
                self.revocation_horizon(now),
                record.as_ref(),
            )
            .await?;
        self.forget_sessions(&ended, now);
        Ok(())
    }

    /// Enables or disables an account; disabling ends all its sessions at once.
    /// Recorded as USER_DISABLE or USER_ENABLE when the state changes.
    pub async fn set_user_active(&self, id: Uuid, active: bool, by: &Actor) -> AppResult<UserRow> {
        let inner = self.inner();
        let now = Utc::now();
        let action = if active { "USER_ENABLE" } else { "USER_DISABLE" };
        let record = self.audit_record(by.event(action).resource("user", id));
        let (user, ended) = inner
            .store
            .set_user_active(id, active, now, self.revocation_horizon(now), record.as_ref())
            .await?
            .ok_or_else(|| AppError::NotFound("user not found".into()))?;
        self.forget_sessions(&ended, now);
        inner.credentials.forget_user(id);
        Ok(user)
    }
}

/// The account created on first start.
#[derive(Debug)]
pub struct BootstrapAdmin {
    pub username: String,
    /// The generated one-time password; None when it came from configuration.
    pub password: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importable_hashes() {
        assert!(is_importable_hash(
            "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
        ));
        assert!(is_importable_hash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"));
        assert!(!is_importable_hash("plaintext"));
        assert!(!is_importable_hash("$2b$ with spaces"));
    }
}
