//! `portcullis apikey`: issue, list and revoke API keys in the configured database,
//! as the operator, through the same domain operations as the HTTP API. A new key's
//! secret is printed once, on standard output, and never logged.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::json;

use super::admin::{CliResult, done, find_user};
use crate::Portcullis;
use crate::domain::Actor;
use crate::http::credentials::{ApiKeyOut, NewApiKeyOut};

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Issue an API key to a user; its secret is printed this once.
    ///
    /// The key acts with the intersection of its permissions and its owner's current
    /// ones. --json: KEY (see `apikey list --help`) plus "key", the secret, as
    /// POST /auth/api-keys answers.
    Create {
        /// The owner's username or email.
        #[arg(long)]
        user: String,
        /// What the key is for (1-100 characters).
        #[arg(long)]
        name: String,
        /// A permission the key carries (repeatable); the owner must hold it.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// When the key stops working, RFC 3339 (e.g. 2027-01-01T00:00:00Z); never by default.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// List API keys, newest first (never their secrets).
    ///
    /// --json: [KEY, ...], where KEY is {"id", "user_id", "name", "permissions",
    /// "created_at", "expires_at", "last_used_at", "revoked_at"}, as
    /// GET /admin/api-keys answers.
    List {
        /// Only this user's keys (username or email).
        #[arg(long)]
        user: Option<String>,
        /// At most this many keys (1-1000; ignored with --user).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Revoke an API key: every instance refuses it within its sync interval.
    ///
    /// --json: {"id", "revoked": true}.
    Revoke {
        /// The key's id (the part between `pcx_` and the second `_`, as listed).
        id: String,
    },
}

fn print_table(keys: &[ApiKeyOut]) {
    println!(
        "{:<16}  {:<36}  {:<24}  {:<8}  permissions",
        "id", "user_id", "name", "state"
    );
    let now = Utc::now();
    for k in keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<16}  {:<36}  {:<24}  {:<8}  {}",
            k.id,
            k.user_id,
            crate::domain::audit::escape_for_terminal(&k.name),
            state,
            k.permissions.join(",")
        );
    }
}

pub async fn apikey(cmd: ApiKeyCommand, service: Portcullis, json_output: bool) -> CliResult {
    match cmd {
        ApiKeyCommand::Create {
            user,
            name,
            permissions,
            expires_at,
        } => {
            let owner = find_user(&service, &user).await?;
            let (row, key) = service
                .create_api_key_for(owner.id, &name, permissions, expires_at, &Actor::system())
                .await?;
            if json_output {
                let out = NewApiKeyOut { info: row.into(), key };
                println!("{}", serde_json::to_string(&out).unwrap_or_default());
            } else {
                println!("{key}");
                eprintln!(
                    "API key {} for {}: the line above is its secret, shown only now",
                    row.id, owner.username
                );
            }
        }
        ApiKeyCommand::List { user, limit } => {
            let rows = match user {
                Some(user) => {
                    let owner = find_user(&service, &user).await?;
                    service.api_keys_of(owner.id).await?
                }
                None => service.all_api_keys(limit, 0).await?,
            };
            let keys: Vec<ApiKeyOut> = rows.into_iter().map(ApiKeyOut::from).collect();
            if json_output {
                println!("{}", serde_json::to_string(&keys).unwrap_or_default());
            } else {
                print_table(&keys);
            }
        }
        ApiKeyCommand::Revoke { id } => {
            service.revoke_api_key(&id, None, &Actor::system()).await?;
            let sync_ms = service.config().tokens.sync_interval.as_millis();
            done(
                json_output,
                json!({"id": id, "revoked": true}),
                format!("revoked API key {id}; running instances refuse it within {sync_ms} ms"),
            );
        }
    }
    Ok(())
}
