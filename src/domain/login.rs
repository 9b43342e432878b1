//! Signing in: the first factor (a password here; upstream providers in `oauth`), and
//! what follows it. A first factor alone yields a session only for an account without
//! a second factor; otherwise it yields a single-use MFA challenge (`pcm_...`) for
//! `/auth/mfa/verify`, or, when the account's roles demand MFA it has not enrolled, a
//! token for the enrolment routes only (`pce_...`).

use chrono::Utc;
use serde::Serialize;

use super::authn::{ENROLLMENT_TOKEN_PREFIX, MFA_TOKEN_PREFIX};
use super::{Actor, AuditEvent, ClientContext, Portcullis, TokenPair, validate};
use crate::crypto::tokens;
use crate::error::{AppError, AppResult};
use crate::store::{MfaTicketRow, UserRow};

/// The single answer for every failed login: it must not tell which part was wrong.
pub const LOGIN_FAILED: &str = "invalid username or password";
const TICKET_TTL_SECONDS: i64 = 300;
const ENROLLMENT_TTL_SECONDS: i64 = 900;

/// A password login that needs its second factor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MfaChallenge {
    /// Always true.
    pub mfa_required: bool,
    /// For `POST /auth/mfa/verify`; 5 minutes, single use.
    pub mfa_token: String,
    pub methods: Vec<&'static str>,
    pub expires_in: u64,
}

/// A login of a user who must enrol first: a token for the enrolment routes only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrollmentOnly {
    /// Always true.
    pub mfa_enrollment_required: bool,
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// What a password login answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginOutcome {
    Tokens(TokenPair),
    MfaRequired(MfaChallenge),
    EnrollmentRequired(EnrollmentOnly),
}

impl Portcullis {
    /// Checks a username (or email) and password and starts a session.
    ///
    /// Unknown users are checked against a dummy hash, and disabled users and wrong
    /// passwords get the very same answer, so neither the body nor the time tells
    /// whether an account exists.
    ///
    /// Consecutive failures lock the login name (known or not) for a growing time;
    /// while locked, attempts get 429 without the password being checked.
    ///
    /// A user with a second factor gets an MFA challenge instead of tokens, and one
    /// whose role demands MFA but has none a token for enrolment only (see `mfa`).
    pub async fn login(&self, login: &str, password: &str, ctx: &ClientContext) -> AppResult<LoginOutcome> {
        let inner = self.inner();
        // A name no account can have is neither looked up nor counted (see
        // `validate::login_name`): it gets the same failure, after the dummy hash. An
        // over-long password still goes through the same steps, against the dummy hash.
        let login = validate::login_name(login);
        let user = match &login {
            Some(name) => inner.store.user_by_login(name).await?,
            None => None,
        };
        // The attempted name is not recorded for unknown users: it may be a password
        // typed into the wrong field.
        let failure = |reason: &str| {
            let event = AuditEvent::new("LOGIN_FAILURE").client(ctx).meta("reason", reason);
            match &user {
                Some(u) => event.actor(u.id, &u.username).resource("user", u.id),
                None => event,
            }
        };
        let attempt = match &login {
            Some(name) => self.begin_login_attempt(name).await,
            None => Ok(()),
        };
        if let Err(e) = attempt {
            if matches!(e, AppError::TooManyRequests { .. }) {
                self.log_event(failure("locked")).await?;
            }
            return Err(e);
        }
        let too_long = password.chars().count() > inner.config.passwords.max_length;
        let stored = user
            .as_ref()
            .and_then(|u| u.password_hash.as_deref())
            .filter(|_| !too_long);
        let verified = inner.hasher.verify(password, stored).await?;
        let reason = match &user {
            None => Some("unknown_user"),
            Some(_) if !verified.ok || too_long => Some("bad_password"),
            Some(u) if !u.is_active => Some("disabled"),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            metrics::counter!("portcullis_logins_total", "result" => "failure").increment(1);
            self.log_event(failure(reason)).await?;
            return Err(AppError::InvalidCredentials(LOGIN_FAILED.into()));
        }
        let Some(user) = user else {
            return Err(AppError::InvalidCredentials(LOGIN_FAILED.into()));
        };
        if verified.needs_rehash {
            let upgraded = inner.hasher.hash(password).await?;
            inner
                .store
                .upgrade_password_hash(user.id, &upgraded, Utc::now())
                .await?;
        }
        metrics::counter!("portcullis_logins_total", "result" => "success").increment(1);
        let outcome = self.after_first_factor(&user, &["pwd"], ctx).await?;
        // With a second factor still due, the count of attempts goes on: the code
        // attempts add to it, and only a verified code clears it. Otherwise a password
        // login would reset the count between rounds of guessed codes.
        if let Some(name) = login.filter(|_| !matches!(outcome, LoginOutcome::MfaRequired(_))) {
            self.login_succeeded(&name).await?;
        }
        Ok(outcome)
    }

    /// After a first factor: a session, an MFA challenge, or an enrolment-only token.
    pub async fn after_first_factor(
        &self,
        user: &UserRow,
        amr: &[&str],
        ctx: &ClientContext,
    ) -> AppResult<LoginOutcome> {
        let enrolled = self
            .store()
            .totp(user.id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        let (purpose, prefix, ttl, action) = if enrolled {
            ("verify", MFA_TOKEN_PREFIX, TICKET_TTL_SECONDS, "MFA_CHALLENGE")
        } else if self.mfa_required_for(user).await? {
            (
                "enroll",
                ENROLLMENT_TOKEN_PREFIX,
                ENROLLMENT_TTL_SECONDS,
                "MFA_ENROLLMENT_REQUIRED",
            )
        } else {
            return Ok(LoginOutcome::Tokens(self.start_session(user, amr, ctx).await?));
        };
        let token = format!("{prefix}{}", tokens::random_token());
        let now = Utc::now();
        let ticket = MfaTicketRow {
            token_hash: tokens::digest(&token).to_vec(),
            user_id: user.id,
            purpose: purpose.into(),
            amr: serde_json::to_string(amr).map_err(AppError::internal)?,
            failures: 0,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(ttl),
            used_at: None,
        };
        let record = self.audit_record(
            Actor::user(user.id, &user.username, ctx)
                .event(action)
                .resource("user", user.id)
                .meta("amr", amr),
        );
        self.store().insert_mfa_ticket(&ticket, record.as_ref()).await?;
        Ok(if enrolled {
            // A recovery code is offered only while one is left.
            let mut methods = vec!["totp"];
            if self.store().recovery_codes_left(user.id).await? > 0 {
                methods.push("recovery_code");
            }
            LoginOutcome::MfaRequired(MfaChallenge {
                mfa_required: true,
                mfa_token: token,
                methods,
                expires_in: ttl as u64,
            })
        } else {
            LoginOutcome::EnrollmentRequired(EnrollmentOnly {
                mfa_enrollment_required: true,
                access_token: token,
                token_type: "bearer",
                expires_in: ttl as u64,
            })
        })
    }
}
