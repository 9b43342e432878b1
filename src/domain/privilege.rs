//! The privilege rule: no one grants what they do not hold, and no one acts on an
//! account that outranks their own.
//!
//! - **Handing out.** Giving a user a role (assigning it, or creating the user with
//!   it), or putting permissions into a role (creating, granting, replacing its set),
//!   requires holding every permission handed out. Taking permissions out of a role
//!   (revoking, replacing its set, deleting the role or the permission) requires the
//!   same: what one could not give, one cannot take away from others.
//! - **Rank.** Accounts rank as user < administrator (holds the `admin` role) <
//!   superuser. Making someone a superuser, or changing a superuser, takes a
//!   superuser; giving or removing the `admin` role, changing the `admin` role itself,
//!   or changing an administrator takes an administrator (or a superuser).
//!
//! Superusers and the operator (CLI, a service embedding the library) are bound by
//! neither. What a caller holds is what the credential of the request grants: an API
//! key or temporary token holds its scope, and is never an administrator.

use uuid::Uuid;

use super::{Actor, Authority, Portcullis};
use crate::error::{AppError, AppResult};
use crate::store::UserRow;

/// The role that makes its holder an administrator.
pub const ADMIN_ROLE: &str = "admin";

/// How an account ranks for the privilege rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    User,
    Administrator,
    Superuser,
}

impl Rank {
    fn name(self) -> &'static str {
        match self {
            Rank::User => "user",
            Rank::Administrator => "an administrator",
            Rank::Superuser => "a superuser",
        }
    }
}

impl Authority {
    /// The actor's rank; the operator outranks everyone.
    fn rank(&self) -> Option<Rank> {
        match self {
            Authority::Operator => None,
            Authority::Holder { superuser: true, .. } => Some(Rank::Superuser),
            Authority::Holder {
                administrator: true, ..
            } => Some(Rank::Administrator),
            Authority::Holder { .. } => Some(Rank::User),
        }
    }

    /// Whether the actor is bound by no part of the rule.
    fn unbound(&self) -> bool {
        matches!(self.rank(), None | Some(Rank::Superuser))
    }

    fn holds(&self, permission: &str) -> bool {
        match self {
            Authority::Operator | Authority::Holder { superuser: true, .. } => true,
            Authority::Holder { permissions, .. } => permissions.iter().any(|p| p == permission),
        }
    }
}

/// Refuses unless `by` ranks at least `needed`; `what` names the change.
pub fn require_rank(by: &Actor, needed: Rank, what: &str) -> AppResult<()> {
    match by.authority.rank() {
        Some(rank) if rank < needed => Err(AppError::Forbidden(format!("only {} can {what}", needed.name()))),
        _ => Ok(()),
    }
}

/// Refuses unless `by` holds every one of `permissions`; `what` names the change
/// ("grant", "remove").
pub fn require_holding<'a>(by: &Actor, permissions: impl IntoIterator<Item = &'a String>, what: &str) -> AppResult<()> {
    if by.authority.unbound() {
        return Ok(());
    }
    let mut missing: Vec<&str> = permissions
        .into_iter()
        .filter(|p| !by.authority.holds(p))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    missing.dedup();
    Err(AppError::Forbidden(format!(
        "you cannot {what} permissions you do not hold: {}",
        missing.join(", ")
    )))
}

impl Portcullis {
    /// How `user` ranks, as stored now.
    async fn rank_of(&self, user: &UserRow) -> AppResult<Rank> {
        if user.is_superuser {
            return Ok(Rank::Superuser);
        }
        let grants = self.store().grants(user.id, false).await?;
        Ok(if grants.roles.iter().any(|r| r == ADMIN_ROLE) {
            Rank::Administrator
        } else {
            Rank::User
        })
    }

    /// The rule every administrative change to a user goes through: `by` must rank
    /// at least as high as the user. Returns the user (404 when there is none).
    pub(crate) async fn may_act_on(&self, user_id: Uuid, by: &Actor) -> AppResult<UserRow> {
        let user = self.user(user_id).await?;
        if !by.authority.unbound() {
            let rank = self.rank_of(&user).await?;
            require_rank(by, rank, &format!("change {}'s account", rank.name()))?;
        }
        Ok(user)
    }

    /// The rule for giving `role` to a user: `by` must hold every permission of the
    /// role, and be an administrator for the `admin` role. An unknown role hands out
    /// nothing (the caller reports it).
    pub(crate) async fn may_give_role(&self, role: &str, by: &Actor) -> AppResult<()> {
        if role == ADMIN_ROLE {
            require_rank(by, Rank::Administrator, &format!("give the {ADMIN_ROLE} role"))?;
        }
        if by.authority.unbound() {
            return Ok(());
        }
        match self.store().role(role).await? {
            Some(row) => require_holding(by, &row.permissions, "grant"),
            None => Ok(()),
        }
    }

    /// The rule for changing the permissions of `role`: `changed` are those put in
    /// or taken out; the `admin` role is changed only by an administrator.
    pub(crate) fn may_change_role(&self, role: &str, changed: &[String], by: &Actor) -> AppResult<()> {
        if role == ADMIN_ROLE {
            require_rank(by, Rank::Administrator, &format!("change the {ADMIN_ROLE} role"))?;
        }
        require_holding(by, changed, "grant or remove")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(superuser: bool, administrator: bool, permissions: &[&str]) -> Actor {
        Actor {
            authority: Authority::Holder {
                superuser,
                administrator,
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            },
            ..Actor::default()
        }
    }

    #[test]
    fn ranks_and_holdings() {
        let um = holder(false, false, &["users:manage"]);
        let admin = holder(false, true, &["users:manage"]);
        let su = holder(true, false, &[]);
        let op = Actor::system();
        let want = vec!["users:manage".to_string(), "roles:manage".to_string()];
        assert!(require_holding(&um, &want, "grant").is_err());
        assert!(require_holding(&um, &want[..1], "grant").is_ok());
        assert!(require_holding(&su, &want, "grant").is_ok());
        assert!(require_holding(&op, &want, "grant").is_ok());
        assert!(require_rank(&um, Rank::Administrator, "x").is_err());
        assert!(require_rank(&admin, Rank::Administrator, "x").is_ok());
        assert!(require_rank(&admin, Rank::Superuser, "x").is_err());
        assert!(require_rank(&su, Rank::Superuser, "x").is_ok());
        assert!(require_rank(&op, Rank::Superuser, "x").is_ok());
        // A self-service actor holds nothing.
        let me = Actor::user(Uuid::nil(), "me", &Default::default());
        assert!(require_holding(&me, &want[..1], "grant").is_err());
        assert!(require_rank(&me, Rank::Administrator, "x").is_err());
    }
}
