//! What a person allowed an application: remembered when they consent (so the consent
//! page is shown again only when the application asks for more), listed on the
//! account's "Apps" page and `GET /auth/me/apps`, and revoked there, which also ends
//! every session the application holds for them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::scopes;
use crate::domain::audit::AuditEvent;
use crate::domain::{Actor, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::Ending;

/// One application a person allowed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub client_id: String,
    /// The application's name, as registered.
    pub name: String,
    /// The scopes allowed, in the order `scopes::SCOPES` lists them.
    pub scopes: Vec<String>,
    pub granted_at: DateTime<Utc>,
    /// When the application last signed in or refreshed its tokens; absent if never.
    pub last_used: Option<DateTime<Utc>>,
}

/// `scopes` without repeats, known ones first in `scopes::SCOPES`'s order.
fn ordered(mut list: Vec<String>) -> Vec<String> {
    list.sort_by_key(|s| scopes::SCOPES.iter().position(|k| k == s).unwrap_or(usize::MAX));
    list.dedup();
    list
}

impl Portcullis {
    /// Remembers that `user_id` allowed `client_id` these scopes, on top of what they
    /// allowed it before (`CONSENT_GRANT`). Each scope must be one the client may
    /// ask for.
    pub async fn remember_consent(&self, user_id: Uuid, client_id: &str, granted: &[String]) -> AppResult<()> {
        let client = self.client(client_id).await?;
        if let Some(bad) = granted.iter().find(|s| !client.allows_scope(s)) {
            return Err(AppError::validation(
                "scope",
                format!("scope {bad:.60} is not allowed for this client"),
            ));
        }
        let mut all = self.consented_scopes(user_id, client_id).await?.unwrap_or_default();
        all.extend(granted.iter().cloned());
        let all = ordered(all);
        let record = self.audit_record(
            AuditEvent::new("CONSENT_GRANT")
                .actor_id(Some(user_id))
                .resource("client", client_id)
                .meta("scopes", &all),
        );
        self.store()
            .put_consent(user_id, client_id, &scopes::join(&all), Utc::now(), record.as_ref())
            .await
    }

    /// The scopes `user_id` has allowed `client_id`; None if they never consented (or
    /// revoked it).
    pub async fn consented_scopes(&self, user_id: Uuid, client_id: &str) -> AppResult<Option<Vec<String>>> {
        Ok(self
            .store()
            .consent(user_id, client_id)
            .await?
            .map(|s| scopes::parse(&s)))
    }

    /// The applications `user_id` allowed, by name.
    pub async fn list_grants(&self, user_id: Uuid) -> AppResult<Vec<Grant>> {
        Ok(self
            .store()
            .grants_of(user_id)
            .await?
            .into_iter()
            .map(|g| Grant {
                scopes: ordered(scopes::parse(&g.scope)),
                client_id: g.client_id,
                name: g.name,
                granted_at: g.granted_at,
                last_used: g.last_used,
            })
            .collect())
    }

    /// Takes back what `user_id` allowed `client_id`: the consent is forgotten and
    /// every session the application holds for them ends, through the revocation feed
    /// (`CONSENT_REVOKE`). 404 when there was no such
    /// grant. The number of sessions ended.
    pub async fn revoke_grant(&self, user_id: Uuid, client_id: &str, by: &Actor) -> AppResult<usize> {
        let gone = || AppError::NotFound(format!("no app {client_id:.100} is allowed"));
        if client_id.is_empty() || client_id.len() > 100 {
            return Err(gone());
        }
        let now = Utc::now();
        let mut event = by.event("CONSENT_REVOKE").resource("client", client_id);
        if event.actor.is_none() {
            event = event.actor_id(Some(user_id));
        }
        let record = self.audit_record(event);
        let end = Ending {
            now,
            until: self.revocation_horizon(now),
            reason: "consent_revoked",
        };
        let ended = self
            .store()
            .revoke_grant(user_id, client_id, end, record.as_ref())
            .await?
            .ok_or_else(gone)?;
        self.forget_sessions(&ended, now);
        Ok(ended.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_kept_in_the_catalogue_order() {
        let got = ordered(vec!["email".into(), "openid".into(), "email".into(), "roles".into()]);
        assert_eq!(got, vec!["openid", "email", "roles"]);
    }
}
