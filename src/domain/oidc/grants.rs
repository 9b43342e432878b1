//! What the token endpoint answers for every grant (RFC 6749 5.1, OpenID Connect
//! Core 3.1.3.3), and the checks every grant shares.

use serde::Serialize;

use super::{Client, OAuthFailure, scopes};
use crate::error::{AppError, AppResult};

/// A successful token response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The granted scopes, space-separated.
    pub scope: String,
}

/// The client may use `grant`, or `unauthorized_client`.
pub fn require_grant(client: &Client, grant: &str) -> AppResult<()> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(AppError::OAuth(OAuthFailure::UnauthorizedClient(format!(
            "client {} may not use the {grant} grant",
            client.client_id
        ))))
    }
}

/// The scopes a request asks for, each allowed to the client; `invalid_scope` names
/// the first that is not. An absent or empty `scope` asks for `default`.
pub fn requested_scopes(client: &Client, scope: Option<&str>, default: &[String]) -> AppResult<Vec<String>> {
    let asked = scope.map(scopes::parse).filter(|s| !s.is_empty());
    let asked = asked.unwrap_or_else(|| default.to_vec());
    if let Some(bad) = asked.iter().find(|s| !client.allows_scope(s)) {
        return Err(AppError::OAuth(OAuthFailure::InvalidScope(format!(
            "scope {bad:.60} is not allowed for this client"
        ))));
    }
    Ok(asked)
}
