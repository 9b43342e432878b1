//! Multi-factor authentication: TOTP enrolment, recovery codes, the second step of a
//! login, the enrolment-only token of users whose role demands MFA, and step-up.
//!
//! A password login of a user with a confirmed factor yields no session, only an
//! `mfa_token` (`pcm_...`, 5 minutes, single use, at most five wrong codes). The
//! session starts when `/auth/mfa/verify` gets a current code or a recovery code; its
//! `amr` then says which (`["pwd","otp"]` or `["pwd","rc"]`) and `auth_time` is that
//! moment, which is what step-up checks. Every code attempt counts toward the login
//! lockout of the account's name.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::authn::{Credential, ENROLLMENT_TOKEN_PREFIX, MFA_TOKEN_PREFIX, Principal};
use super::{Actor, ClientContext, Portcullis, TokenPair};
use crate::crypto::{tokens, totp};
use crate::error::{AppError, AppResult};
use crate::store::UserRow;

const SEAL_CONTEXT: &str = "portcullis:totp";

/// What a user's TOTP secret is sealed under: bound to the user, so a sealed secret
/// copied onto another row won't open.
pub(crate) fn totp_context(user_id: Uuid) -> String {
    format!("{SEAL_CONTEXT}:{user_id}")
}
/// Wrong codes that burn an `mfa_token`.
pub const MAX_CODE_FAILURES: i32 = 5;
const RECOVERY_CODES: usize = 10;
const VERIFY_FAILED: &str = "the code is not valid, or the mfa_token is invalid, expired or used";

/// A second factor as presented.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactor<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

impl<'a> SecondFactor<'a> {
    /// What a person typed into a field that takes either: six digits (spaces aside)
    /// are a TOTP code, anything else a recovery code.
    pub fn typed(input: &'a str) -> Self {
        let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if totp::is_code_shaped(&code) {
            Self::Totp(input)
        } else {
            Self::RecoveryCode(input)
        }
    }
}

/// What enrolment hands the user's authenticator app.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpEnrollment {
    /// The secret in base32, for typing in by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
    /// The URI as a PNG QR code, as a `data:image/png;base64,` URL.
    pub qr_png: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MfaStatus {
    /// `none`, `pending` (enrolled, not confirmed) or `enabled`.
    pub totp: &'static str,
    pub enabled_at: Option<DateTime<Utc>>,
    pub recovery_codes_left: i64,
    /// Whether the user's roles demand MFA (`MFA_REQUIRED_ROLES`).
    pub required: bool,
}

/// Ten recovery codes: 16 base32 characters (80 bits) each, shown as `xxxx-xxxx-xxxx-xxxx`.
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rand::fill(&mut bytes);
            let chars: Vec<char> = bytes.iter().map(|b| ALPHABET[(*b & 31) as usize] as char).collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The stored digest of a recovery code: case, dashes and spaces do not matter.
