//! The device authorization grant (RFC 8628): a device without a browser (a CLI, a
//! TV) asks for a device code and a short user code; the person types the user code
//! into `/device` in a signed-in browser and approves; the device, polling the token
//! endpoint, then gets the tokens once.
//!
//! User codes are 8 letters from an alphabet without vowels or look-alikes (20^8, about
//! 2.6·10^10 codes), shown as `XXXX-XXXX` and compared ignoring case, dashes and
//! spaces. Guessing them is limited: every wrong, expired or already-used code entered
//! at `/device` counts against the person's account and against the client's IP
//! address (the sign-in throttle's table, under keys of their own); past
//! [`FAILURES_PER_ACCOUNT`] or [`FAILURES_PER_IP`] failures, each within an hour of
//! the last, codes are refused for [`LOCK_MINUTES`] minutes, right or wrong.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::grants::{requested_scopes, require_grant};
use super::{AppGrant, Client, ClientKind, ClientSpec, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, OAuthFailure};
use super::{TokenResponse, scopes};
use crate::crypto::tokens;
use crate::domain::{Actor, BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::{Attempt, DeviceApproval, DeviceCodeRow};

/// The letters of user codes: no vowels (no words), none that look like digits.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;
/// How long a device authorization lives.
pub const DEVICE_CODE_TTL_SECS: i64 = 600;
/// The polling interval a device starts with, and what each too-early poll adds.
pub const POLL_INTERVAL_SECS: i32 = 5;
pub const SLOW_DOWN_SECS: i32 = 5;
/// Wrong user codes tolerated per account and per IP address before a lock.
pub const FAILURES_PER_ACCOUNT: u32 = 10;
pub const FAILURES_PER_IP: u32 = 30;
pub const LOCK_MINUTES: i64 = 15;
/// The built-in public client of `portcullis login --device`.
pub const CLI_CLIENT_ID: &str = "portcullis-cli";

/// The answer of the device authorization endpoint (RFC 8628 3.2).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// As the person types it: `XXXX-XXXX`.
    pub user_code: String,
    pub verification_uri: String,
    /// The verification URI with the user code filled in.
    pub verification_uri_complete: String,
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

/// A pending device authorization, as the verification page shows it.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// `XXXX-XXXX`.
    pub user_code: String,
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// A user code as stored: upper case, without dashes and spaces; None for anything
/// that cannot be one.
pub fn normalise_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

/// `BCDFGHJK` as `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    match code.split_at_checked(USER_CODE_LEN / 2) {
        Some((a, b)) => format!("{a}-{b}"),
        None => code.to_string(),
    }
}

/// A new random user code (rejection sampling keeps every letter equally likely).
fn new_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        for b in bytes {
            // 240 = 12 * 20: the bytes above would favour the first letters.
            if b < 240 && code.len() < USER_CODE_LEN {
                code.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
            }
        }
    }
    code
}

fn invalid_grant(text: &str) -> AppError {
    AppError::OAuth(OAuthFailure::InvalidGrant(text.into()))
}

/// What the page says for any code that does not lead to a pending authorization.
fn unknown_code() -> AppError {
    AppError::NotFound("the code is wrong, has expired or was already used".into())
}

fn failure_keys(session: &BrowserSession, ctx: &ClientContext) -> Vec<(String, u32)> {
    let mut keys = vec![(format!("device:u:{}", session.user_id), FAILURES_PER_ACCOUNT)];
    if let Some(ip) = &ctx.ip {
        keys.push((format!("device:ip:{ip}"), FAILURES_PER_IP));
    }
    keys
}

