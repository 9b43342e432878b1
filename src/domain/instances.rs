//! The instances serving from one database, which must agree on the issuer they sign
//! tokens as: each refuses tokens whose `iss` is not its own, and the default issuer
//! is derived from each instance's own bind address, so two instances on different
//! ports without `PORTCULLIS_PUBLIC_URL` would refuse each other's tokens.

use std::time::Duration;

use chrono::Utc;

use crate::domain::Portcullis;
use crate::error::AppResult;

/// How often a serving instance marks itself as still serving.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long an instance's record counts as live without a heartbeat: an instance that
/// was killed (and so could not remove its record) stops counting after this.
const LIVE_FOR: Duration = Duration::from_secs(35);

impl Portcullis {
    /// Records this instance, with its issuer, among those serving from the database,
    /// and refuses to go on when a live one signs as another issuer, naming both: a
    /// security service should not start half-working. With
    /// `PORTCULLIS_ALLOW_ISSUER_MISMATCH` it says so as an error and goes on.
    pub async fn join_instances(&self) -> anyhow::Result<()> {
        let issuer = self.config().tokens.jwt_issuer.as_str();
        let now = Utc::now();
        let live_for = chrono::Duration::from_std(LIVE_FOR)?;
        let id = self.inner().instance.as_str();
        let others = self
            .store()
            .join_instances(id, issuer, now, now - live_for)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(other) = others.iter().find(|o| o.issuer != issuer) else {
            return Ok(());
        };
        let problem = format!(
            "this instance's issuer is {issuer}, but another instance serving from the same database (seen at {}) signs as {}: each would refuse the other's tokens; give every instance the same PORTCULLIS_PUBLIC_URL (or JWT_ISSUER)",
            other.seen_at.format("%Y-%m-%dT%H:%M:%SZ"),
            other.issuer,
        );
        if self.config().server.allow_issuer_mismatch {
            tracing::error!("{problem} (starting anyway: PORTCULLIS_ALLOW_ISSUER_MISMATCH is set)");
            return Ok(());
        }
        if let Err(e) = self.store().leave_instances(id).await {
            tracing::warn!(error = %e, "forgetting this instance's record failed");
        }
        anyhow::bail!(
            "{problem}; or set PORTCULLIS_ALLOW_ISSUER_MISMATCH=true to start anyway (a stopped instance stops counting {} s after it was last seen)",
            LIVE_FOR.as_secs()
        )
    }

    /// Marks this instance as still serving (nothing when it never joined).
    pub async fn touch_instance(&self) -> AppResult<()> {
        self.store().touch_instance(&self.inner().instance, Utc::now()).await
    }

    /// Forgets this instance's record, on shutdown.
    pub async fn leave_instances(&self) -> AppResult<()> {
        self.store().leave_instances(&self.inner().instance).await
    }
}
