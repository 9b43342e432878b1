//! The session list (`/account/sessions`): every live session of the user, browser and
//! token alike, as `GET /auth/sessions` lists them (`Portcullis::sessions_of`); ending
//! one as `DELETE /auth/sessions/{id}` does (`end_session`), or all but this browser's
//! (`end_other_sessions`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{Chrome, CsrfForm, check_csrf, render, set_cookie};
use super::profile::{DoneQuery, notice};
use super::{Lang, Messages, SESSION_COOKIE};
use crate::domain::{Actor, BrowserSession, ClientContext, Portcullis};
use crate::error::{AppError, AppResult};

/// One session as the page shows it.
struct SessionView {
    id: Uuid,
    /// This browser's own session.
    current: bool,
    /// Catalogue key: a browser's session or a token login's.
    kind: &'static str,
    /// An application's session: its name.
    app: Option<String>,
    created: Moment,
    last_used: Moment,
    ip: String,
    user_agent: String,
}

/// A time for a person (UTC, to the minute) and for a machine (`datetime`).
pub(super) struct Moment {
    pub(super) text: String,
    pub(super) iso: String,
}

impl From<DateTime<Utc>> for Moment {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage<'a> {
    c: Chrome,
    section: &'static str,
    session: &'a BrowserSession,
    sessions: Vec<SessionView>,
    notice: Option<&'static str>,
    message: Option<&'static str>,
}

impl SessionsPage<'_> {
    /// Whether any session but this browser's is live.
    fn has_others(&self) -> bool {
        self.sessions.iter().any(|s| !s.current)
    }
}

/// The page, listing the user's live sessions now.
async fn render_page(
    service: &Portcullis,
    lang: Lang,
    session: &BrowserSession,
    status: StatusCode,
    notice: Option<&'static str>,
    message: Option<&'static str>,
) -> AppResult<Response> {
    let unknown = lang.get("unknown");
    let sessions = service
        .sessions_of(session.user_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            current: s.id == session.session_id,
            kind: match (s.browser, &s.client_id) {
                (true, _) => "session_browser",
                (false, Some(_)) => "session_app",
                (false, None) => "session_token",
            },
            app: s.client_name.or(s.client_id),
            created: s.created_at.into(),
            last_used: s.last_refreshed_at.into(),
            ip: s.ip.unwrap_or_else(|| unknown.to_string()),
            user_agent: s.user_agent.unwrap_or_else(|| unknown.to_string()),
        })
        .collect();
    let page = SessionsPage {
        c: Chrome::new(service, lang),
        section: "sessions",
        session,
        sessions,
        notice,
        message,
    };
    Ok(render(status, &page))
}

/// `GET /account/sessions`.
pub async fn page(
    State(service): State<Portcullis>,
    lang: Lang,
    Extension(session): Extension<BrowserSession>,
    Query(q): Query<DoneQuery>,
) -> AppResult<Response> {
    let done = notice(lang, &q, &[("ended", "session_ended"), ("others", "others_ended")]);
    render_page(&service, lang, &session, StatusCode::OK, done, None).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    session: String,
}

/// `POST /account/sessions/revoke`: ends one of the user's sessions, as
/// `DELETE /auth/sessions/{id}`. Ending this browser's own is signing out.
pub async fn revoke(
    State(service): State<Portcullis>,
    lang: Lang,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form.csrf)?;
    let gone = async |status| render_page(&service, lang, &session, status, None, Some(lang.get("session_gone"))).await;
    let Ok(id) = Uuid::parse_str(form.session.trim()) else {
        return gone(StatusCode::BAD_REQUEST).await;
    };
    let by = Actor::user(session.user_id, &session.username, &ctx);
    match service.end_session(session.user_id, id, &by).await {
        Ok(()) if id == session.session_id => {
            let to = format!("{}?signed_out=1", service.config().path("/login"));
            Ok(([set_cookie(SESSION_COOKIE, "", Some(0))], Redirect::to(&to)).into_response())
        }
        Ok(()) => Ok(Redirect::to(&service.config().path("/account/sessions?done=ended")).into_response()),
        // Not the user's, or already over (ended elsewhere meanwhile).
        Err(AppError::NotFound(_)) => gone(StatusCode::NOT_FOUND).await,
        Err(e) => Err(e),
    }
}

/// `POST /account/sessions/others`: ends every session of the user but this
/// browser's, browser and token alike.
pub async fn end_others(
    State(service): State<Portcullis>,
    ctx: ClientContext,
    Extension(session): Extension<BrowserSession>,
    Form(form): Form<CsrfForm>,
) -> AppResult<Response> {
    check_csrf(&session, &form)?;
    service.end_other_sessions(&session, &ctx).await?;
    Ok(Redirect::to(&service.config().path("/account/sessions?done=others")).into_response())
}

pub const EN: Messages = &[
    ("sessions_title", "Sessions"),
    (
        "sessions_intro",
        "Where your account is signed in: browsers using these pages, and apps holding tokens.",
    ),
    ("session_browser", "Browser"),
    ("session_token", "App or API (tokens)"),
    ("session_app", "Application"),
    ("session_current", "This browser"),
    ("session_created", "Signed in"),
    ("session_last_used", "Last used"),
    ("session_ip", "IP address"),
    ("session_agent", "Device"),
    ("unknown", "unknown"),
    ("end_session", "Sign out this session"),
    ("end_others", "Sign out all other sessions"),
    ("session_ended", "The session was signed out."),
    ("others_ended", "All your other sessions were signed out."),
    ("session_gone", "That session is not active any more."),
    ("no_other_sessions", "You are signed in nowhere else."),
];

pub const DE: Messages = &[
    ("sessions_title", "Sitzungen"),
    (
        "sessions_intro",
        "Wo Ihr Konto angemeldet ist: Browser auf diesen Seiten und Apps mit Tokens.",
    ),
    ("session_browser", "Browser"),
    ("session_token", "App oder API (Tokens)"),
    ("session_app", "Anwendung"),
    ("session_current", "Dieser Browser"),
    ("session_created", "Angemeldet"),
    ("session_last_used", "Zuletzt verwendet"),
    ("session_ip", "IP-Adresse"),
    ("session_agent", "Gerät"),
    ("unknown", "unbekannt"),
    ("end_session", "Diese Sitzung abmelden"),
    ("end_others", "Alle anderen Sitzungen abmelden"),
    ("session_ended", "Die Sitzung wurde abgemeldet."),
    ("others_ended", "Alle Ihre anderen Sitzungen wurden abgemeldet."),
    ("session_gone", "Diese Sitzung ist nicht mehr aktiv."),
    ("no_other_sessions", "Sie sind nirgendwo sonst angemeldet."),
];
