//! Service accounts: a confidential client allowed the `client_credentials` grant
//! (RFC 6749 4.4) signs itself in with its own credentials and acts with the roles
//! the operator gave it (`client_roles`), no person involved.
//!
//! Its access token is the usual JWT with `sub` = `client_id` = the client's id and
//! `uid` = `sid` = the client's uid: the guard reads it as `Credential::Client`, which
//! `Permission(..)` routes admit by its permissions and `Person` routes refuse. Ending
//! the client's tokens (deleting it, rotating its secret without grace, taking a role
//! away, changing how it authenticates) revokes that uid as a session on every
//! instance, and the client takes a new uid for the tokens that follow.

use chrono::Utc;
use uuid::Uuid;

use super::grants::{TokenResponse, requested_scopes, require_grant};
use super::{Client, GRANT_CLIENT_CREDENTIALS, OAuthFailure, scopes};
use crate::crypto::jwt::AccessClaims;
use crate::domain::audit::AuditEvent;
use crate::domain::{ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// Scopes that belong to a person's sign-in: a service account gets neither an ID
/// token nor a refresh token.
const PERSON_ONLY_SCOPES: [&str; 2] = ["openid", "offline_access"];

impl Portcullis {
    /// The `client_credentials` grant for an authenticated `client`: an access token
    /// for the client itself, with the scopes asked for (default: every scope it is
    /// allowed but `openid` and `offline_access`), its roles and their permissions.
    /// No refresh token and no ID token: the client asks again when it expires.
    /// Recorded in the audit trail as `CLIENT_TOKEN` (a credential issued, as `LOGIN`
    /// is; the client holds it for its whole lifetime, so this is no hotter than
    /// `TOKEN_REFRESH`).
    pub async fn client_credentials_grant(
        &self,
        client: &Client,
        scope: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<TokenResponse> {
        require_grant(client, GRANT_CLIENT_CREDENTIALS)?;
        if client.is_public() {
            // Registration refuses this combination; a public client has no credential.
            return Err(AppError::OAuth(OAuthFailure::UnauthorizedClient(
                "client_credentials is for confidential clients only".into(),
            )));
        }
        let default: Vec<String> = client
            .scopes
            .iter()
            .filter(|s| !PERSON_ONLY_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect();
        let granted = requested_scopes(client, scope, &default)?;
        if let Some(s) = granted.iter().find(|s| PERSON_ONLY_SCOPES.contains(&s.as_str())) {
            return Err(AppError::OAuth(OAuthFailure::InvalidScope(format!(
                "scope {s} is for a person's sign-in, not for client_credentials"
            ))));
        }
        let inner = self.inner();
        let now = Utc::now();
        let iat = now.timestamp();
        let exp = self.access_token_exp_within(iat, client.access_token_ttl)?;
        let permissions = self.store().client_permissions(&client.client_id).await?;
        let scope = scopes::join(&granted);
        let claims = AccessClaims {
            iss: inner.config.tokens.jwt_issuer.clone(),
            sub: client.client_id.clone(),
            aud: inner.config.tokens.jwt_audience.clone(),
            uid: Some(client.uid.to_string()),
            exp,
            iat,
            nbf: iat,
            jti: Uuid::new_v4().to_string(),
            sid: client.uid.to_string(),
            preferred_username: client.name.clone(),
            roles: client.roles.clone(),
            permissions,
            amr: Vec::new(),
            auth_time: None,
            superuser: false,
            client_id: Some(client.client_id.clone()),
            scope: (!scope.is_empty()).then(|| scope.clone()),
            first_party: false,
        };
        let access_token = inner.keys.ring().sign(&claims).map_err(AppError::Internal)?;
        self.log_event(
            AuditEvent::new("CLIENT_TOKEN")
                .actor(client.uid, &client.name)
                .resource("client", &client.client_id)
                .client(ctx)
                .meta("scope", &scope)
                .meta("expires_at", exp),
        )
        .await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: exp.saturating_sub(iat).max(0) as u64,
            refresh_token: None,
            id_token: None,
            scope,
        })
    }
}
