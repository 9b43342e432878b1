//! Introspection (RFC 7662) and revocation (RFC 7009) for registered clients: the
//! same operations as `/auth/introspect` and `/auth/revoke`
//! (`domain::credentials`), with the client authenticated first and held to what
//! is its own.

use super::{Client, OAuthFailure};
use crate::crypto::tokens;
use crate::domain::authn::{Credential, TokenKind};
use crate::domain::credentials::Introspection;
use crate::domain::{ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

impl Portcullis {
    /// What `token` is, for a confidential client (a resource server checking the
    /// tokens it is sent, whichever application they were issued to). A public client
    /// may not introspect: anyone can be it.
    pub async fn introspect_for_client(&self, client: &Client, token: &str) -> AppResult<Introspection> {
        if client.is_public() {
            return Err(AppError::OAuth(OAuthFailure::UnauthorizedClient(
                "a public client may not introspect tokens".into(),
            )));
        }
        self.introspect(token).await
    }

    /// Revokes `token` when it was issued to `client` (RFC 7009 2.1): a refresh token
    /// of a session started for it, or an access token carrying its client_id. Any
    /// other token, another application's, a person's own login, an API key, is left
    /// alone with the same empty answer, so a client learns nothing of it.
    ///
    /// A service account's access token carries the client's uid as its session; it
    /// is not revoked one by one (rotating the secret without grace ends them all).
    pub async fn revoke_for_client(&self, client: &Client, token: &str, ctx: &ClientContext) -> AppResult<()> {
        let issued_to_client = match TokenKind::of(token) {
            TokenKind::Unprefixed if tokens::looks_like_token(token) => {
                self.store()
                    .refresh_token_client(&tokens::digest(token))
                    .await?
                    .as_deref()
                    == Some(client.client_id.as_str())
            }
            TokenKind::Unprefixed => match self.authenticate_token(token).await {
                Ok(p) => {
                    !matches!(p.credential, Credential::Client(_))
                        && p.client_id.as_deref() == Some(client.client_id.as_str())
                }
                Err(_) => false,
            },
            _ => false,
        };
        if issued_to_client {
            self.revoke_credential(token, ctx).await?;
        }
        Ok(())
    }
}
