//! Ended sessions, held in memory so every token check can refuse them without a
//! database round-trip.
//!
//! The local instance records a revocation the moment it makes one; revocations made
//! by other instances arrive through the store's revocation feed, which each instance
//! polls (see `Portcullis::sync_revocations`). An entry lives until every access token
//! of that session has expired anyway.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::RevocationRow;

/// Where this instance stands in the revocation feed, and the rows it has applied that
/// the next poll reads again (the store re-reads from the last position; see
/// `store::revocations`): ending a session twice is harmless, but each re-applied user
/// or grants event would needlessly invalidate caches again.
#[derive(Debug, Default)]
pub struct FeedCursor {
    state: std::sync::Mutex<(i64, HashSet<i64>)>,
}

impl FeedCursor {
    /// The position the next poll reads from.
    pub fn position(&self) -> i64 {
        self.state.lock().map(|s| s.0).unwrap_or(0)
    }

    /// The rows read from the last position that were not applied before; moves on to
    /// `next`, remembering the rows read (those the next poll can return again).
    pub fn advance<'a>(&self, next: i64, rows: &'a [RevocationRow]) -> Vec<&'a RevocationRow> {
        let Ok(mut state) = self.state.lock() else {
            return rows.iter().collect();
        };
        let fresh = rows.iter().filter(|r| !state.1.contains(&r.id)).collect();
        state.0 = state.0.max(next);
        state.1 = rows.iter().map(|r| r.id).collect();
        fresh
    }

    /// Start-up: every live row was loaded, reading resumes at `position`.
    pub fn start(&self, position: i64, loaded: &[RevocationRow]) {
        if let Ok(mut state) = self.state.lock() {
            *state = (position, loaded.iter().map(|r| r.id).collect());
        }
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
        let cursor = FeedCursor::default();
        let row = |id| RevocationRow {
            id,
            kind: "user".into(),
            subject: "u".into(),
            expires_at: Utc::now(),
        };
        cursor.start(5, &[row(1)]);
        assert_eq!(cursor.position(), 5);
        let first = [row(1), row(2)];
        let fresh = cursor.advance(7, &first);
        assert_eq!(fresh.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
        assert_eq!(cursor.position(), 7);
        // Read again (its transaction was still open), and a later row committed
        // before an earlier one: each applied once.
        let overlap = [row(2), row(4), row(3)];
        let fresh = cursor.advance(7, &overlap);
        assert_eq!(fresh.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 3]);
        // The position never moves back.
        cursor.advance(6, &[]);
        assert_eq!(cursor.position(), 7);
    }
}
