//! `/audit/*`: reading, exporting and writing the audit trail.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Caller;
use super::extract::{ValidJson, ValidQuery};
use crate::domain::audit::write_terminal_safe_json;
use crate::domain::{AuditEvent, ClientContext};
use crate::error::{AppError, AppResult};
use crate::http::state::AppState;
use crate::store::{AuditFilter, AuditRow};

/// Filters shared by the log and the export; absent ones do not filter.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AuditQuery {
    pub user_id: Option<String>,
    pub username: Option<String>,
    /// One action or several, comma-separated (`LOGIN,LOGIN_FAILURE`); an action's
    /// former name finds it too (`LOGIN_SUCCESS`). Portcullis's own actions in any
    /// case; a name neither one of them nor recorded so far is a 422.
    pub action: Option<String>,
    /// `event` or `request`.
    pub kind: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub status: Option<i32>,
    pub ip: Option<String>,
    /// RFC 3339, 1970 to 3000; inclusive.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339, 1970 to 3000; exclusive.
    pub until: Option<DateTime<Utc>>,
    /// 1-1000, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `next_cursor` of the previous page: stable paging while new records arrive.
    pub cursor: Option<i64>,
}

impl AuditQuery {
    fn filter(&self) -> AppResult<AuditFilter> {
        let text = |field: &str, v: &Option<String>| -> AppResult<Option<String>> {
            match v {
                Some(s) if s.len() > 256 => Err(AppError::validation(field, "is too long")),
                other => Ok(other.clone().filter(|s| !s.is_empty())),
            }
        };
        Ok(AuditFilter {
            user_id: text("user_id", &self.user_id)?,
            username: text("username", &self.username)?,
            actions: text("action", &self.action)?
                .map(|a| {
                    a.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            kind: text("kind", &self.kind)?,
            resource_type: text("resource_type", &self.resource_type)?,
            resource_id: text("resource_id", &self.resource_id)?,
            status: self.status,
            ip: text("ip", &self.ip)?,
            since: self.since,
            until: self.until,
            before_id: self.cursor,
            after_id: None,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageOut {
    /// Newest first.
    pub items: Vec<AuditRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// The actions recorded so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActionsOut {
    /// In alphabetical order.
    pub actions: Vec<String>,
}

pub async fn actions(State(state): State<AppState>) -> AppResult<Json<AuditActionsOut>> {
    Ok(Json(AuditActionsOut {
        actions: state.service.audit_actions().await?,
    }))
}

pub async fn list(State(state): State<AppState>, ValidQuery(q): ValidQuery<AuditQuery>) -> AppResult<Response> {
    let limit = q.limit.unwrap_or(100);
    let offset = q.offset.unwrap_or(0);
    let items = state.service.audit_log(&q.filter()?, limit, offset).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    let mut body = Vec::new();
    write_terminal_safe_json(&mut body, &AuditPageOut { items, next_cursor }).map_err(AppError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Streams matching records, oldest first, one JSON object per line, reading the
/// table a page at a time so an export of any size holds one page in memory.
pub async fn export(State(state): State<AppState>, ValidQuery(q): ValidQuery<AuditQuery>) -> AppResult<Response> {
    // Refused before the answer starts, not as a cut-off stream.
    let filter = state.service.resolve_audit_filter(&q.filter()?).await?;
    let service = state.service.clone();
    const PAGE: i64 = 1000;
    let stream = futures_util::stream::unfold(Some(filter), move |next| {
        let service = service.clone();
        async move {
            let mut filter = next?;
            match service.audit_log_forward(&filter, PAGE).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let more = rows.len() as i64 == PAGE;
                    if let Some(last) = rows.last() {
                        filter.after(last.id);
                    }
                    let mut chunk = Vec::new();
                    for row in &rows {
                        if write_terminal_safe_json(&mut chunk, row).is_ok() {
                            chunk.push(b'\n');
                        }
                    }
                    Some((Ok::<_, std::io::Error>(chunk), more.then_some(filter)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit export stopped");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A custom event from a service holding `audit:write`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuditEventRequest {
    /// Upper-case letters, digits and `_`, e.g. `INVOICE_APPROVED`.
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Any JSON object; never put secrets here.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

pub async fn record(
    State(state): State<AppState>,
    ctx: ClientContext,
    Caller(caller): Caller,
    ValidJson(req): ValidJson<AuditEventRequest>,
) -> AppResult<StatusCode> {
    let action_ok = (1..=64).contains(&req.action.len())
        && req.action.as_bytes()[0].is_ascii_uppercase()
        && req
            .action
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !action_ok {
        return Err(AppError::validation(
            "action",
            "must be 1-64 upper-case letters, digits or _, starting with a letter",
        ));
    }
    let mut event = AuditEvent::new(&req.action)
        .actor(caller.user_id, &caller.username)
        .client(&ctx);
    for (field, value) in [("resource_type", &req.resource_type), ("resource_id", &req.resource_id)] {
        if let Some(v) = value {
            crate::domain::validate::all([crate::domain::validate::text(field, v, 200)])?;
        }
    }
    if let (Some(kind), Some(id)) = (&req.resource_type, &req.resource_id) {
        event = event.resource(kind, id);
    }
    if let Some(meta) = req.metadata {
        event.metadata = serde_json::Value::Object(meta);
    }
    event = event.meta("source", "api");
    state.service.log_event(event).await?;
    Ok(StatusCode::CREATED)
}
