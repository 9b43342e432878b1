//! Accounts: the rows of `users`, every query that reads or writes one, and the
//! changes an administrator makes to them. What a user is granted is in `rbac`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::admins::keeping_an_admin;
use super::audit::append_in_tx;
use super::credentials::record_event;
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
        /// When all its sessions last ended at once (`sessions::revoke_user_sessions_in_tx`).
        pub sessions_ended_at: Option<DateTime<Utc>>,
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

/// How a new password ends the sessions the old one opened (see `Store::set_password`).
struct PasswordChange {
    /// The session the change was made from, which lives on.
    keep_session: Option<Uuid>,
    /// Why the other sessions ended, as recorded on them.
    reason: &'static str,
    now: DateTime<Utc>,
    revocation_expires: DateTime<Utc>,
}

/// The columns of a `UserRow`, as every query that reads one lists them.
const USER_COLUMNS: &str = "id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at, sessions_ended_at";
// The statements that read whole rows are built once, at first use: `concat!` takes
// only literals, and `USER_COLUMNS` is a constant so that the list is written once.
static SELECT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));

/// The statements that compare or sort names without regard to case. Usernames and
/// e-mails are ASCII (checked on input), and every such comparison folds them by ASCII
/// rules, as the lockout key does and the unique indexes of migration 0010 are built:
/// SQLite's lower() knows no other, PostgreSQL's follows the column's collation unless
/// told "C" (a Turkish one lowers `I` to `ı`, so "ivan" would not find "IVAN").
struct Folded {
    /// A username match wins over an email match: usernames may look like emails. `$1`
    /// is ASCII lower-cased by the caller.
    by_login: String,
    by_email: String,
    username_taken: String,
    /// A changed email is no longer a proven one (a change of case is no change).
    update_profile: String,
    /// Users whose username, email or full name contains `$1`, given as the LIKE
    /// pattern `$2` (see `like_pattern`); an empty `$1` matches everyone. Full names
    /// are any text, lowered as the database lowers text.
    matching: String,
    count_matching: String,
    by_username: String,
    by_email_order: String,
}

impl Folded {
    fn new(collate: &str) -> Self {
        let fold = |expr: &str| format!("lower({expr}{collate})");
        let (username, email) = (fold("username"), fold("email"));
        let matching = format!(
            "($1 = '' OR {username} LIKE $2 ESCAPE '\\' OR {email} LIKE $2 ESCAPE '\\' OR lower(COALESCE(full_name, '')) LIKE $2 ESCAPE '\\')"
        );
        Self {
            by_login: format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {username} = $1 OR {email} = $1 ORDER BY CASE WHEN {username} = $1 THEN 0 ELSE 1 END LIMIT 1"
            ),
            by_email: format!("SELECT {USER_COLUMNS} FROM users WHERE {email} = {}", fold("$1")),
            username_taken: format!("SELECT EXISTS (SELECT 1 FROM users WHERE {username} = {})", fold("$1")),
            update_profile: format!(
                "UPDATE users SET full_name = $2, email = $3, updated_at = $4, email_verified = CASE WHEN {email} = {} THEN email_verified ELSE FALSE END WHERE id = $1",
                fold("$3")
            ),
            count_matching: format!("SELECT COUNT(*) FROM users WHERE {matching}"),
            matching,
            by_username: username,
            by_email_order: email,
        }
    }
}

static FOLDED_SQLITE: LazyLock<Folded> = LazyLock::new(|| Folded::new(""));
static FOLDED_POSTGRES: LazyLock<Folded> = LazyLock::new(|| Folded::new(r#" COLLATE "C""#));

impl Store {
    fn folded(&self) -> &'static Folded {
        match self {
            Store::Sqlite(..) => &FOLDED_SQLITE,
            Store::Postgres(..) => &FOLDED_POSTGRES,
        }
    }
}

static INSERT_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO users (id, username, email, full_name, password_hash, is_superuser, is_active, created_at, updated_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7, $8) RETURNING {USER_COLUMNS}"
    )
});

