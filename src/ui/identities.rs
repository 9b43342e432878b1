//! The linked sign-ins page: the upstream identities of the account (domain
//! `identities`), unlinking one (`unlink_identity`, which never removes the last way
//! in), and linking another provider while signed in: the page starts the redirect
//! flow for this account (`oauth_link_authorize_url`), and the provider's return to the
//! one callback ends in `finish_link`. Both are sensitive: CSRF and step-up.
//!
//! One form holds the whole list, each button naming its provider and its action
//! (`formaction`), so the page has one CSRF field and one step-up field.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::login::sign_in_again;
use super::pages::{Chrome, CsrfForm, check_csrf, render, when};
use super::providers::{Attempt, display_name, failure};
use super::step_up::{StepUpField, StepUpForm};
use super::upstream::to_provider;
use super::{Lang, Messages, current_session};
use crate::domain::oauth::RedirectFlow;
use crate::domain::{BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// A linked identity as the page lists it.
struct Linked {
    provider: String,
    name: String,
    /// "Unlink X".
    action: String,
    email: String,
    linked_at: String,
    last_login_at: String,
}

/// A configured provider not linked yet.
struct Linkable {
    provider: String,
    /// "Link X".
    action: String,
}

#[derive(Template)]
#[template(path = "identities.html")]
struct IdentitiesPage<'a> {
    c: Chrome,
    session: &'a BrowserSession,
    message: Option<String>,
    notice: Option<String>,
    linked: Vec<Linked>,
    linkable: Vec<Linkable>,
    step_up: Option<StepUpField>,
}

/// The page, with a message (`status` then says what failed) or a notice.
async fn page(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    message: Option<String>,
    notice: Option<String>,
) -> AppResult<Response> {
    let identities = service.identities(session.user_id).await?;
    let linkable = service
        .config()
        .oauth
        .providers
        .iter()
        .filter(|p| !identities.iter().any(|i| i.provider == p.name))
        .map(|p| Linkable {
            action: lang.get("link").replace("{provider}", &display_name(service, &p.name)),
            provider: p.name.clone(),
        })
        .collect();
    let linked = identities
        .into_iter()
        .map(|i| Linked {
            name: display_name(service, &i.provider),
            action: lang
                .get("unlink")
                .replace("{provider}", &display_name(service, &i.provider)),
            email: i.email.unwrap_or_default(),
            linked_at: when(i.linked_at),
            last_login_at: when(i.last_login_at),
            provider: i.provider,
        })
        .collect();
    let page = IdentitiesPage {
        c: Chrome::new(service, lang),
        session,
        message,
        notice,
        linked,
        linkable,
        step_up: super::step_up::field(service, session).await?,
    };
    Ok(render(status, &page))
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    linked: Option<String>,
    #[serde(default)]
    unlinked: Option<String>,
}

/// `GET /account/identities`.
pub async fn identities(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(done): Query<Done>,
) -> AppResult<Response> {
    // Only a configured provider's name is repeated back (never any text a link carries).
    let configured = |p: &String| service.config().oauth.provider(p).is_some();
    let notice = match (done.linked.filter(configured), done.unlinked.filter(configured)) {
        (Some(p), _) => Some(
            lang.get("identity_linked")
                .replace("{provider}", &display_name(&service, &p)),
        ),
        (None, Some(p)) => Some(
            lang.get("identity_unlinked")
                .replace("{provider}", &display_name(&service, &p)),
        ),
        (None, None) => None,
    };
    page(&service, lang, &session, StatusCode::OK, None, notice).await
}

/// The page's form: which provider (the button pressed), the CSRF token, the step-up.
#[derive(Debug, Deserialize)]
pub struct IdentityForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(flatten)]
    step_up: StepUpForm,
    #[serde(default)]
    provider: String,
}

/// The checks before either action: the form's token, then the step-up. Some(page)
/// when the step-up failed (the page again, saying so).
async fn confirmed(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    form: &IdentityForm,
    ctx: &ClientContext,
) -> AppResult<Option<Response>> {
    check_csrf(session, &form.csrf)?;
    match super::step_up::confirm(service, session, &form.step_up, ctx).await {
        Ok(()) => Ok(None),
        Err(AppError::InvalidCredentials(_)) => {
            let message = Some(lang.get("step_up_failed").to_string());
            Ok(Some(
                page(service, lang, session, StatusCode::UNAUTHORIZED, message, None).await?,
            ))
        }
        Err(e) => Err(e),
    }
}

/// Back to the page, saying what was done.
fn done(service: &Portcullis, what: &str, provider: &str) -> Response {
    let to = format!(
        "{}?{what}={}",
        service.config().path("/account/identities"),
        utf8_percent_encode(provider, NON_ALPHANUMERIC)
    );
    Redirect::to(&to).into_response()
}

