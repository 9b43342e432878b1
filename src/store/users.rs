//! Accounts and what they are granted.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::mfa::DELETE_USER_TICKETS;
use super::oauth::insert_identity_in_tx;
use super::sessions::revoke_user_sessions_in_tx;
use super::tx::within;
use super::{AuditFields, Store, conflict_on_unique, on_pool};
use crate::error::{AppError, AppResult};

row_struct! {
    #[derive(Debug, Clone)]
    pub struct UserRow {
        pub id: Uuid,
        pub username: String,
        pub email: String,
        pub full_name: Option<String>,
        pub password_hash: Option<String>,
        pub is_superuser: bool,
        pub is_active: bool,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub password_changed_at: Option<DateTime<Utc>>,
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub password_hash: Option<String>,
    pub is_superuser: bool,
    /// Roles given at creation, e.g. `admin` for the bootstrap account.
    pub roles: Vec<String>,
    /// The upstream identity the account is created for (first social sign-in); its
    /// `user_id` is set on insert.
    pub identity: Option<super::IdentityRow>,
    /// The email was proven (a provider asserted it).
    pub email_verified: bool,
}

/// A user's roles and effective permissions, as carried in access tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGrants {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

const SELECT_BY_ID: &str = "SELECT id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at FROM users WHERE id = $1";
// A username match wins over an email match: usernames may look like emails.
const SELECT_BY_LOGIN: &str = "SELECT id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($1) ORDER BY CASE WHEN lower(username) = lower($1) THEN 0 ELSE 1 END LIMIT 1";
const INSERT_USER: &str = "INSERT INTO users (id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7, $8) RETURNING id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at";
const INSERT_USER_ROLE: &str = "INSERT INTO user_roles (user_id, role_name, assigned_by, assigned_at) VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING";
const UPDATE_PASSWORD_HASH: &str = "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1";
const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3 WHERE id = $1";
const SELECT_ROLES: &str = "SELECT role_name FROM user_roles WHERE user_id = $1 ORDER BY role_name";
const SELECT_PERMISSIONS: &str = "SELECT DISTINCT rp.permission_name FROM user_roles ur JOIN role_permissions rp ON rp.role_name = ur.role_name WHERE ur.user_id = $1 ORDER BY rp.permission_name";
const SELECT_ALL_PERMISSIONS: &str = "SELECT name FROM permissions ORDER BY name";
const COUNT_USERS: &str = "SELECT COUNT(*) FROM users";
const SELECT_BY_EMAIL: &str = "SELECT id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at FROM users WHERE lower(email) = lower($1)";
const SET_EMAIL_VERIFIED: &str = "UPDATE users SET email_verified = TRUE WHERE id = $1";
const EMAIL_VERIFIED: &str = "SELECT COUNT(*) FROM users WHERE id = $1 AND email_verified";
const USERNAME_TAKEN: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1))";

impl Store {
    /// Inserts a user and their initial roles in one transaction. A taken username or
    /// email (compared case-insensitively) is a 409 naming which.
    pub async fn insert_user(
        &self,
        new: &NewUser,
        now: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<UserRow> {
        let id = Uuid::now_v7();
        let password_changed_at = new.password_hash.as_ref().map(|_| now);
        // The transaction fails with the database's error, so that a unique
        // violation can then be looked at to say which field is taken.
        let inserted = on_pool!(self, pool => within(pool.begin().await?, async |tx| -> Result<UserRow, sqlx::Error> {
            let row = sqlx::query_as::<_, UserRow>(INSERT_USER)
                .bind(id)
                .bind(&new.username)
                .bind(&new.email)
                .bind(&new.full_name)
                .bind(&new.password_hash)
                .bind(new.is_superuser)
                .bind(now)
                .bind(password_changed_at)
                .fetch_one(&mut *tx)
                .await?;
            for role in &new.roles {
                sqlx::query(INSERT_USER_ROLE).bind(id).bind(role).bind(now).execute(&mut *tx).await?;
            }
            if new.email_verified {
                sqlx::query(SET_EMAIL_VERIFIED).bind(id).execute(&mut *tx).await?;
            }
            if let Some(identity) = &new.identity {
                let identity = super::IdentityRow { user_id: id, ..identity.clone() };
                insert_identity_in_tx(tx, &identity).await?;
            }
            let record = audit.map(|a| a.for_user(row.id, Some(&row.username)).on("user", row.id));
            append_in_tx(tx, record.as_ref()).await?;
            Ok(row)
        }).await);
        match inserted.map_err(|e| conflict_on_unique(e, "taken")) {
            Err(AppError::Conflict(_)) => {
                let username_taken: bool = on_pool!(self, pool => sqlx::query_scalar(USERNAME_TAKEN).bind(&new.username).fetch_one(pool).await)?;
                Err(AppError::Conflict(if username_taken {
                    "username is already registered".into()
                } else {
                    "email is already registered".into()
                }))
            }
            other => other,
        }
    }

    pub async fn user_by_email(&self, email: &str) -> AppResult<Option<UserRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SELECT_BY_EMAIL).bind(email).fetch_optional(pool).await)?,
        )
    }

    /// Whether the user's email was proven (see `NewUser::email_verified`).
    pub async fn email_verified(&self, id: Uuid) -> AppResult<bool> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(EMAIL_VERIFIED).bind(id).fetch_one(pool).await)? > 0)
    }

    pub async fn user_by_id(&self, id: Uuid) -> AppResult<Option<UserRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SELECT_BY_ID).bind(id).fetch_optional(pool).await)?)
    }

    /// Finds the account a login name refers to: a username, or else an email.
    pub async fn user_by_login(&self, login: &str) -> AppResult<Option<UserRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SELECT_BY_LOGIN).bind(login).fetch_optional(pool).await)?,
        )
    }

    /// Replaces a hash with an equivalent one at current parameters (after a legacy
    /// or weaker hash verified); the password itself has not changed.
    pub async fn upgrade_password_hash(&self, id: Uuid, hash: &str, now: DateTime<Utc>) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(UPDATE_PASSWORD_HASH).bind(id).bind(hash).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn count_users(&self) -> AppResult<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(COUNT_USERS).fetch_one(pool).await)?)
    }

    /// Roles and effective permissions; a superuser holds every permission that exists.
    pub async fn user_grants(&self, user: &UserRow) -> AppResult<UserGrants> {
        self.grants_of(user.id, user.is_superuser).await
    }

    /// Roles, and permissions: a superuser's are every permission that exists.
    pub async fn grants_of(&self, user_id: Uuid, is_superuser: bool) -> AppResult<UserGrants> {
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

    /// Sets a new password and ends the user's other sessions in the same transaction,
    /// returning the ended session ids.
    pub async fn change_password(
        &self,
        id: Uuid,
        hash: &str,
        keep_session: Option<Uuid>,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Vec<Uuid>> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(SET_PASSWORD).bind(id).bind(hash).bind(now).execute(&mut *tx).await?;
            let ended = revoke_user_sessions_in_tx(tx, id, keep_session, "password_changed", now, revocation_expires).await?;
            sqlx::query(DELETE_USER_TICKETS).bind(id).execute(&mut *tx).await?;
            append_in_tx(tx, audit).await?;
            Ok(ended)
        }).await)
    }
}
