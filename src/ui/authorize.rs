//! The authorization endpoint's pages: `GET /oauth2/authorize` (an application sends
//! the browser here; on to sign in, the consent page, or back with a code) and
//! `POST /oauth2/authorize` (the consent page's Allow / Deny). What is decided is
//! decided in `domain::oidc::authorize`; this module only shows and sends.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_SECURITY_POLICY;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::assets::script_name;
use super::pages::{Chrome, CsrfForm, check_csrf, render};
use super::{Lang, Messages, current_session};
use crate::domain::oidc::authorize::{AuthRequest, AuthorizeParams, Next, REAUTH_PARAM, Reply, ResponseMode};
use crate::domain::{BrowserSession, Portcullis};
use crate::error::{AppError, AppResult};

pub const EN: Messages = &[
    ("consent_title", "Allow access?"),
    ("consent_intro", "{app} asks to:"),
    (
        "consent_scope_openid",
        "Know who you are (your account's identifier here)",
    ),
    ("consent_scope_profile", "See your name and username"),
    (
        "consent_scope_email",
        "See your e-mail address and whether it is verified",
    ),
    ("consent_scope_roles", "See your roles and permissions"),
    (
        "consent_scope_offline_access",
        "Keep this access while you are away, until you revoke it",
    ),
    ("consent_signed_in_as", "Signed in as {name}."),
    ("consent_return", "Either way you return to {uri}."),
    ("consent_allow", "Allow"),
    ("consent_deny", "Deny"),
    ("form_post_title", "Returning to the application"),
    ("form_post_text", "If nothing happens, press Continue."),
    ("form_post_continue", "Continue"),
];

pub const DE: Messages = &[
    ("consent_title", "Zugriff erlauben?"),
    ("consent_intro", "{app} möchte:"),
    (
        "consent_scope_openid",
        "Wissen, wer Sie sind (die Kennung Ihres Kontos hier)",
    ),
    ("consent_scope_profile", "Ihren Namen und Benutzernamen sehen"),
    (
        "consent_scope_email",
        "Ihre E-Mail-Adresse sehen und ob sie bestätigt ist",
    ),
    ("consent_scope_roles", "Ihre Rollen und Berechtigungen sehen"),
    (
        "consent_scope_offline_access",
        "Diesen Zugriff behalten, auch wenn Sie nicht da sind, bis Sie ihn widerrufen",
    ),
    ("consent_signed_in_as", "Angemeldet als {name}."),
    ("consent_return", "In beiden Fällen kehren Sie zu {uri} zurück."),
    ("consent_allow", "Erlauben"),
    ("consent_deny", "Ablehnen"),
    ("form_post_title", "Zurück zur Anwendung"),
    ("form_post_text", "Falls nichts passiert, drücken Sie auf Weiter."),
    ("form_post_continue", "Weiter"),
];

/// The catalogue key of a scope's words on the consent page.
fn scope_key(scope: &str) -> &'static str {
    match scope {
        "openid" => "consent_scope_openid",
        "profile" => "consent_scope_profile",
        "email" => "consent_scope_email",
        "roles" => "consent_scope_roles",
        _ => "consent_scope_offline_access",
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    c: Chrome,
    intro: String,
    items: Vec<&'static str>,
    signed_in_as: String,
    return_note: String,
    csrf: &'a str,
    fields: Vec<(&'static str, &'a str)>,
}

#[derive(Template)]
#[template(path = "continue.html")]
struct ContinuePage<'a> {
    c: Chrome,
    href: &'a str,
    script: &'static str,
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    c: Chrome,
    action: &'a str,
    fields: &'a [(&'static str, String)],
    script: &'static str,
}

/// The language of the authorization pages: one picked with the switcher, else the
/// first of the request's `ui_locales` we have, else the browser's.
fn page_lang(lang: Lang, uri: &Uri, ui_locales: Option<&str>) -> Lang {
    if super::picked_in_query(uri).is_some() {
        return lang;
    }
    ui_locales
        .unwrap_or_default()
        .split(' ')
        .find_map(|tag| Lang::named(tag.split('-').next().unwrap_or(tag)))
        .unwrap_or(lang)
}

