//! Accounts: registration, profile, password change, enable/disable, bootstrap, and
//! the administration of users (listing, creating, changing, deleting, setting a
//! password, lifting a lock).

use chrono::Utc;
use uuid::Uuid;

use super::privilege::{self, Rank};
use super::{Actor, AuditEvent, ClientContext, Portcullis, Principal, validate};
use crate::error::{AppError, AppResult, FieldError};
use crate::store::{NewUser, UserPage, UserRow, UserSort};

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
    /// Self-registration (`POST /auth/register`, the `/register` page): refused with
    /// 403 while `REGISTRATION_ENABLED` is off, else creates the account after checking
    /// every field; a taken username or email is 409.
    pub async fn register(&self, r: Registration) -> AppResult<UserRow> {
        if !self.registration_open() {
            return Err(AppError::Forbidden(
                "self-registration is switched off on this service".into(),
            ));
        }
        self.register_audited(r, AuditEvent::new("REGISTER")).await
    }

    /// Whether anyone may register themselves (the sign-in page offers it only then).
    pub fn registration_open(&self) -> bool {
        self.config().registration.enabled
    }

    /// Self-registration that goes on to sign the new account in, as the `/register`
    /// page does: the person has just chosen the password, so it is the first factor
    /// (`pwd`), and what follows is what follows any first factor (a session, or the
    /// enrolment a role demands).
    pub async fn register_and_sign_in(
        &self,
        r: Registration,
        ctx: &ClientContext,
    ) -> AppResult<super::login::LoginOutcome> {
        let user = self.register(r).await?;
        self.after_first_factor(&user, &["pwd"], ctx).await
    }

    /// Creates an account, recording `event` (REGISTER by the user, USER_CREATE by
    /// someone else) in the same transaction.
    pub async fn register_audited(&self, mut r: Registration, event: AuditEvent) -> AppResult<UserRow> {
        let inner = self.inner();
        r.username = validate::fold(&r.username);
        r.email = validate::fold(&r.email);
        validate::all([
            validate::username(&r.username).and_then(|()| validate::username_for(&r.username, &r.email)),
            validate::email(&r.email),
            r.full_name.as_deref().map(validate::full_name).unwrap_or(Ok(())),
        ])?;
        let hash = match (&r.password, &r.password_hash) {
            (Some(p), None) => {
                validate::all([inner.policy.check("password", p, &r.username, &r.email)])?;
                Some(inner.hasher.hash(p).await?)
            }
            (None, Some(h)) if is_importable_hash(h) => {
                if let Some(cost) = crate::crypto::password::bcrypt_cost(h) {
                    inner.hasher.expect_bcrypt(cost).await?;
                }
                Some(h.clone())
            }
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
            (None, None) => {
                return Err(AppError::validation_coded(
                    "password",
                    validate::REQUIRED,
                    "is required",
                ));
            }
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
    /// one was generated, for printing once; None when users already existed. Every
    /// start also registers the CLI's built-in client when it is absent
    /// (`oidc::device`).
    pub async fn bootstrap_admin(&self) -> anyhow::Result<Option<BootstrapAdmin>> {
        let inner = self.inner();
        self.ensure_cli_client().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if inner.store.count_users().await.map_err(|e| anyhow::anyhow!("{e}"))? > 0 {
            return Ok(None);
        }
        let config = &inner.config;
        // A generated password (144 random bits) is hashed here rather than put
        // through the strength policy, which has nothing to say about it and would
        // build zxcvbn's dictionaries (4 MB, kept for the process's life) on every
        // first start. A configured one is checked like any other.
        let (password, password_hash, generated) = match &config.bootstrap.admin_password {
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
                    username: config.bootstrap.admin_username.clone(),
                    email: config.bootstrap.admin_email.clone(),
                    full_name: Some("Administrator".into()),
                    password,
                    password_hash,
                    superuser: true,
                    roles: vec![super::privilege::ADMIN_ROLE.into()],
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
        // A username that is an email stays the account's own (see `username_for`).
        validate::all([validate::username_for(&current.username, &email).map_err(|_| {
            FieldError::new(
                "email",
                "email_must_stay",
                format!("must stay {} while that is your username", current.username),
            )
        })])?;
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
            return Err(AppError::validation_coded(
                "current_password",
                validate::INCORRECT,
                "is incorrect",
            ));
        }
        self.login_succeeded(&user.username).await?;
        validate::all([inner.policy.check("new_password", new, &user.username, &user.email)])?;
        if current == new {
            return Err(AppError::validation_coded(
                "new_password",
                "password_unchanged",
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
        self.may_act_on(id, by).await?;
        let inner = self.inner();
        let now = self.revocation_clock();
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

/// Administration of users, on an administrator's behalf. Every change to a user
/// goes through the privilege rule (`privilege::may_act_on`): the actor ranks at least
/// as high as the user.
impl Portcullis {
    pub async fn list_users(&self, query: &UserQuery) -> AppResult<UserPage> {
        if query.q.len() > 200 {
            return Err(AppError::validation("q", "must be at most 200 characters"));
        }
        self.store()
            .list_users(&query.q, query.sort, query.descending, query.limit, query.offset)
            .await
    }

    /// Creates a user on an administrator's behalf, with roles: only a superuser
    /// creates a superuser, and `by` must be able to give every role.
    pub async fn create_user(&self, registration: Registration, by: &Actor) -> AppResult<UserRow> {
        if registration.superuser {
            privilege::require_rank(by, Rank::Superuser, "create a superuser")?;
        }
        let roles = registration.roles.clone();
        for role in &roles {
            self.store()
                .role(role)
                .await?
                .ok_or_else(|| AppError::validation("roles", format!("unknown role {role}")))?;
            self.may_give_role(role, by).await?;
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
    /// Only a superuser grants or removes superuser.
    pub async fn update_user(&self, id: Uuid, changes: UserChanges, by: &Actor) -> AppResult<UserRow> {
        if changes.is_superuser.is_some() {
            privilege::require_rank(by, Rank::Superuser, "grant or remove superuser")?;
        }
        self.may_act_on(id, by).await?;
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
        let user = self.may_act_on(id, by).await?;
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
        let user = self.may_act_on(id, by).await?;
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
        let user = self.may_act_on(id, by).await?;
        self.clear_lockout(&user).await?;
        self.log_event(by.event("USER_UNLOCK").resource("user", id)).await
    }

    /// Ends every session of a user, at once; the number ended.
    pub async fn revoke_user_sessions(&self, id: Uuid, by: &Actor) -> AppResult<usize> {
        self.may_act_on(id, by).await?;
        self.end_user_sessions(id, None, "revoked_by_admin", by.event("SESSIONS_REVOKE"))
            .await
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