fn recovery_hash(code: &str) -> Option<[u8; 32]> {
    let normalized: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (normalized.len() == 16
        && normalized
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    .then(|| tokens::digest(&normalized))
}

/// Factors are managed by the person, from a login (or an enrolment token), never
/// with an API key or temporary token.
pub fn require_person(caller: &Principal) -> AppResult<()> {
    match caller.credential {
        Credential::Jwt if caller.is_delegated() => Err(AppError::Forbidden(
            "second factors are managed from a login session, not with an application's token".into(),
        )),
        Credential::Jwt | Credential::MfaEnrollment => Ok(()),
        _ => Err(AppError::Forbidden(
            "second factors are managed from a login session, not with an API key or temporary token".into(),
        )),
    }
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

impl Portcullis {
    /// Sealed for this user only: a sealed secret copied onto another row won't open.
    fn seal_totp(&self, user_id: Uuid, secret: &[u8]) -> AppResult<Vec<u8>> {
        self.keys()
            .master()?
            .seal(secret, &totp_context(user_id))
            .map_err(AppError::Internal)
    }

    fn open_totp(&self, user_id: Uuid, sealed: &[u8]) -> AppResult<Vec<u8>> {
        self.keys()
            .master()?
            .open(sealed, &totp_context(user_id))
            .map_err(AppError::Internal)
    }

    /// Whether the user's roles demand MFA (superusers count as holding `admin`).
    pub async fn mfa_required_for(&self, user: &UserRow) -> AppResult<bool> {
        self.mfa_required(user.id, user.is_superuser).await
    }

    pub(crate) async fn mfa_required(&self, user_id: Uuid, is_superuser: bool) -> AppResult<bool> {
        let required = &self.config().mfa.required_roles;
        if required.is_empty() {
            return Ok(false);
        }
        if is_superuser && required.iter().any(|r| r == super::privilege::ADMIN_ROLE) {
            return Ok(true);
        }
        let grants = self.grants(user_id, is_superuser).await?;
        Ok(grants.roles.iter().any(|r| required.contains(r)))
    }

    /// Checks a second factor of `user`: a TOTP code of a step not used before, or an
    /// unused recovery code (spent by this call). The amr value on success, else the
    /// reason for the audit trail.
    pub(crate) async fn check_second_factor(
        &self,
        user: &UserRow,
        factor: SecondFactor<'_>,
    ) -> AppResult<Result<&'static str, &'static str>> {
        let now = Utc::now();
        match factor {
            SecondFactor::Totp(code) => {
                let Some(row) = self.store().totp(user.id).await?.filter(|t| t.confirmed_at.is_some()) else {
                    return Ok(Err("no_factor"));
                };
                let secret = self.open_totp(user.id, &row.secret)?;
                match totp::check(&secret, code, unix(now)).and_then(|s| i64::try_from(s).ok()) {
                    None => Ok(Err("bad_code")),
                    Some(step) if step <= row.last_step => Ok(Err("replayed_code")),
                    Some(step) => Ok(if self.store().use_totp_step(user.id, step).await? {
                        Ok("otp")
                    } else {
                        Err("replayed_code")
                    }),
                }
            }
            SecondFactor::RecoveryCode(code) => match recovery_hash(code) {
                Some(hash) if self.store().use_recovery_code(user.id, &hash, now).await? => Ok(Ok("rc")),
                _ => Ok(Err("bad_recovery_code")),
            },
        }
    }

    /// The second step of a login: spends the `mfa_token` for a session.
    pub async fn verify_mfa(
        &self,
        mfa_token: &str,
        factor: SecondFactor<'_>,
        ctx: &ClientContext,
    ) -> AppResult<TokenPair> {
        let rejected = || AppError::InvalidCredentials(VERIFY_FAILED.into());
        let well_formed = mfa_token
            .strip_prefix(MFA_TOKEN_PREFIX)
            .is_some_and(tokens::looks_like_token);
        if !well_formed {
            return Err(rejected());
        }
        let hash = tokens::digest(mfa_token);
        let now = Utc::now();
        // Each attempt is counted before the code is looked at, in one statement, so
        // parallel guesses on one token cannot exceed the limit.
        let Some(ticket) = self.store().attempt_mfa_ticket(&hash, now, MAX_CODE_FAILURES).await? else {
            return Err(rejected());
        };
        let user = match self.store().user_by_id(ticket.user_id).await? {
            Some(u) if u.is_active => u,
            _ => return Err(rejected()),
        };
        // Guessing codes counts like guessing passwords.
        self.begin_login_attempt(&user.username).await?;
        let event = |action: &str| {
            Actor::user(user.id, &user.username, ctx)
                .event(action)
                .resource("user", user.id)
        };
        let method = match self.check_second_factor(&user, factor).await? {
            Ok(method) => method,
            Err(reason) => {
                self.log_event(
                    event("MFA_FAILURE")
                        .meta("reason", reason)
                        .meta("token_burned", ticket.failures >= MAX_CODE_FAILURES),
                )
                .await?;
                return Err(rejected());
            }
        };
        if !self.store().spend_mfa_ticket(&hash, now).await? {
            return Err(rejected());
        }
        // The sign-in is complete: every count on the account's names starts over.
        self.clear_lockout(&user).await?;
        if method == "rc" {
            let left = self.store().recovery_codes_left(user.id).await?;
            self.log_event(event("MFA_RECOVERY_CODE_USED").meta("recovery_codes_left", left))
                .await?;
        }
        let mut amr: Vec<String> = serde_json::from_str(&ticket.amr).unwrap_or_else(|_| vec!["pwd".into()]);
        amr.push(method.into());
        let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
        self.start_session(&user, &amr, ctx).await
    }

    /// Starts (or restarts) TOTP enrolment: a new secret, pending until confirmed.
    ///
    /// With a session token the password is asked again (a stolen token alone must not
    /// put someone else's authenticator on the account); the enrolment-only token has
    /// just proven it.
    pub async fn enroll_totp(
        &self,
        caller: &Principal,
        password: Option<&str>,
        ctx: &ClientContext,
    ) -> AppResult<TotpEnrollment> {
        require_person(caller)?;
        let user = self.user(caller.user_id).await?;
        if caller.credential == Credential::Jwt && user.password_hash.is_some() {
            self.begin_login_attempt(&user.username).await?;
            let verified = self
                .inner()
                .hasher
                .verify(password.unwrap_or_default(), user.password_hash.as_deref())
                .await?;
            if !verified.ok {
                return Err(AppError::validation("password", "is incorrect"));
            }
            self.login_succeeded(&user.username).await?;
        }
        let secret = totp::new_secret();
        let sealed = self.seal_totp(user.id, &secret)?;
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("MFA_ENROLL")
                .resource("user", user.id),
        );
        if !self
            .store()
            .start_totp(user.id, &sealed, Utc::now(), record.as_ref())
            .await?
        {
            return Err(AppError::Conflict(
                "TOTP is already enabled; remove it (DELETE /auth/mfa/totp) before enrolling again".into(),
            ));
        }
        self.enrollment_of(&user, &secret)
    }

    /// What an authenticator app needs to take `secret` for `user`.
    fn enrollment_of(&self, user: &UserRow, secret: &[u8]) -> AppResult<TotpEnrollment> {
        let uri = totp::uri(secret, &self.config().mfa.issuer, &user.username).map_err(AppError::Internal)?;
        let png = totp::qr_png(&uri, 6).map_err(AppError::Internal)?;
        Ok(TotpEnrollment {
            secret: totp::base32(secret),
            qr_svg: totp::qr_svg(&uri).map_err(AppError::Internal)?,
            qr_png: format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            ),
            otpauth_uri: uri,
        })
    }

    /// Ends a sign-in that had to enrol first: confirms the enrolment the
    /// enrolment-only token started (as `confirm_totp`, which spends the token) and starts
    /// the session (`amr` the first factor's plus `otp`, the code just given). The
    /// recovery codes, shown this once, and the session. Used by the sign-in pages,
    /// so the person is not asked for the password again right after giving it.
    pub async fn finish_enrollment(
        &self,
        enrollment_token: &str,
        code: &str,
        ctx: &ClientContext,
    ) -> AppResult<(Vec<String>, TokenPair)> {
        let caller = self.authenticate_enrollment(enrollment_token).await?;
        // Confirming deletes the user's enrolment tokens in its transaction, and only
        // one confirmation of a pending factor succeeds: the token opens one session.
        let codes = self.confirm_totp(&caller, code, ctx).await?;
        let user = self.user(caller.user_id).await?;
        let mut amr: Vec<&str> = caller.amr.iter().map(String::as_str).collect();
        amr.push("otp");
        let pair = self.start_session(&user, &amr, ctx).await?;
        Ok((codes, pair))
    }

    /// Confirms enrolment with a current code; returns the recovery codes, the only
    /// time they exist in clear.
    pub async fn confirm_totp(&self, caller: &Principal, code: &str, ctx: &ClientContext) -> AppResult<Vec<String>> {
        require_person(caller)?;
        let user = self.user(caller.user_id).await?;
        let row = match self.store().totp(user.id).await? {
            Some(r) if r.confirmed_at.is_none() => r,
            Some(_) => return Err(AppError::Conflict("TOTP is already enabled".into())),
            None => {
                return Err(AppError::NotFound(
                    "no pending enrolment: POST /auth/mfa/totp/enroll first".into(),
                ));
            }
        };
        self.begin_login_attempt(&user.username).await?;
        let secret = self.open_totp(user.id, &row.secret)?;
        let now = Utc::now();
        let Some(step) = totp::check(&secret, code, unix(now)).and_then(|s| i64::try_from(s).ok()) else {
            self.log_event(
                Actor::user(user.id, &user.username, ctx)
                    .event("MFA_FAILURE")
                    .resource("user", user.id)
                    .meta("reason", "bad_code")
                    .meta("step", "confirm"),
            )
            .await?;
            return Err(AppError::validation(
                "code",
                "is not the current code of the enrolled secret",
            ));
        };
        self.login_succeeded(&user.username).await?;
        let codes = new_recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().filter_map(|c| recovery_hash(c)).collect();
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("MFA_ENABLE")
                .resource("user", user.id),
        );
        if !self
            .store()
            .confirm_totp(user.id, &row.secret, step, &hashes, now, record.as_ref())
            .await?
        {
            return Err(AppError::Conflict(
                "the enrolment changed meanwhile; enrol again".into(),
            ));
        }
        // Sessions begun without the factor end; this one goes on.
        self.end_user_sessions(
            user.id,
            caller.session_id,
            "mfa_enabled",
            Actor::user(user.id, &user.username, ctx).event("SESSIONS_REVOKE"),
        )
        .await?;
        Ok(codes)
    }

    /// Removes the caller's factor; needs the password and a code or recovery code.
    pub async fn disable_totp(
        &self,
        caller: &Principal,
        password: &str,
        factor: SecondFactor<'_>,
        ctx: &ClientContext,
    ) -> AppResult<()> {
        require_person(caller)?;
        let user = self.me(caller).await?;
        self.begin_login_attempt(&user.username).await?;
        let failed = |reason: &str| {
            Actor::user(user.id, &user.username, ctx)
                .event("MFA_FAILURE")
                .resource("user", user.id)
                .meta("reason", reason)
                .meta("step", "disable")
        };
        // An account made by a provider sign-in has no password: the code alone.
        if user.password_hash.is_some() {
            let verified = self
                .inner()
                .hasher
                .verify(password, user.password_hash.as_deref())
                .await?;
            if !verified.ok {
                self.log_event(failed("bad_password")).await?;
                return Err(AppError::validation("password", "is incorrect"));
            }
        }
        if let Err(reason) = self.check_second_factor(&user, factor).await? {
            self.log_event(failed(reason)).await?;
            return Err(AppError::validation("code", "is not a valid code or recovery code"));
        }
        self.login_succeeded(&user.username).await?;
        self.remove_totp(&user, ctx).await
    }

    async fn remove_totp(&self, user: &UserRow, ctx: &ClientContext) -> AppResult<()> {
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("MFA_DISABLE")
                .resource("user", user.id),
        );
        if !self.store().remove_mfa(user.id, record.as_ref()).await? {
            return Err(AppError::NotFound("no TOTP factor".into()));
        }
        Ok(())
    }

    /// New recovery codes, for a current code or recovery code: a stolen session token
    /// alone must not mint codes that bypass the authenticator.
    pub async fn regenerate_recovery_codes(
        &self,
        caller: &Principal,
        factor: SecondFactor<'_>,
        ctx: &ClientContext,
    ) -> AppResult<Vec<String>> {
        require_person(caller)?;
        let user = self.user(caller.user_id).await?;
        self.begin_login_attempt(&user.username).await?;
        if let Err(reason) = self.check_second_factor(&user, factor).await? {
            self.log_event(
                Actor::user(user.id, &user.username, ctx)
                    .event("MFA_FAILURE")
                    .resource("user", user.id)
                    .meta("reason", reason)
                    .meta("step", "regenerate"),
            )
            .await?;
            return Err(AppError::validation("code", "is not a valid code or recovery code"));
        }
        self.login_succeeded(&user.username).await?;
        let codes = new_recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().filter_map(|c| recovery_hash(c)).collect();
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event("MFA_RECOVERY_CODES_REGENERATE")
                .resource("user", user.id),
        );
        if !self
            .store()
            .replace_recovery_codes(user.id, &hashes, Utc::now(), record.as_ref())
            .await?
        {
            return Err(AppError::Conflict("enable TOTP first".into()));
        }
        Ok(codes)
    }

    pub async fn mfa_status(&self, user_id: Uuid) -> AppResult<MfaStatus> {
        let user = self.user(user_id).await?;
        let row = self.store().totp(user.id).await?;
        Ok(MfaStatus {
            totp: match &row {
                None => "none",
                Some(r) if r.confirmed_at.is_none() => "pending",
                Some(_) => "enabled",
            },
            enabled_at: row.and_then(|r| r.confirmed_at),
            recovery_codes_left: self.store().recovery_codes_left(user.id).await?,
            required: self.mfa_required_for(&user).await?,
        })
    }

    /// An administrator removes a user's factor (lost device, left without codes).
    pub async fn reset_mfa(&self, user_id: Uuid, by: &Actor) -> AppResult<()> {
        self.may_act_on(user_id, by).await?;
        let record = self.audit_record(by.event("MFA_RESET").resource("user", user_id));
        if !self.store().remove_mfa(user_id, record.as_ref()).await? {
            return Err(AppError::NotFound("the user has no second factor".into()));
        }
        Ok(())
    }

    /// Authenticates an enrolment-only token (`pce_...`).
    pub(crate) async fn authenticate_enrollment(&self, token: &str) -> AppResult<Arc<Principal>> {
        let rejected = || AppError::InvalidToken("enrolment token is invalid or expired".into());
        if !token
            .strip_prefix(ENROLLMENT_TOKEN_PREFIX)
            .is_some_and(tokens::looks_like_token)
        {
            return Err(rejected());
        }
        let now = Utc::now();
        let ticket = match self.store().mfa_ticket(&tokens::digest(token), "enroll").await? {
            Some(t) if t.used_at.is_none() && t.expires_at > now => t,
            _ => return Err(rejected()),
        };
        let user = match self.store().user_by_id(ticket.user_id).await? {
            Some(u) if u.is_active => u,
            _ => return Err(rejected()),
        };
        Ok(Arc::new(Principal {
            user_id: user.id,
            username: user.username,
            session_id: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            amr: serde_json::from_str(&ticket.amr).unwrap_or_default(),
            is_superuser: false,
            credential: Credential::MfaEnrollment,
            expires_at: Some(ticket.expires_at.timestamp()),
            token: None,
            client_id: None,
            first_party: false,
            scope: None,
        }))
    }

    /// RFC 9470 step-up: passes when the caller's session began with a TOTP code
    /// within `MFA_STEP_UP_MAX_AGE_SECONDS` (or step-up is off).
    pub fn check_recent_mfa(&self, caller: &Principal) -> AppResult<()> {
        let Some(max_age) = self.config().mfa.step_up_max_age else {
            return Ok(());
        };
        let auth_time = caller.token.as_ref().and_then(|t| t.auth_time);
        let recent = auth_time.is_some_and(|t| Utc::now().timestamp() - t <= max_age.as_secs() as i64);
        if recent && caller.amr.iter().any(|m| m == "otp") {
            Ok(())
        } else {
            Err(AppError::StepUpRequired {
                max_age: max_age.as_secs(),
            })
        }
    }

    pub(crate) async fn purge_mfa_tickets(&self, now: DateTime<Utc>) -> AppResult<u64> {
        self.store().purge_mfa_tickets(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), RECOVERY_CODES);
        let code = &codes[0];
        assert_eq!(code.len(), 19);
        let hash = recovery_hash(code).unwrap();
        assert_eq!(recovery_hash(&code.to_uppercase()), Some(hash));
        assert_eq!(recovery_hash(&code.replace('-', " ")), Some(hash));
        assert_eq!(recovery_hash("short"), None);
        assert_eq!(recovery_hash("0000-0000-0000-0000"), None);
    }
}
