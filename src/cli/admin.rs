//! Operator commands on the configured database: users and roles. They act as the
//! operator (`Actor::system()`, audited with `"via": "system"`), through the same
//! domain operations as the HTTP API.
//!
//! Output is a short table for people, or JSON (`--json`) for scripts. Exit codes:
//! 0 done, 1 failure, 2 usage, 3 not found, 4 refused (invalid input, conflict,
//! last-administrator protection).

use std::io::{BufRead, IsTerminal};

use crate::Portcullis;
use crate::domain::Actor;
use crate::domain::accounts::Registration;
use crate::domain::accounts::UserQuery;
use crate::error::AppError;
use crate::store::UserRow;
use clap::{Args, Subcommand};
use serde_json::json;

/// A command failure with the exit code it maps to.
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl From<AppError> for CliError {
    fn from(e: AppError) -> Self {
        let code = match &e {
            AppError::NotFound(_) => 3,
            AppError::Validation(_) | AppError::BadRequest(_) | AppError::Conflict(_) | AppError::Forbidden(_) => 4,
            _ => 1,
        };
        let message = match e {
            AppError::Internal(inner) => format!("{inner:#}"),
            other => other.to_string(),
        };
        Self { code, message }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self {
            code: 1,
            message: e.to_string(),
        }
    }
}

pub type CliResult = Result<(), CliError>;