impl Portcullis {
    /// The device authorization endpoint: a new pending authorization for `client`
    /// (which must allow the device grant) and the scopes it asks for (all it is
    /// allowed when it names none).
    pub async fn start_device_authorization(
        &self,
        client: &Client,
        scope: Option<&str>,
    ) -> AppResult<DeviceAuthorization> {
        require_grant(client, GRANT_DEVICE_CODE)?;
        let granted = requested_scopes(client, scope, &client.scopes)?;
        let device_code = tokens::random_token();
        let now = Utc::now();
        for _ in 0..8 {
            let user_code = new_user_code();
            let row = DeviceCodeRow {
                device_code_hash: tokens::digest(&device_code).to_vec(),
                user_code: user_code.clone(),
                client_id: client.client_id.clone(),
                scope: scopes::join(&granted),
                created_at: now,
                expires_at: now + Duration::seconds(DEVICE_CODE_TTL_SECS),
                interval_secs: POLL_INTERVAL_SECS,
                last_polled_at: None,
                status: "pending".into(),
                user_id: None,
                browser_session_id: None,
                auth_time: None,
                amr: None,
            };
            // Rows a day past their expiry answer nothing any more.
            if self.store().insert_device_code(&row, now - Duration::days(1)).await? {
                let shown = display_user_code(&user_code);
                let uri = self.config().url("/device");
                return Ok(DeviceAuthorization {
                    device_code,
                    verification_uri_complete: format!("{uri}?user_code={shown}"),
                    verification_uri: uri,
                    user_code: shown,
                    expires_in: DEVICE_CODE_TTL_SECS as u64,
                    interval: POLL_INTERVAL_SECS as u64,
                });
            }
        }
        Err(AppError::internal(anyhow::anyhow!("no free user code after 8 draws")))
    }

    /// The pending authorization a person typed the user code of, for the page to
    /// show. A wrong, expired or decided code is 404 and counts as a failure (see the
    /// module); while the account or address is locked every code is 429.
    pub async fn device_request(
        &self,
        typed: &str,
        session: &BrowserSession,
        ctx: &ClientContext,
    ) -> AppResult<DeviceRequest> {
        let now = Utc::now();
        let keys = failure_keys(session, ctx);
        for (key, _) in &keys {
            if let Some(until) = self.store().throttle_locked_until(key, now).await? {
                return Err(too_many(until, now));
            }
        }
        let found = match normalise_user_code(typed) {
            Some(code) => self.store().device_code_by_user_code(&code).await?,
            None => None,
        };
        let row = found.filter(|r| r.status == "pending" && r.expires_at > now);
        let client = match &row {
            Some(r) => self.find_client(&r.client_id).await?,
            None => None,
        };
        let (Some(row), Some(client)) = (row, client) else {
            self.count_device_failure(&keys, now).await?;
            return Err(unknown_code());
        };
        Ok(DeviceRequest {
            user_code: display_user_code(&row.user_code),
            client_id: client.client_id,
            client_name: client.name,
            scopes: scopes::parse(&row.scope),
            expires_at: row.expires_at,
        })
    }

    /// Counts a wrong code against each key; the one that reaches its limit locks.
    async fn count_device_failure(&self, keys: &[(String, u32)], now: DateTime<Utc>) -> AppResult<()> {
        let mut locked = None;
        for (key, limit) in keys {
            let limit = *limit;
            let attempt = self
                .store()
                .begin_login_attempt(key, now, now - Duration::hours(1), |failures| {
                    (failures >= limit).then(|| Duration::minutes(LOCK_MINUTES))
                })
                .await?;
            if let Attempt::Locked(until) = attempt {
                locked = Some(until);
            }
        }
        match locked {
            Some(until) => Err(too_many(until, now)),
            None => Ok(()),
        }
    }

    /// The person's decision on the authorization of `typed` (checked and counted as
    /// [`Self::device_request`] does): approving records who, from which browser
    /// session, when they last proved themselves there and how; denying ends it.
    pub async fn decide_device(
        &self,
        typed: &str,
        approve: bool,
        session: &BrowserSession,
        ctx: &ClientContext,
    ) -> AppResult<DeviceRequest> {
        let request = self.device_request(typed, session, ctx).await?;
        let code = normalise_user_code(typed).ok_or_else(unknown_code)?;
        let approval = approve
            .then(|| -> AppResult<DeviceApproval> {
                Ok(DeviceApproval {
                    user_id: session.user_id,
                    browser_session_id: session.session_id,
                    auth_time: session.verified_at,
                    amr: serde_json::to_string(&session.amr).map_err(AppError::internal)?,
                })
            })
            .transpose()?;
        let by = Actor::user(session.user_id, &session.username, ctx);
        let record = self.audit_record(
            by.event(if approve { "DEVICE_APPROVE" } else { "DEVICE_DENY" })
                .resource("client", &request.client_id)
                .meta("scope", scopes::join(&request.scopes)),
        );
        if !self
            .store()
            .decide_device_code(&code, Utc::now(), approval.as_ref(), record.as_ref())
            .await?
        {
            // Expired or decided in between.
            return Err(unknown_code());
        }
        Ok(request)
    }

