//! What an application learns about a person: the claims of the granted scopes (for
//! the ID token and UserInfo alike), and the ID token itself.

use serde::{Deserialize, Serialize};

use crate::store::UserRow;

/// The claims about a person that the granted scopes allow (OpenID Connect Core 5.4):
/// `sub` always; `profile`: name, preferred_username, updated_at; `email`: email,
/// email_verified; `roles` (Portcullis's own): roles and permissions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserClaims {
    /// The user id: stable across renames and never reassigned.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// The facts about a person the claims are made from, read once per answer.
pub struct Person<'a> {
    pub user: &'a UserRow,
    pub email_verified: bool,
    pub roles: &'a [String],
    pub permissions: &'a [String],
}

impl UserClaims {
    pub fn of(person: &Person<'_>, scopes: &[String]) -> Self {
        let has = |s: &str| scopes.iter().any(|g| g == s);
        let user = person.user;
        let mut c = UserClaims {
            sub: user.id.to_string(),
            ..Default::default()
        };
        if has("profile") {
            c.name = Some(user.full_name.clone().unwrap_or_else(|| user.username.clone()));
            c.preferred_username = Some(user.username.clone());
            c.updated_at = Some(user.updated_at.timestamp());
        }
        if has("email") {
            c.email = Some(user.email.clone());
            c.email_verified = Some(person.email_verified);
        }
        if has("roles") {
            c.roles = Some(person.roles.to_vec());
            c.permissions = Some(person.permissions.to_vec());
        }
        c
    }
}

/// An ID token (OpenID Connect Core 2): who signed in, to which application, when and
/// how, and the claims of the granted scopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    /// The client_id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the person last proved themselves (Unix seconds).
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    /// The client_id again (Core 2: the party the token was issued to).
    pub azp: String,
    /// Binds the ID token to the access token issued with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The browser session at Portcullis that signed in: what logout names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub user: UserClaims,
}