const INSERT_USER_ROLE: &str = "INSERT INTO user_roles (user_id, role_name, assigned_by, assigned_at) VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING";
const UPDATE_PASSWORD_HASH: &str = "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1";
const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3 WHERE id = $1";
const COUNT_USERS: &str = "SELECT COUNT(*) FROM users";
// The settings part of `$2a$`/`$2b$`/`$2y$` hashes (`$2b$12$`) and of passlib's
// `$bcrypt-sha256$v=2,t=2b,r=12$` (a one-digit cost brings a salt character along).
const BCRYPT_COSTS: &str = "SELECT DISTINCT CASE WHEN password_hash LIKE '$2_$%' THEN substr(password_hash, 1, 7) ELSE substr(password_hash, 1, 29) END FROM users WHERE password_hash LIKE '$2_$%' OR password_hash LIKE '$bcrypt-sha256$%'";
const SET_EMAIL_VERIFIED: &str = "UPDATE users SET email_verified = TRUE WHERE id = $1";
const EMAIL_VERIFIED: &str = "SELECT COUNT(*) FROM users WHERE id = $1 AND email_verified";
const SET_SUPERUSER: &str = "UPDATE users SET is_superuser = $2, updated_at = $3 WHERE id = $1";
// Only a real change counts (and is audited): disabling a disabled user changes nothing.
const SET_ACTIVE: &str = "UPDATE users SET is_active = $2, updated_at = $3 WHERE id = $1 AND is_active <> $2";
const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";

