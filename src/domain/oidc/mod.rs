//! Portcullis as an OpenID provider: applications ("clients") sign people in with
//! Portcullis through the authorization code flow, services sign themselves in with
//! client credentials, and devices without a browser with the device flow.
//! (`domain::oauth` is the other direction: Portcullis signing people in *through* an
//! upstream provider.)
//!
//! One file per concept: `clients` (the registry, secrets, client authentication),
//! `scopes` (what each scope grants), and the flows that build on them.

pub mod authorize;
pub mod claims;
pub mod clients;
pub mod consent;
pub mod device;
pub mod discovery;
pub mod grants;
pub mod introspection;
pub mod issue;
pub mod logout;
pub mod scopes;
pub mod service;
pub mod userinfo;

pub use crate::error::OAuthFailure;
pub use claims::{IdTokenClaims, UserClaims};
pub use clients::{Client, ClientAuth, ClientKind, ClientPatch, ClientSpec, CreatedClient, TokenAuthMethod};
pub use device::{CLI_CLIENT_ID, DeviceAuthorization, DeviceRequest};
pub use grants::TokenResponse;
pub use issue::AppGrant;

/// The grant types a client may be allowed.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const GRANT_TYPES: [&str; 4] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
];
