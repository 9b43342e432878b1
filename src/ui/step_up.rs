//! Step-up on the pages: once a sign-in is older than the step-up window
//! (`MFA_STEP_UP_MAX_AGE_SECONDS`), a sensitive form (disabling two-factor, creating
//! an API key, linking or unlinking a provider...) asks for the password, or a current
//! code when the account has a second factor, in the form itself. The rule and the
//! check are the domain's (`Portcullis::browser_step_up`, `step_up_browser`); this
//! module only carries them to a form: the page renders `step_up.html` with the
//! `step_up` value `field` gives, and the handler calls `confirm` before acting.

use serde::Deserialize;

use super::Messages;
use crate::domain::{BrowserSession, ClientContext, Portcullis, StepUpProof};
use crate::error::AppResult;

/// The proof field a sensitive form shows (rendered by `step_up.html`).
#[derive(Debug, Clone, Copy)]
pub struct StepUpField(pub StepUpProof);

impl StepUpField {
    /// The catalogue key of the field's label.
    pub fn label_key(&self) -> &'static str {
        match self.0 {
            StepUpProof::Code => "step_up_code",
            StepUpProof::Password => "step_up_password",
            StepUpProof::SignInAgain => "step_up_sign_in_again",
        }
    }

    /// The field's `autocomplete`: a password manager offers the password, a phone
    /// the code.
    pub fn autocomplete(&self) -> &'static str {
        match self.0 {
            StepUpProof::Code => "one-time-code",
            StepUpProof::Password | StepUpProof::SignInAgain => "current-password",
        }
    }

    /// Whether the form asks for something (an account with no password and no second
    /// factor is told to sign in again instead).
    pub fn asks(&self) -> bool {
        self.0 != StepUpProof::SignInAgain
    }

    pub fn input_type(&self) -> &'static str {
        match self.0 {
            StepUpProof::Code => "text",
            StepUpProof::Password | StepUpProof::SignInAgain => "password",
        }
    }
}

/// The field a sensitive form of this session must show now, or None.
pub async fn field(service: &Portcullis, session: &BrowserSession) -> AppResult<Option<StepUpField>> {
    Ok(service.browser_step_up(session).await?.map(StepUpField))
}

/// The proof a sensitive form posted (empty when it showed no field).
#[derive(Debug, Default, Deserialize)]
pub struct StepUpForm {
    #[serde(default)]
    pub reauth: String,
}

/// Before a sensitive action: passes while no step-up is due, else checks the posted
/// proof. A wrong or missing one is `InvalidCredentials` (the page shows the form again
/// with the message `step_up_failed`); repeated failures lock like sign-in attempts.
pub async fn confirm(
    service: &Portcullis,
    session: &BrowserSession,
    form: &StepUpForm,
    ctx: &ClientContext,
) -> AppResult<()> {
    service.step_up_browser(session, &form.reauth, ctx).await
}

pub const EN: Messages = &[
    ("step_up_hint", "You signed in a while ago. Please confirm it is you."),
    ("step_up_password", "Your password"),
    ("step_up_code", "Code from your authenticator app, or a recovery code"),
    ("step_up_failed", "That did not confirm it is you. Please try again."),
    (
        "step_up_sign_in_again",
        "You signed in a while ago. To do this, sign out and sign in again.",
    ),
];

pub const DE: Messages = &[
    (
        "step_up_hint",
        "Ihre Anmeldung liegt eine Weile zurück. Bitte bestätigen Sie, dass Sie es sind.",
    ),
    ("step_up_password", "Ihr Passwort"),
    (
        "step_up_code",
        "Code aus Ihrer Authenticator-App oder ein Wiederherstellungscode",
    ),
    (
        "step_up_failed",
        "Das hat Ihre Identität nicht bestätigt. Bitte versuchen Sie es erneut.",
    ),
    (
        "step_up_sign_in_again",
        "Ihre Anmeldung liegt eine Weile zurück. Melden Sie sich dafür ab und erneut an.",
    ),
];
