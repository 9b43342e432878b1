//! Issuing an application's tokens for a person: at a code exchange or an approved
//! device, and again at each refresh. An application's tokens belong to a session of
//! their own (a `sessions` row naming the client, its scopes and the browser session
//! that authorized it), so rotation, reuse detection, revocation, "end this session"
//! and logout apply to them exactly as to Portcullis's own login.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::claims::{IdTokenClaims, Person, UserClaims};
use super::{Client, GRANT_REFRESH_TOKEN, OAuthFailure, TokenResponse, scopes};
use crate::crypto::jwt::at_hash;
use crate::domain::sessions::{AppAudience, AppSession, Subject};
use crate::domain::{AuditEvent, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::UserRow;

/// What a person granted an application, when its tokens are first issued.
#[derive(Debug, Clone)]
pub struct AppGrant {
    pub user_id: Uuid,
    pub scopes: Vec<String>,
    /// The browser session that signed in and approved (the ID token's `sid`).
    pub browser_session_id: Uuid,
    /// When the person last proved themselves in that browser session.
    pub auth_time: DateTime<Utc>,
    pub amr: Vec<String>,
    /// The authorization request's nonce, echoed in the ID token.
    pub nonce: Option<String>,
}

fn invalid_grant(text: &str) -> AppError {
    AppError::OAuth(OAuthFailure::InvalidGrant(text.into()))
}

/// Whether the application gets a refresh token: it asked for `offline_access`, or
/// it is the operator's own (first party), and it may use the refresh grant at all.
fn offers_refresh(client: &Client, scopes: &[String]) -> bool {
    client.allows_grant(GRANT_REFRESH_TOKEN) && (client.first_party || scopes.iter().any(|s| s == "offline_access"))
}

impl Portcullis {
    /// Starts the application's session for the person and answers its first tokens:
    /// an access token, an ID token with the `openid` scope, and a refresh token when
    /// [`offers_refresh`] says so. Also returns the new session's id (what a replayed
    /// code ends).
    pub async fn issue_app_tokens(
        &self,
        client: &Client,
        grant: &AppGrant,
        ctx: &ClientContext,
    ) -> AppResult<(TokenResponse, Uuid)> {
        let user = self.active_user(grant.user_id).await?;
        // The browser session that approved must still be live: one that ended in
        // the meantime (logout) has already told its applications, and a session
        // started now would outlive it unnoticed.
        let approved_in = self.store().session_by_id(grant.browser_session_id).await?;
        if !approved_in.is_some_and(|s| s.revoked_at.is_none() && s.expires_at > Utc::now() && s.user_id == user.id) {
            return Err(invalid_grant("the sign-in that approved this has ended"));
        }
        let scope = scopes::join(&grant.scopes);
        let event = AuditEvent::new("APP_SIGN_IN")
            .meta("client_id", &client.client_id)
            .meta("scope", &scope)
            .meta("amr", &grant.amr);
        let app = AppSession {
            client_id: &client.client_id,
            scope: &scope,
            browser_session_id: grant.browser_session_id,
            auth_time: grant.auth_time,
            refresh_ttl: client.refresh_token_ttl,
        };
        let (session_id, refresh, now) = self.open_session(&user, &grant.amr, Some(app), event, ctx).await?;
        let tokens = self
            .app_tokens(
                client,
                &user,
                &grant.scopes,
                session_id,
                grant.browser_session_id,
                grant.amr.clone(),
                grant.auth_time,
                grant.nonce.clone(),
                now,
            )
            .await?;
        let refresh_token = offers_refresh(client, &grant.scopes).then_some(refresh);
        Ok((
            TokenResponse {
                refresh_token,
                ..tokens
            },
            session_id,
        ))
    }

    /// The refresh grant for an application: rotates the refresh token (only one of
    /// this client's sessions; reuse ends the session as for any refresh token) and
    /// answers new tokens for the session's scopes, or fewer when `scope` narrows them
    /// (RFC 6749 6: never more).
    pub async fn refresh_app_tokens(
        &self,
        client: &Client,
        refresh_token: &str,
        scope: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<TokenResponse> {
        // Refused before the token is spent: a client that got no successor would
        // present the spent one again and end its own session as a reuse.
        self.access_token_exp_within(Utc::now().timestamp(), client.access_token_ttl)?;
        let (session, successor, now) = self
            .rotate_refresh(refresh_token, Some((&client.client_id, client.refresh_token_ttl)), ctx)
            .await
            .map_err(|e| match e {
                AppError::InvalidCredentials(text) => invalid_grant(&text),
                // The session ended: a role now demands a second factor.
                AppError::MfaEnrollmentRequired => {
                    invalid_grant("sign in again: the account now needs a second factor")
                }
                other => other,
            })?;
        // What the client may still be given: an administrator may have taken a
        // scope away from it since.
        let mut granted = scopes::parse(session.scope.as_deref().unwrap_or_default());
        granted.retain(|s| client.allows_scope(s));
        let asked = match scope.map(scopes::parse).filter(|s| !s.is_empty()) {
            Some(asked) => {
                if let Some(extra) = asked.iter().find(|s| !granted.contains(s)) {
                    return Err(AppError::OAuth(OAuthFailure::InvalidScope(format!(
                        "scope {extra:.60} was not granted to this session"
                    ))));
                }
                asked
            }
            None => granted,
        };
        let user = self.active_user(session.user_id).await?;
        let amr: Vec<String> = serde_json::from_str(&session.amr).unwrap_or_default();
        let browser = session.browser_session_id.unwrap_or(session.session_id);
        let tokens = self
            .app_tokens(
                client,
                &user,
                &asked,
                session.session_id,
                browser,
                amr,
                session.auth_time,
                None,
                now,
            )
            .await?;
        Ok(TokenResponse {
            refresh_token: Some(successor),
            ..tokens
        })
    }

    /// The access token and (with `openid`) the ID token of an application session.
    #[allow(clippy::too_many_arguments)]
    async fn app_tokens(
        &self,
        client: &Client,
        user: &UserRow,
        granted: &[String],
        session_id: Uuid,
        browser_session_id: Uuid,
        amr: Vec<String>,
        auth_time: DateTime<Utc>,
        nonce: Option<String>,
        now: DateTime<Utc>,
    ) -> AppResult<TokenResponse> {
        let scope = scopes::join(granted);
        let with_grants = granted.iter().any(|s| s == "roles");
        let audience = AppAudience {
            client_id: &client.client_id,
            scope: &scope,
            with_grants,
            first_party: client.first_party,
            ttl: client.access_token_ttl,
        };
        let subject = Subject {
            id: user.id,
            username: &user.username,
            superuser: user.is_superuser,
        };
        let (access_token, expires_in) = self
            .mint_access_token(&subject, session_id, amr.clone(), auth_time, now, Some(&audience))
            .await?;
        let id_token = if granted.iter().any(|s| s == "openid") {
            let claims = self.user_claims(user, granted).await?;
            let ring = self.inner().keys.ring();
            let iat = now.timestamp();
            let id = IdTokenClaims {
                iss: self.config().tokens.jwt_issuer.clone(),
                aud: client.client_id.clone(),
                exp: iat + expires_in as i64,
                iat,
                auth_time: auth_time.timestamp(),
                nonce,
                amr,
                azp: client.client_id.clone(),
                at_hash: Some(at_hash(ring.current().algorithm.jwt(), &access_token)),
                sid: Some(browser_session_id.to_string()),
                user: claims,
            };
            Some(ring.sign(&id).map_err(AppError::Internal)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: None,
            id_token,
            scope,
        })
    }

    /// The claims of `granted` scopes about `user`, for the ID token and UserInfo.
    pub async fn user_claims(&self, user: &UserRow, granted: &[String]) -> AppResult<UserClaims> {
        let has = |s: &str| granted.iter().any(|g| g == s);
        let email_verified = if has("email") {
            self.store().email_verified(user.id).await?
        } else {
            false
        };
        let grants = if has("roles") {
            self.grants(user.id, user.is_superuser).await?
        } else {
            Default::default()
        };
        Ok(UserClaims::of(
            &Person {
                user,
                email_verified,
                roles: &grants.roles,
                permissions: &grants.permissions,
            },
            granted,
        ))
    }

    /// The account, if it still exists and is enabled; else the grant is void.
    async fn active_user(&self, id: Uuid) -> AppResult<UserRow> {
        self.store()
            .user_by_id(id)
            .await?
            .filter(|u| u.is_active)
            .ok_or_else(|| invalid_grant("the account is disabled or no longer exists"))
    }
}