/// `POST /account/identities/unlink`: through `unlink_identity`, as
/// `DELETE /auth/me/identities/{provider}`; never the last way in.
pub async fn unlink(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<IdentityForm>,
) -> AppResult<Response> {
    if let Some(again) = confirmed(&service, lang, &session, &form, &ctx).await? {
        return Ok(again);
    }
    let user = service.me(&service.browser_principal(&session).await?).await?;
    let name = display_name(&service, &form.provider);
    let key = match service.unlink_identity(&user, &form.provider, &ctx).await {
        Ok(()) => return Ok(done(&service, "unlinked", &form.provider)),
        Err(AppError::Conflict(_)) => "unlink_last",
        Err(AppError::NotFound(_)) => "unlink_none",
        Err(e) => return Err(e),
    };
    let status = if key == "unlink_last" {
        StatusCode::CONFLICT
    } else {
        StatusCode::NOT_FOUND
    };
    let message = lang.get(key).replace("{provider}", &name);
    page(&service, lang, &session, status, Some(message), None).await
}

/// `POST /account/identities/link`: off to the provider, to come back to
/// `finish_link` for this account.
pub async fn link(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<IdentityForm>,
) -> AppResult<Response> {
    if let Some(again) = confirmed(&service, lang, &session, &form, &ctx).await? {
        return Ok(again);
    }
    match service.oauth_link_authorize_url(&session, &form.provider).await {
        Ok((url, browser)) => Ok(to_provider(&url, &browser)),
        Err(e) => failed(&service, lang, &session, &form.provider, e).await,
    }
}

/// The end of a link flow (the callback found it was one): linked, or the page saying
/// why not. A browser no longer signed in is asked to sign in again.
pub async fn finish_link(
    service: &Portcullis,
    lang: Lang,
    headers: &HeaderMap,
    flow: &RedirectFlow,
    code: Option<&str>,
    error: Option<&str>,
    ctx: &ClientContext,
) -> AppResult<Response> {
    let Some(session) = current_session(service, headers).await? else {
        let message = lang
            .get("link_signed_out")
            .replace("{provider}", &display_name(service, &flow.provider));
        let back = service.config().path("/account/identities");
        return Ok(sign_in_again(
            service,
            lang,
            headers,
            StatusCode::UNAUTHORIZED,
            message,
            &back,
        ));
    };
    match service.oauth_flow_link(flow, code, error, &session, ctx).await {
        Ok(provider) => Ok(done(service, "linked", &provider)),
        Err(e) => failed(service, lang, &session, &flow.provider, e).await,
    }
}

/// The page again, saying why linking did not work; our own failures stay errors.
async fn failed(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    provider: &str,
    e: AppError,
) -> AppResult<Response> {
    let name = display_name(service, provider);
    match failure(lang, &name, Attempt::Link, &e) {
        Some((status, message)) => page(service, lang, session, status, Some(message), None).await,
        None => Err(e),
    }
}

pub const EN: Messages = &[
    ("identities_title", "Linked sign-ins"),
    (
        "identities_intro",
        "Providers you can sign in with, besides your password.",
    ),
    ("identities_none", "No provider is linked."),
    ("identity_email", "E-mail at the provider"),
    ("identity_linked_at", "Linked"),
    ("identity_last_used", "Last sign-in"),
    ("unlink", "Unlink {provider}"),
    ("link_title", "Link another provider"),
    ("link", "Link {provider}"),
    ("identity_linked", "{provider} is now linked to your account."),
    ("identity_unlinked", "{provider} is no longer linked to your account."),
    (
        "unlink_last",
        "{provider} is your only way to sign in: set a password or link another provider first.",
    ),
    ("unlink_none", "{provider} is not linked to your account."),
    (
        "link_signed_out",
        "You were signed out before {provider} could be linked. Please sign in and try again.",
    ),
];

pub const DE: Messages = &[
    ("identities_title", "Verknüpfte Anmeldungen"),
    (
        "identities_intro",
        "Anbieter, mit denen Sie sich außer mit Ihrem Passwort anmelden können.",
    ),
    ("identities_none", "Kein Anbieter ist verknüpft."),
    ("identity_email", "E-Mail beim Anbieter"),
    ("identity_linked_at", "Verknüpft"),
    ("identity_last_used", "Letzte Anmeldung"),
    ("unlink", "{provider} trennen"),
    ("link_title", "Weiteren Anbieter verknüpfen"),
    ("link", "{provider} verknüpfen"),
    ("identity_linked", "{provider} ist jetzt mit Ihrem Konto verknüpft."),
    (
        "identity_unlinked",
        "{provider} ist nicht mehr mit Ihrem Konto verknüpft.",
    ),
    (
        "unlink_last",
        "{provider} ist Ihre einzige Anmeldemöglichkeit: Legen Sie zuerst ein Passwort fest oder verknüpfen Sie einen weiteren Anbieter.",
    ),
    ("unlink_none", "{provider} ist nicht mit Ihrem Konto verknüpft."),
    (
        "link_signed_out",
        "Sie wurden abgemeldet, bevor {provider} verknüpft werden konnte. Bitte melden Sie sich an und versuchen Sie es erneut.",
    ),
];
