//! The UserInfo endpoint (OpenID Connect Core 5.3): what an application's access token
//! may learn about its person, the claims of the scopes granted to it.

use super::{UserClaims, scopes};
use crate::domain::{Credential, Portcullis, Principal};
use crate::error::{AppError, AppResult};

/// Why a valid access token may not read UserInfo (`insufficient_scope`, RFC 6750 3.1).
pub const NEEDS_OPENID: &str = "this access token was not issued to an application with the openid scope";

impl Portcullis {
    /// The claims about the caller that its token's scopes allow. Only an access token
    /// issued to an application for a person, with `openid`, may ask (else `Forbidden`:
    /// insufficient scope); an account disabled or deleted since is `InvalidToken`.
    pub async fn userinfo(&self, caller: &Principal) -> AppResult<UserClaims> {
        let granted = scopes::parse(caller.scope.as_deref().unwrap_or_default());
        let for_a_person = caller.credential == Credential::Jwt && caller.client_id.is_some();
        if !for_a_person || !granted.iter().any(|s| s == "openid") {
            return Err(AppError::Forbidden(NEEDS_OPENID.into()));
        }
        let user = self
            .store()
            .user_by_id(caller.user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or_else(|| AppError::InvalidToken("the account is disabled or no longer exists".into()))?;
        self.user_claims(&user, &granted).await
    }
}
