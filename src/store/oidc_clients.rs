//! The registry of applications that sign in with Portcullis (OpenID Connect clients)
//! and the roles a client holds as a service account.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append_in_tx;
use super::sessions::record_revocation;
use super::tx::within;
use super::{AuditFields, Store, conflict_on_unique, on_pool};
use crate::error::AppResult;

row_struct! {
    /// A client as stored; the list columns are JSON arrays of strings, read by
    /// `domain::oidc::clients`.
    #[derive(Debug, Clone)]
    pub struct ClientRow {
        pub id: String,
        pub uid: Uuid,
        pub name: String,
        pub kind: String,
        pub auth_method: String,
        pub redirect_uris: String,
        pub post_logout_redirect_uris: String,
        pub grant_types: String,
        pub scopes: String,
        pub first_party: bool,
        pub backchannel_logout_uri: Option<String>,
        pub jwks: Option<String>,
        pub access_token_ttl: Option<i32>,
        pub refresh_token_ttl: Option<i32>,
        pub secret_hash: Option<Vec<u8>>,
        pub previous_secret_hash: Option<Vec<u8>>,
        pub previous_secret_expires_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }
}

/// Ending a client's service-account tokens: a revocation of `uid` (the one its
/// tokens carried so far), from `now` until `until` (the revocation horizon).
#[derive(Debug, Clone, Copy)]
pub struct EndTokens {
    pub uid: Uuid,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

macro_rules! client_columns {
    () => {
        "id, uid, name, kind, auth_method, redirect_uris, post_logout_redirect_uris, grant_types, \
     scopes, first_party, backchannel_logout_uri, jwks, access_token_ttl, refresh_token_ttl, secret_hash, \
     previous_secret_hash, previous_secret_expires_at, created_at, updated_at"
    };
}
const SELECT_ONE: &str = concat!("SELECT ", client_columns!(), " FROM oidc_clients WHERE id = $1");
const SELECT_ALL: &str = concat!("SELECT ", client_columns!(), " FROM oidc_clients ORDER BY name, id");
const INSERT_CLIENT: &str = "INSERT INTO oidc_clients (id, uid, name, kind, auth_method, redirect_uris, \
     post_logout_redirect_uris, grant_types, scopes, first_party, backchannel_logout_uri, jwks, access_token_ttl, \
     refresh_token_ttl, secret_hash, previous_secret_hash, previous_secret_expires_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";
const UPDATE_CLIENT: &str = "UPDATE oidc_clients SET name = $2, kind = $3, auth_method = $4, redirect_uris = $5, \
     post_logout_redirect_uris = $6, grant_types = $7, scopes = $8, first_party = $9, backchannel_logout_uri = $10, \
     jwks = $11, access_token_ttl = $12, refresh_token_ttl = $13, secret_hash = $14, previous_secret_hash = $15, \
     previous_secret_expires_at = $16, updated_at = $17, uid = $18 WHERE id = $1 AND updated_at = $19";
const DELETE_CLIENT: &str = "DELETE FROM oidc_clients WHERE id = $1";
const END_CLIENT_SESSIONS: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = 'client_deleted' \
     WHERE client_id = $1 AND revoked_at IS NULL RETURNING id";
const CLIENT_ROLES: &str = "SELECT role_name FROM client_roles WHERE client_id = $1 ORDER BY role_name";
const CLEAR_ROLES: &str = "DELETE FROM client_roles WHERE client_id = $1";
const ADD_ROLE: &str = "INSERT INTO client_roles (client_id, role_name) VALUES ($1, $2)";
const ROLE_EXISTS: &str = "SELECT COUNT(*) FROM roles WHERE name = $1";
const CLIENT_PERMISSIONS: &str = "SELECT DISTINCT rp.permission_name FROM client_roles cr \
     JOIN role_permissions rp ON rp.role_name = cr.role_name WHERE cr.client_id = $1 ORDER BY rp.permission_name";
const REFRESH_CLIENT: &str = "SELECT s.client_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
     WHERE r.token_hash = $1";
const PURGE_ASSERTIONS: &str = "DELETE FROM oidc_client_assertions WHERE expires_at < $1";
const INSERT_ASSERTION: &str = "INSERT INTO oidc_client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT DO NOTHING";

impl Store {
    /// Adds a client holding `roles` (each must exist); Conflict when the id is taken.
    pub async fn create_client(&self, c: &ClientRow, roles: &[String], audit: Option<&AuditFields>) -> AppResult<()> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let inserted = sqlx::query(INSERT_CLIENT)
                .bind(&c.id).bind(c.uid).bind(&c.name).bind(&c.kind).bind(&c.auth_method)
                .bind(&c.redirect_uris).bind(&c.post_logout_redirect_uris).bind(&c.grant_types).bind(&c.scopes)
                .bind(c.first_party).bind(&c.backchannel_logout_uri).bind(&c.jwks)
                .bind(c.access_token_ttl).bind(c.refresh_token_ttl).bind(&c.secret_hash)
                .bind(&c.previous_secret_hash).bind(c.previous_secret_expires_at).bind(c.created_at).bind(c.updated_at)
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                return Err(conflict_on_unique(e, "a client with that id exists"));
            }
            for role in roles {
                let n: i64 = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
                if n == 0 {
                    return Err(crate::error::AppError::validation("roles", format!("unknown role {role}")));
                }
                sqlx::query(ADD_ROLE).bind(&c.id).bind(role).execute(&mut *tx).await?;
            }
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(())
        }).await)
    }

    /// Writes every field of `c` (found by its id) and, when given, replaces its roles;
    /// with `end_tokens`, ends its service-account tokens in the same transaction.
    /// Only a client unchanged since `read_at` is written, so a concurrent rotation
    /// is never undone. False when there is no such client or it changed since.
    pub async fn update_client(
        &self,
        c: &ClientRow,
        read_at: DateTime<Utc>,
        roles: Option<&[String]>,
        end_tokens: Option<EndTokens>,
        audit: Option<&AuditFields>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let updated = sqlx::query(UPDATE_CLIENT)
                .bind(&c.id).bind(&c.name).bind(&c.kind).bind(&c.auth_method)
                .bind(&c.redirect_uris).bind(&c.post_logout_redirect_uris).bind(&c.grant_types).bind(&c.scopes)
                .bind(c.first_party).bind(&c.backchannel_logout_uri).bind(&c.jwks)
                .bind(c.access_token_ttl).bind(c.refresh_token_ttl).bind(&c.secret_hash)
                .bind(&c.previous_secret_hash).bind(c.previous_secret_expires_at).bind(c.updated_at).bind(c.uid).bind(read_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            if let Some(roles) = roles {
                sqlx::query(CLEAR_ROLES).bind(&c.id).execute(&mut *tx).await?;
                for role in roles {
                    let n: i64 = sqlx::query_scalar(ROLE_EXISTS).bind(role).fetch_one(&mut *tx).await?;
                    if n == 0 {
                        return Err(crate::error::AppError::validation("roles", format!("unknown role {role}")));
                    }
                    sqlx::query(ADD_ROLE).bind(&c.id).bind(role).execute(&mut *tx).await?;
                }
            }
            if let Some(end) = end_tokens {
                record_revocation(&mut *tx, end.uid, end.now, end.until).await?;
            }
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(true)
        }).await)
    }

    /// Removes a client (its codes, consents and device codes go with it), ends its
    /// service-account tokens and every session its users signed in to it with; the
    /// ended sessions' ids, or None when there was no such client.
    pub async fn delete_client(
        &self,
        c: &ClientRow,
        end: EndTokens,
        audit: Option<&AuditFields>,
    ) -> AppResult<Option<Vec<Uuid>>> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            let deleted = sqlx::query(DELETE_CLIENT).bind(&c.id).execute(&mut *tx).await?.rows_affected();
            if deleted == 0 {
                return Ok(None);
            }
            record_revocation(&mut *tx, end.uid, end.now, end.until).await?;
            let ended: Vec<Uuid> = sqlx::query_scalar(END_CLIENT_SESSIONS).bind(&c.id).bind(end.now).fetch_all(&mut *tx).await?;
            for id in &ended {
                record_revocation(&mut *tx, *id, end.now, end.until).await?;
            }
            append_in_tx(tx, self.audit_key(), audit).await?;
            Ok(Some(ended))
        }).await)
    }

    pub async fn client(&self, id: &str) -> AppResult<Option<ClientRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ClientRow>(SELECT_ONE).bind(id).fetch_optional(pool).await)?)
    }

    pub async fn clients(&self) -> AppResult<Vec<ClientRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ClientRow>(SELECT_ALL).fetch_all(pool).await)?)
    }

    /// The roles a client holds as a service account.
    pub async fn client_roles(&self, id: &str) -> AppResult<Vec<String>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(CLIENT_ROLES).bind(id).fetch_all(pool).await)?)
    }

    /// The permissions the roles of a client grant it as a service account.
    pub async fn client_permissions(&self, id: &str) -> AppResult<Vec<String>> {
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(CLIENT_PERMISSIONS).bind(id).fetch_all(pool).await)?)
    }

    /// Remembers that client `id` used the assertion `jti`, until `expires_at`; false
    /// when it had used it already (a replay). Forgets the assertions expired before
    /// `now` on the way, so the table holds only those still live.
    pub async fn use_client_assertion(
        &self,
        id: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        on_pool!(self, pool => within(pool.begin().await?, async |tx| {
            sqlx::query(PURGE_ASSERTIONS).bind(now).execute(&mut *tx).await?;
            let inserted = sqlx::query(INSERT_ASSERTION)
                .bind(id).bind(jti).bind(expires_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok(inserted == 1)
        }).await)
    }

    /// The application the session of a refresh token was started for; None when
    /// there is no such token or it is Portcullis's own login's.
    pub async fn refresh_token_client(&self, token_hash: &[u8]) -> AppResult<Option<String>> {
        let found: Option<Option<String>> = on_pool!(self, pool => sqlx::query_scalar(REFRESH_CLIENT)
            .bind(token_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(found.flatten())
    }
}