/// `GET /oauth2/authorize`.
pub async fn authorize(
    State(service): State<Portcullis>,
    lang: Lang,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> AppResult<Response> {
    let Query(params) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let session = current_session(&service, &headers).await?;
    let lang = page_lang(lang, &uri, params.ui_locales.as_deref());
    // Sent here by our own pages (a sign-in form's redirect): a redirect on to the
    // application would be one more hop of that form's navigation, which the sign-in
    // page's CSP (`form-action`) does not allow; a page that links on starts a new one.
    let from_our_pages = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin");
    Ok(match service.authorize(&params, session.as_ref()).await? {
        Next::Answer(reply) if from_our_pages && reply.mode == ResponseMode::Query => {
            let href = query_url(&reply);
            let page = ContinuePage {
                c: Chrome::new(&service, lang),
                href: &href,
                script: script_name(),
            };
            render(StatusCode::OK, &page)
        }
        Next::Answer(reply) => answer(&service, lang, &reply),
        Next::SignIn(request) => to_sign_in(&service, lang, &uri, &request),
        Next::Consent(request) => match session {
            Some(session) => consent_page(&service, lang, &params, &request, &session),
            None => return Err(AppError::internal(anyhow::anyhow!("consent without a session"))),
        },
    })
}

/// Off to the sign-in page, coming back to this same request with the `reauth_at`
/// marker (see `domain::oidc::authorize`).
fn to_sign_in(service: &Portcullis, lang: Lang, uri: &Uri, req: &AuthRequest) -> Response {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("lang=") && !p.starts_with(&format!("{REAUTH_PARAM}=")))
        .collect();
    // The sign-in this leads to is fresh for the request whether or not one was
    // asked for (without a session, prompt=login and max_age are met by it too).
    let marker = format!(
        "{REAUTH_PARAM}={}",
        service.reauth_marker(chrono::Utc::now().timestamp(), req)
    );
    query.push(&marker);
    let return_to = format!("{}?{}", service.config().path("/oauth2/authorize"), query.join("&"));
    if super::return_to::safe_return_to(&return_to).is_none() {
        return answer(
            service,
            lang,
            &req.refuse("invalid_request", "the authorization request is too long"),
        );
    }
    let mut to = format!(
        "{}?return_to={}",
        service.config().path("/login"),
        utf8_percent_encode(&return_to, NON_ALPHANUMERIC)
    );
    // The form even to a browser with a session (prompt=login, max_age).
    to.push_str("&prompt=login");
    if let Some(hint) = &req.login_hint {
        to.push_str(&format!("&login_hint={}", utf8_percent_encode(hint, NON_ALPHANUMERIC)));
    }
    Redirect::to(&to).into_response()
}

fn consent_page(
    service: &Portcullis,
    lang: Lang,
    params: &AuthorizeParams,
    req: &AuthRequest,
    session: &BrowserSession,
) -> Response {
    let page = ConsentPage {
        c: Chrome::new(service, lang),
        intro: lang.get("consent_intro").replace("{app}", &req.client.name),
        items: req.scopes.iter().map(|s| lang.get(scope_key(s))).collect(),
        signed_in_as: lang.get("consent_signed_in_as").replace("{name}", &session.username),
        return_note: lang.get("consent_return").replace("{uri}", &req.redirect_uri),
        csrf: &session.csrf_token,
        fields: params.pairs(),
    };
    with_form_action(service, &req.redirect_uri, render(StatusCode::OK, &page))
}

/// The consent form's answer.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(flatten)]
    params: AuthorizeParams,
}

/// `POST /oauth2/authorize`: Allow or Deny from the consent page.
pub async fn decide(
    State(service): State<Portcullis>,
    lang: Lang,
    uri: Uri,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<DecisionForm>,
) -> AppResult<Response> {
    check_csrf(&session, &CsrfForm { csrf: form.csrf })?;
    let allow = match form.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return Err(AppError::BadRequest("decision must be allow or deny".into())),
    };
    let lang = page_lang(lang, &uri, form.params.ui_locales.as_deref());
    let reply = service.decide_consent(&form.params, &session, allow).await?;
    Ok(answer(&service, lang, &reply))
}

/// The answer to the application: a redirect with the parameters in its query, or
/// (`form_post`) a page whose form posts them (sent at once by the pages' script, or
/// by its button without script).
fn answer(service: &Portcullis, lang: Lang, reply: &Reply) -> Response {
    match reply.mode {
        ResponseMode::Query => Redirect::to(&query_url(reply)).into_response(),
        ResponseMode::FormPost => {
            let page = FormPostPage {
                c: Chrome::new(service, lang),
                action: &reply.redirect_uri,
                fields: &reply.params,
                script: script_name(),
            };
            with_form_action(service, &reply.redirect_uri, render(StatusCode::OK, &page))
        }
    }
}

/// The redirect URI with the answer's parameters added to its query.
fn query_url(reply: &Reply) -> String {
    let query: Vec<String> = reply
        .params
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect();
    let sep = if reply.redirect_uri.contains('?') { '&' } else { '?' };
    format!("{}{sep}{}", reply.redirect_uri, query.join("&"))
}

/// The pages' CSP, its `form-action` also allowing the application's redirect URI
/// (the consent form's answer is a redirect there; the form_post page posts there).
fn with_form_action(service: &Portcullis, redirect_uri: &str, mut res: Response) -> Response {
    res.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        super::page_csp_posting_to(service.config(), redirect_uri),
    );
    res
}