#[derive(Subcommand)]
pub enum UserCommand {
    /// List users (optionally matching a substring).
    ///
    /// --json: {"items": [USER, ...], "total": N}, where USER is {"user_id", "username",
    /// "email", "full_name", "is_active", "is_superuser", "created_at"}.
    List {
        /// Only users whose username, email or name contains this text.
        #[arg(long)]
        q: Option<String>,
        /// At most this many users (1-10000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Create a user, with a password or an existing passlib bcrypt/argon2 hash.
    ///
    /// --json: the new USER (see `user list --help`).
    Create(CreateUser),
    /// Disable a user: they cannot log in, and their sessions end.
    ///
    /// --json: the USER (see `user list --help`).
    Disable {
        /// The user's username or email.
        username: String,
    },
    /// Enable a disabled user.
    ///
    /// --json: the USER (see `user list --help`).
    Enable {
        /// The user's username or email.
        username: String,
    },
    /// Set a user's password (read from standard input) and end their sessions.
    ///
    /// --json: {"username", "password_set": true}.
    SetPassword {
        /// The user's username or email.
        username: String,
    },
    /// Give a user a role.
    ///
    /// --json: {"username", "role", "granted": true}.
    GrantRole {
        /// The user's username or email.
        username: String,
        /// The role to give.
        role: String,
    },
    /// Take a role from a user.
    ///
    /// --json: {"username", "role", "revoked": true}.
    RevokeRole {
        /// The user's username or email.
        username: String,
        /// The role to take away.
        role: String,
    },
    /// Delete a user: their sessions and API keys end (running instances refuse them
    /// within their sync interval). The last administrator cannot be deleted.
    ///
    /// --json: {"user_id", "username", "deleted": true}.
    Delete {
        /// The user's username or email.
        username: String,
    },
    /// Lift the lock that failed logins put on a user's account.
    ///
    /// --json: {"username", "unlocked": true}.
    Unlock {
        /// The user's username or email.
        username: String,
    },
    /// Remove a user's second factor (lost device, no recovery codes left); they
    /// log in with their password alone until they enrol again.
    ///
    /// --json: {"username", "mfa_reset": true}.
    ResetMfa {
        /// The user's username or email.
        username: String,
    },
}

#[derive(Args)]
pub struct CreateUser {
    /// The login name (ASCII letters, digits and . _ - @ +).
    #[arg(long)]
    username: String,
    /// The user's email address (also accepted at login).
    #[arg(long)]
    email: String,
    /// The user's display name.
    #[arg(long)]
    full_name: Option<String>,
    /// The password (visible in the process list; prefer --password-stdin).
    #[arg(long, conflicts_with_all = ["password_hash", "password_stdin"])]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password_hash")]
    password_stdin: bool,
    /// An existing hash ($2b$/$2a$ bcrypt, $bcrypt-sha256$, $argon2id$) to import.
    #[arg(long)]
    password_hash: Option<String>,
    /// Give the user every permission (and the admin role).
    #[arg(long)]
    superuser: bool,
    /// Roles to give the user (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// List roles with their permissions.
    ///
    /// --json: [ROLE, ...], where ROLE is {"name", "description", "permissions": [...]}.
    List,
    /// Create a role.
    ///
    /// --json: the new ROLE (see `role list --help`).
    Create {
        /// The role's name (lower-case ASCII letters, digits and _ . : -).
        name: String,
        /// What the role is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Permissions of the role (repeatable).
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
    /// Grant a permission to a role.
    ///
    /// --json: {"role", "permission", "granted": true}.
    Grant {
        /// The role to change.
        role: String,
        /// The permission to add to it.
        permission: String,
    },
    /// Revoke a permission from a role.
    ///
    /// --json: {"role", "permission", "revoked": true}.
    Revoke {
        /// The role to change.
        role: String,
        /// The permission to take out of it.
        permission: String,
    },
}

#[derive(Subcommand)]
pub enum PermissionCommand {
    /// List permissions.
    ///
    /// --json: [PERMISSION, ...], where PERMISSION is {"name", "description"}.
    List,
    /// Create a permission (before a route map or a role names it).
    ///
    /// --json: the new PERMISSION (see `permission list --help`).
    Create {
        /// The permission's name, usually resource:action (lower-case ASCII letters,
        /// digits and _ . : -).
        name: String,
        /// What holding the permission allows.
        #[arg(long, default_value = "")]
        description: String,
    },
}

/// Reads one line from standard input (a prompt goes to stderr when it is a terminal).
pub fn read_secret_line(prompt: &str) -> std::io::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn find_user(service: &Portcullis, username: &str) -> Result<UserRow, CliError> {
    service
        .store()
        .user_by_login(&crate::domain::validate::fold(username))
        .await?
        .ok_or_else(|| CliError {
            code: 3,
            message: format!("no user {username}"),
        })
}

fn user_json(u: &UserRow) -> serde_json::Value {
    json!({
        "user_id": u.id, "username": u.username, "email": u.email, "full_name": u.full_name,
        "is_active": u.is_active, "is_superuser": u.is_superuser, "created_at": u.created_at,
    })
}

pub fn done(json_output: bool, value: serde_json::Value, text: String) {
    if json_output {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub async fn user(cmd: UserCommand, service: Portcullis, json_output: bool) -> CliResult {
    match cmd {
        UserCommand::List { q, limit } => {
            let page = service
                .list_users(&UserQuery {
                    q: q.unwrap_or_default(),
                    limit: limit.clamp(1, 10_000),
                    ..UserQuery::default()
                })
                .await?;
            if json_output {
                println!(
                    "{}",
                    json!({"items": page.users.iter().map(user_json).collect::<Vec<_>>(), "total": page.total})
                );
            } else {
                println!(
                    "{:<36}  {:<24}  {:<32}  {:<8}  superuser",
                    "id", "username", "email", "active"
                );
                for u in &page.users {
                    println!(
                        "{:<36}  {:<24}  {:<32}  {:<8}  {}",
                        u.id, u.username, u.email, u.is_active, u.is_superuser
                    );
                }
                println!("{} of {} users", page.users.len(), page.total);
            }
        }
        UserCommand::Create(c) => {
            let password = if c.password_stdin {
                Some(read_secret_line("password: ")?)
            } else {
                c.password
            };
            let mut roles = c.roles;
            if c.superuser && !roles.iter().any(|r| r == "admin") {
                roles.push("admin".into());
            }
            let user = service
                .create_user(
                    Registration {
                        username: c.username,
                        email: c.email,
                        full_name: c.full_name,
                        password,
                        password_hash: c.password_hash,
                        superuser: c.superuser,
                        roles,
                    },
                    &Actor::system(),
                )
                .await?;
            done(
                json_output,
                user_json(&user),
                format!("created user {} ({})", user.username, user.id),
            );
        }
        UserCommand::Disable { username } => {
            let u = find_user(&service, &username).await?;
            let u = service.set_user_active(u.id, false, &Actor::system()).await?;
            done(json_output, user_json(&u), format!("disabled {}", u.username));
        }
        UserCommand::Enable { username } => {
            let u = find_user(&service, &username).await?;
            let u = service.set_user_active(u.id, true, &Actor::system()).await?;
            done(json_output, user_json(&u), format!("enabled {}", u.username));
        }
        UserCommand::SetPassword { username } => {
            let u = find_user(&service, &username).await?;
            let password = read_secret_line("new password: ")?;
            service.set_password(u.id, &password, &Actor::system()).await?;
            done(
                json_output,
                json!({"username": u.username, "password_set": true}),
                format!("password set for {}; their sessions ended", u.username),
            );
        }
        UserCommand::GrantRole { username, role } => {
            let u = find_user(&service, &username).await?;
            service.assign_role(u.id, &role, &Actor::system()).await?;
            done(
                json_output,
                json!({"username": u.username, "role": role, "granted": true}),
                format!("{} now has role {role}", u.username),
            );
        }
        UserCommand::RevokeRole { username, role } => {
            let u = find_user(&service, &username).await?;
            service.remove_role(u.id, &role, &Actor::system()).await?;
            done(
                json_output,
                json!({"username": u.username, "role": role, "revoked": true}),
                format!("{} no longer has role {role}", u.username),
            );
        }
        UserCommand::Delete { username } => {
            let u = find_user(&service, &username).await?;
            service.delete_user(u.id, &Actor::system()).await?;
            done(
                json_output,
                json!({"user_id": u.id, "username": u.username, "deleted": true}),
                format!("deleted {} ({}); their sessions and API keys ended", u.username, u.id),
            );
        }
        UserCommand::Unlock { username } => {
            let u = find_user(&service, &username).await?;
            service.unlock_user(u.id, &Actor::system()).await?;
            done(
                json_output,
                json!({"username": u.username, "unlocked": true}),
                format!("unlocked {}", u.username),
            );
        }
        UserCommand::ResetMfa { username } => {
            let u = find_user(&service, &username).await?;
            service.reset_mfa(u.id, &Actor::system()).await?;
            done(
                json_output,
                json!({"username": u.username, "mfa_reset": true}),
                format!(
                    "removed {}'s second factor; they log in with their password until they enrol again",
                    u.username
                ),
            );
        }
    }
    Ok(())
}

pub async fn role(cmd: RoleCommand, service: Portcullis, json_output: bool) -> CliResult {
    match cmd {
        RoleCommand::List => {
            let roles = service.roles().await?;
            if json_output {
                let items: Vec<_> = roles
                    .iter()
                    .map(|r| json!({"name": r.name, "description": r.description, "permissions": r.permissions}))
                    .collect();
                println!("{}", json!(items));
            } else {
                for r in roles {
                    println!("{:<16} {}", r.name, r.permissions.join(", "));
                }
            }
        }
        RoleCommand::Create {
            name,
            description,
            permissions,
        } => {
            let r = service
                .create_role(&name, &description, &permissions, &Actor::system())
                .await?;
            done(
                json_output,
                json!({"name": r.name, "description": r.description, "permissions": r.permissions}),
                format!("created role {}", r.name),
            );
        }
        RoleCommand::Grant { role, permission } => {
            service.grant_permission(&role, &permission, &Actor::system()).await?;
            done(
                json_output,
                json!({"role": role, "permission": permission, "granted": true}),
                format!("role {role} now has {permission}"),
            );
        }
        RoleCommand::Revoke { role, permission } => {
            service.revoke_permission(&role, &permission, &Actor::system()).await?;
            done(
                json_output,
                json!({"role": role, "permission": permission, "revoked": true}),
                format!("role {role} no longer has {permission}"),
            );
        }
    }
    Ok(())
}

pub async fn permission(cmd: PermissionCommand, service: Portcullis, json_output: bool) -> CliResult {
    match cmd {
        PermissionCommand::List => {
            let permissions = service.permissions().await?;
            if json_output {
                let items: Vec<_> = permissions
                    .iter()
                    .map(|p| json!({"name": p.name, "description": p.description}))
                    .collect();
                println!("{}", json!(items));
            } else {
                for p in permissions {
                    println!("{:<24} {}", p.name, p.description);
                }
            }
        }
        PermissionCommand::Create { name, description } => {
            let p = service.create_permission(&name, &description, &Actor::system()).await?;
            done(
                json_output,
                json!({"name": p.name, "description": p.description}),
                format!("created permission {}", p.name),
            );
        }
    }
    Ok(())
}
