//! The upstream providers as the pages show them: their names, the sign-in page's
//! buttons, and a provider's failure in words. Shared by the sign-in page, its
//! provider flow (`upstream`) and the identities page.

use axum::http::StatusCode;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Lang, Messages};
use crate::config::ProviderKind;
use crate::domain::Portcullis;
use crate::error::AppError;

/// A provider's name for people: the built-in ones by brand, a generic one by the
/// name it is configured under.
pub fn display_name(service: &Portcullis, provider: &str) -> String {
    match service.config().oauth.provider(provider).map(|p| &p.kind) {
        Some(ProviderKind::Google) => "Google".into(),
        Some(ProviderKind::Microsoft) => "Microsoft".into(),
        Some(ProviderKind::Okta) => "Okta".into(),
        Some(ProviderKind::Generic) | None => provider.to_string(),
    }
}

/// "Sign in with X" on the sign-in page: a link starting the redirect flow (a GET
/// navigation, so it works without script and needs no form).
pub struct ProviderButton {
    pub name: String,
    pub label: String,
    pub href: String,
}

/// One button per configured provider, each coming back to `return_to`.
pub fn provider_buttons(service: &Portcullis, lang: Lang, return_to: &str) -> Vec<ProviderButton> {
    service
        .config()
        .oauth
        .providers
        .iter()
        .map(|p| {
            let mut href = service.config().path(&format!("/login/oauth/{}", p.name));
            if !return_to.is_empty() {
                href = format!("{href}?return_to={}", utf8_percent_encode(return_to, NON_ALPHANUMERIC));
            }
            ProviderButton {
                name: p.name.clone(),
                label: lang
                    .get("sign_in_with")
                    .replace("{provider}", &display_name(service, &p.name)),
                href,
            }
        })
        .collect()
}

/// What a flow with a provider was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    SignIn,
    Link,
}

/// A provider flow's failure in words, with its status; None for our own failure
/// (a 500 stays one).
pub fn failure(lang: Lang, provider: &str, attempt: Attempt, e: &AppError) -> Option<(StatusCode, String)> {
    let status = e.status();
    if status.is_server_error() && !matches!(status.as_u16(), 502..=504) {
        return None;
    }
    let key = match (e, attempt) {
        (AppError::TooManyRequests { retry_after }, _) => return Some((status, lang.too_many(*retry_after))),
        (AppError::Conflict(_), Attempt::SignIn) => "upstream_email_taken",
        (AppError::Conflict(_), Attempt::Link) => "upstream_link_conflict",
        (AppError::Forbidden(_), Attempt::SignIn) => "upstream_no_account",
        (AppError::Forbidden(_), Attempt::Link) => "upstream_link_other",
        (AppError::InvalidCredentials(_), _) => "upstream_declined",
        _ if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => "upstream_unavailable",
        _ => "upstream_failed",
    };
    Some((status, lang.get(key).replace("{provider}", provider)))
}

pub const EN: Messages = &[
    ("sign_in_with", "Sign in with {provider}"),
    ("or_sign_in_with", "Or sign in with"),
    (
        "upstream_email_taken",
        "An account with this e-mail address already exists here and is not linked to {provider}. Sign in with your password, then link {provider} under Linked sign-ins.",
    ),
    (
        "upstream_link_conflict",
        "{provider} could not be linked: that {provider} account is already linked to another account here, or yours already has a {provider} account linked.",
    ),
    (
        "upstream_no_account",
        "No account here is linked to this {provider} account.",
    ),
    (
        "upstream_link_other",
        "This link was started while signed in as someone else. Please start again.",
    ),
    ("upstream_declined", "Signing in with {provider} did not succeed."),
    (
        "upstream_unavailable",
        "{provider} could not be reached. Please try again later.",
    ),
    (
        "upstream_failed",
        "Signing in with {provider} did not work. Please try again.",
    ),
];

pub const DE: Messages = &[
    ("sign_in_with", "Mit {provider} anmelden"),
    ("or_sign_in_with", "Oder anmelden mit"),
    (
        "upstream_email_taken",
        "Ein Konto mit dieser E-Mail-Adresse gibt es hier bereits, es ist aber nicht mit {provider} verknüpft. Melden Sie sich mit Ihrem Passwort an und verknüpfen Sie {provider} unter „Verknüpfte Anmeldungen“.",
    ),
    (
        "upstream_link_conflict",
        "{provider} konnte nicht verknüpft werden: Dieses {provider}-Konto ist bereits mit einem anderen Konto verknüpft, oder mit Ihrem ist schon ein {provider}-Konto verknüpft.",
    ),
    (
        "upstream_no_account",
        "Mit diesem {provider}-Konto ist hier kein Konto verknüpft.",
    ),
    (
        "upstream_link_other",
        "Diese Verknüpfung wurde unter einer anderen Anmeldung begonnen. Bitte beginnen Sie erneut.",
    ),
    (
        "upstream_declined",
        "Die Anmeldung mit {provider} war nicht erfolgreich.",
    ),
    (
        "upstream_unavailable",
        "{provider} ist nicht erreichbar. Bitte versuchen Sie es später erneut.",
    ),
    (
        "upstream_failed",
        "Die Anmeldung mit {provider} hat nicht funktioniert. Bitte versuchen Sie es erneut.",
    ),
];