    /// The device grant at the token endpoint (RFC 8628 3.4, 3.5): the device code
    /// must be `client`'s; a poll sooner than the interval is `slow_down` (and the
    /// interval grows), then `expired_token`, `authorization_pending` or
    /// `access_denied` as the authorization stands; an approval answers the tokens
    /// exactly once, and any later poll is `invalid_grant`.
    pub async fn poll_device_code(
        &self,
        client: &Client,
        device_code: &str,
        ctx: &ClientContext,
    ) -> AppResult<TokenResponse> {
        require_grant(client, GRANT_DEVICE_CODE)?;
        let unknown = || invalid_grant("unknown device code");
        if !tokens::looks_like_token(device_code) {
            return Err(unknown());
        }
        let hash = tokens::digest(device_code);
        let row = self.store().device_code(&hash).await?.ok_or_else(unknown)?;
        if row.client_id != client.client_id {
            return Err(unknown());
        }
        if row.status == "used" {
            return Err(invalid_grant("the device code was already used"));
        }
        let now = Utc::now();
        if row.expires_at <= now {
            return Err(AppError::OAuth(OAuthFailure::ExpiredToken));
        }
        if !self
            .store()
            .poll_device_code(&hash, now, row.interval_secs, SLOW_DOWN_SECS)
            .await?
        {
            return Err(AppError::OAuth(OAuthFailure::SlowDown));
        }
        match row.status.as_str() {
            "pending" => return Err(AppError::OAuth(OAuthFailure::AuthorizationPending)),
            "denied" => {
                return Err(AppError::OAuth(OAuthFailure::AccessDenied(
                    "the person denied the request".into(),
                )));
            }
            "approved" => {}
            _ => return Err(unknown()),
        }
        let (Some(user_id), Some(browser_session_id), Some(auth_time)) =
            (row.user_id, row.browser_session_id, row.auth_time)
        else {
            return Err(AppError::internal(anyhow::anyhow!(
                "approved device code without its person"
            )));
        };
        if !self.store().use_device_code(&hash).await? {
            return Err(invalid_grant("the device code was already used"));
        }
        let grant = AppGrant {
            user_id,
            scopes: scopes::parse(&row.scope),
            browser_session_id,
            auth_time,
            amr: row
                .amr
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
            nonce: None,
        };
        let (tokens, _) = self.issue_app_tokens(client, &grant, ctx).await?;
        Ok(tokens)
    }

    /// Registers the built-in public client of `portcullis login --device`
    /// ([`CLI_CLIENT_ID`]) when it is absent: device and refresh grants, every scope
    /// (the CLI's tokens carry the person's roles, as a password login's do). An
    /// operator who wants no device logins for the CLI removes the device grant from
    /// it rather than deleting it, which the next start would undo.
    pub async fn ensure_cli_client(&self) -> AppResult<()> {
        if self.find_client(CLI_CLIENT_ID).await?.is_some() {
            return Ok(());
        }
        let spec = ClientSpec {
            client_id: Some(CLI_CLIENT_ID.into()),
            name: "Portcullis command line".into(),
            kind: Some(ClientKind::Public),
            grant_types: Some(vec![GRANT_DEVICE_CODE.into(), GRANT_REFRESH_TOKEN.into()]),
            scopes: Some(scopes::SCOPES.iter().map(|s| s.to_string()).collect()),
            first_party: true,
            ..Default::default()
        };
        match self.create_client(spec, &Actor::system()).await {
            // Another instance sharing the database registered it first.
            Ok(_) | Err(AppError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn too_many(until: DateTime<Utc>, now: DateTime<Utc>) -> AppError {
    AppError::TooManyRequests {
        retry_after: ((until - now).num_seconds().max(1)) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_normalised_and_checked() {
        assert_eq!(normalise_user_code("bcdf-ghjk").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalise_user_code(" BCDF GHJK ").as_deref(), Some("BCDFGHJK"));
        for bad in ["", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1", "BCDF-GHJÄ"] {
            assert_eq!(normalise_user_code(bad), None, "{bad}");
        }
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn new_user_codes_use_the_alphabet() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(normalise_user_code(&code).as_deref(), Some(code.as_str()));
        }
    }
}