/// `q` as a case-insensitive LIKE pattern for "contains", its wildcards escaped.
fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

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
            let row = sqlx::query_as::<_, UserRow>(INSERT_USER.as_str())
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
            append_in_tx(tx, self.audit_key(), record.as_ref()).await?;
            Ok(row)
        }).await);
        match inserted.map_err(|e| conflict_on_unique(e, "taken")) {
            Err(AppError::Conflict(_)) => {
                let username_taken: bool = on_pool!(self, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(self.folded().username_taken.as_str())).bind(&new.username).fetch_one(pool).await)?;
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
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(self.folded().by_email.as_str())).bind(email).fetch_optional(pool).await)?,
        )
    }

    /// Whether the user's email was proven (see `NewUser::email_verified`).
    pub async fn email_verified(&self, id: Uuid) -> AppResult<bool> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(EMAIL_VERIFIED).bind(id).fetch_one(pool).await)? > 0)
    }

    pub async fn user_by_id(&self, id: Uuid) -> AppResult<Option<UserRow>> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SELECT_BY_ID.as_str()).bind(id).fetch_optional(pool).await)?,
        )
    }

    /// Finds the account a login name refers to: a username, or else an email.
    pub async fn user_by_login(&self, login: &str) -> AppResult<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(self.folded().by_login.as_str());
        let login = login.to_ascii_lowercase();
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sql).bind(&login).fetch_optional(pool).await)?)
    }

    /// Replaces a hash with an equivalent one at current parameters (after a legacy
    /// or weaker hash verified); the password itself has not changed.
    pub async fn upgrade_password_hash(&self, id: Uuid, hash: &str, now: DateTime<Utc>) -> AppResult<()> {
        on_pool!(self, pool => sqlx::query(UPDATE_PASSWORD_HASH).bind(id).bind(hash).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The beginnings of the bcrypt and bcrypt-sha256 hashes stored (imported users
    /// who have not signed in since), which hold their costs (`crypto::password::bcrypt_cost`).
    pub async fn bcrypt_costs(&self) -> AppResult<Vec<String>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(BCRYPT_COSTS).fetch_all(pool).await)?)
    }

    pub async fn count_users(&self) -> AppResult<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(COUNT_USERS).fetch_one(pool).await)?)
    }

    /// The user's own new password: ends their other sessions and open MFA tickets in
    /// the same transaction, returning the ended session ids.
    pub async fn change_password(
        &self,
        id: Uuid,
        hash: &str,
        keep_session: Option<Uuid>,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Vec<Uuid>> {
        let change = PasswordChange {
            keep_session,
            reason: "password_changed",
            now,
            revocation_expires,
        };
        let (_, ended) = self.set_password(id, hash, change, |_| audit).await?;
        Ok(ended)
    }

    /// A password chosen by an administrator: ends every session of the user and open
    /// MFA tickets in the same transaction, returning the ended session ids; None when
    /// there is no such user. Login lockouts are kept per login name, not per user, so
    /// clearing them is the caller's part (`Portcullis::clear_lockout`).
    pub async fn admin_set_password(
        &self,
        id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
        revocation_expires: DateTime<Utc>,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<Vec<Uuid>>> {
        let change = PasswordChange {
            keep_session: None,
            reason: "password_reset",
            now,
            revocation_expires,
        };
        let (changed, ended) = self
            .set_password(id, hash, change, |changed| audit.filter(|_| changed))
            .await?;
        Ok(changed.then_some(ended))
    }

    /// The one password-setting transaction: sets the hash and ends what the old
    /// password let in, every session of the user but `keep_session` and open MFA
    /// tickets; the audit record is the one `audit` picks, given whether there was such
    /// a user. Returns that, and the ended session ids.
    async fn set_password<'a>(
        &self,
        id: Uuid,
        hash: &str,
        change: PasswordChange,
        audit: impl FnOnce(bool) -> Option<&'a AuditFields>,
    ) -> AppResult<(bool, Vec<Uuid>)> {
        let PasswordChange {
            keep_session,
            reason,
            now,
            revocation_expires,
        } = change;
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let changed = sqlx::query(SET_PASSWORD).bind(id).bind(hash).bind(now).execute(&mut *tx).await?.rows_affected() > 0;
            let ended = revoke_user_sessions_in_tx(tx, id, keep_session, reason, now, revocation_expires).await?;
            sqlx::query(DELETE_USER_TICKETS).bind(id).execute(&mut *tx).await?;
            append_in_tx(tx, self.audit_key(), audit(changed)).await?;
            Ok((changed, ended))
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
        let update_profile = sqlx::AssertSqlSafe(self.folded().update_profile.as_str());
        on_pool!(self, pool => keeping_an_admin(pool, "cannot remove superuser", async |tx| {
            let updated = sqlx::query(update_profile).bind(id).bind(full_name).bind(email).bind(now).execute(&mut *tx).await;
            let found = match updated {
                Ok(r) => r.rows_affected() > 0,
                Err(e) => return Err(conflict_on_unique(e, "email is already registered")),
            };
            if let Some(su) = superuser {
                sqlx::query(SET_SUPERUSER).bind(id).bind(su).bind(now).execute(&mut *tx).await?;
            }
            record_event(tx, "user", &id.to_string(), now).await?;
            append_in_tx(tx, self.audit_key(), audit.filter(|_| found)).await?;
            let user: Option<UserRow> = sqlx::query_as(SELECT_BY_ID.as_str()).bind(id).fetch_optional(&mut *tx).await?;
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
            append_in_tx(tx, self.audit_key(), audit.filter(|_| changed)).await?;
            let user: Option<UserRow> = sqlx::query_as(SELECT_BY_ID.as_str()).bind(id).fetch_optional(&mut *tx).await?;
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
            append_in_tx(tx, self.audit_key(), audit.filter(|_| deleted)).await?;
            Ok(deleted.then_some(ended))
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
        let folded = self.folded();
        let column = match sort {
            UserSort::Username => folded.by_username.as_str(),
            UserSort::Email => folded.by_email_order.as_str(),
            UserSort::CreatedAt => "created_at",
        };
        let matching = &folded.matching;
        let direction = if descending { "DESC" } else { "ASC" };
        // Column and direction come from the fixed lists above, never from input.
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {matching} ORDER BY {column} {direction}, id LIMIT $3 OFFSET $4"
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
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(folded.count_matching.as_str())).bind(q).bind(&pattern).fetch_one(pool).await?;
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
