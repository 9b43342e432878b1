//! Ended sessions, held in memory so every token check can refuse them without a
//! database round-trip.
//!
//! The local instance records a revocation the moment it makes one; revocations made
//! by other instances arrive through the store's revocation feed, which each instance
//! polls (see `Portcullis::sync_revocations`). An entry lives until every access token
//! of that session has expired anyway.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::RevocationRow;

/// Feed rows already applied, so the overlapping windows the sync loop re-reads are
/// applied once: ending a session twice is harmless, but each re-applied user or
/// grants event would needlessly invalidate caches again.
#[derive(Debug, Default)]
pub struct AppliedRows {
    seen: std::sync::Mutex<HashMap<i64, std::time::Instant>>,
}

impl AppliedRows {
    /// The rows not applied before; remembers them.
    pub fn fresh<'a>(&self, rows: &'a [RevocationRow]) -> Vec<&'a RevocationRow> {
        let Ok(mut seen) = self.seen.lock() else {
            return rows.iter().collect();
        };
        let now = std::time::Instant::now();
        // The sync loop re-reads a few seconds; a minute of memory is plenty.
        seen.retain(|_, at| now.duration_since(*at) < std::time::Duration::from_secs(60));
        rows.iter().filter(|r| seen.insert(r.id, now).is_none()).collect()
    }
}

#[derive(Debug, Default)]
pub struct RevocationSet {
    sessions: RwLock<HashMap<Uuid, DateTime<Utc>>>,
}

impl RevocationSet {
    pub fn revoke_session(&self, id: Uuid, until: DateTime<Utc>) {
        if let Ok(mut map) = self.sessions.write() {
            let e = map.entry(id).or_insert(until);
            *e = (*e).max(until);
        }
    }

    pub fn is_session_revoked(&self, id: &Uuid) -> bool {
        self.sessions.read().map(|m| m.contains_key(id)).unwrap_or(true)
    }

    /// Applies rows from the feed; unknown kinds (from newer versions) are skipped.
    pub fn apply(&self, rows: &[&RevocationRow]) {
        for row in rows {
            if row.kind == "session"
                && let Ok(id) = Uuid::parse_str(&row.subject)
            {
                self.revoke_session(id, row.expires_at);
            }
        }
    }

    pub fn purge(&self, now: DateTime<Utc>) {
        if let Ok(mut map) = self.sessions.write() {
            map.retain(|_, until| *until > now);
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_apply_and_purge() {
        let set = RevocationSet::default();
        let now = Utc::now();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        set.revoke_session(a, now + chrono::Duration::seconds(60));
        let rows = [
            RevocationRow {
                id: 1,
                kind: "session".into(),
                subject: b.to_string(),
                expires_at: now - chrono::Duration::seconds(1),
            },
            RevocationRow {
                id: 2,
                kind: "future-kind".into(),
                subject: "x".into(),
                expires_at: now,
            },
        ];
        set.apply(&rows.iter().collect::<Vec<_>>());
        assert!(set.is_session_revoked(&a) && set.is_session_revoked(&b));
        set.purge(now);
        assert!(set.is_session_revoked(&a));
        assert!(!set.is_session_revoked(&b));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn rows_apply_once() {
        let applied = AppliedRows::default();
        let row = |id| RevocationRow {
            id,
            kind: "user".into(),
            subject: "u".into(),
            expires_at: Utc::now(),
        };
        let first = [row(1), row(2)];
        assert_eq!(applied.fresh(&first).len(), 2);
        let overlap = [row(2), row(3)];
        let fresh = applied.fresh(&overlap);
        assert_eq!(fresh.iter().map(|r| r.id).collect::<Vec<_>>(), [3]);
    }
}
