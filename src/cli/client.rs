//! `portcullis client`: register, list, show, change, re-key and remove OpenID
//! Connect clients in the configured database, as the operator, through the same
//! domain operations as `/admin/clients`. A secret is printed once, on standard
//! output, and never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::admin::{CliError, CliResult, done};
use crate::Portcullis;
use crate::domain::Actor;
use crate::domain::audit::escape_for_terminal;
use crate::domain::oidc::clients::DEFAULT_ROTATION_GRACE;
use crate::domain::oidc::{Client, ClientKind, ClientPatch, ClientSpec, CreatedClient, TokenAuthMethod};

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client; a secret, when its method uses one, is printed this once.
    ///
    /// Defaults: a confidential web application (client_secret_basic, the
    /// authorization_code and refresh_token grants, scopes openid profile email
    /// offline_access). --json: CLIENT (see `client list --help`) plus
    /// "client_secret", as POST /admin/clients answers.
    Create {
        /// The client's name, shown on the consent page.
        #[arg(long)]
        name: String,
        /// The client_id (letters, digits, '-', '_', '.'); generated when absent.
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        fields: CreateFields,
    },
    /// List registered clients (never their secrets).
    ///
    /// --json: [CLIENT, ...], where CLIENT is {"client_id", "name", "type",
    /// "token_endpoint_auth_method", "redirect_uris", "post_logout_redirect_uris",
    /// "grant_types", "scopes", "first_party", "backchannel_logout_uri", "jwks",
    /// "access_token_ttl", "refresh_token_ttl", "roles", "created_at", "updated_at",
    /// "has_secret", "previous_secret_expires_at"}, as GET /admin/clients answers.
    List,
    /// Show one client (never its secret).
    ///
    /// --json: CLIENT (see `client list --help`).
    Show {
        /// The client_id.
        id: String,
    },
    /// Change a client: each option given replaces that field, the others stay.
    ///
    /// Taking a role away or changing the authentication method ends the client's
    /// service-account tokens. --json: CLIENT (see `client list --help`).
    Update {
        /// The client_id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: UpdateFields,
    },
    /// Give a client a new secret, printed this once.
    ///
    /// The old secret keeps working for --grace-seconds (default 86400); 0 ends it at
    /// once, together with every service-account token of the client. --json: CLIENT
    /// plus "client_secret", as POST /admin/clients/{id}/secret answers.
    RotateSecret {
        /// The client_id.
        id: String,
        /// How long the old secret keeps working (0-2592000 seconds).
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Remove a client: its tokens, codes and consents end with it.
    ///
    /// --json: {"client_id", "deleted": true}.
    Delete {
        /// The client_id.
        id: String,
    },
}

/// The fields of a new client; absent ones take the defaults.
#[derive(Args)]
pub struct CreateFields {
    /// A public client (a browser app, a CLI, a mobile app): no secret, PKCE instead.
    #[arg(long)]
    public: bool,
    /// client_secret_basic, client_secret_post, private_key_jwt or none.
    #[arg(long, value_name = "METHOD")]
    auth_method: Option<String>,
    /// A redirect URI (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// A post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// A grant type the client may use (repeatable): authorization_code, refresh_token,
    /// client_credentials, urn:ietf:params:oauth:grant-type:device_code.
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// A scope the client may ask for (repeatable): openid, profile, email, roles,
    /// offline_access.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Skip the consent page (an application of the operator's own).
    #[arg(long)]
    first_party: bool,
    /// Where Portcullis posts a logout token when a session of the client ends.
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// A file holding the client's public keys as a JWKS, for private_key_jwt.
    #[arg(long, value_name = "FILE")]
    jwks_file: Option<PathBuf>,
    /// Lifetime of its access tokens in seconds (at most the service's).
    #[arg(long, value_name = "SECONDS")]
    access_token_ttl: Option<u64>,
    /// Lifetime of its refresh tokens in seconds.
    #[arg(long, value_name = "SECONDS")]
    refresh_token_ttl: Option<u64>,
    /// A role the client holds as a service account (repeatable; needs client_credentials).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

/// A change to a client; a list option replaces the whole list.
#[derive(Args)]
pub struct UpdateFields {
    /// client_secret_basic, client_secret_post, private_key_jwt or none.
    #[arg(long, value_name = "METHOD")]
    auth_method: Option<String>,
    /// A redirect URI (repeatable; replaces the list).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Remove every redirect URI.
    #[arg(long, conflicts_with = "redirect_uris")]
    clear_redirect_uris: bool,
    /// A post-logout redirect URI (repeatable; replaces the list).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Remove every post-logout redirect URI.
    #[arg(long, conflicts_with = "post_logout_redirect_uris")]
    clear_post_logout_redirect_uris: bool,
    /// A grant type (repeatable; replaces the list).
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// A scope (repeatable; replaces the list).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Whether the consent page is skipped.
    #[arg(long, value_name = "true|false")]
    first_party: Option<bool>,
    /// The back-channel logout URI.
    #[arg(long, value_name = "URI", conflicts_with = "clear_backchannel_logout_uri")]
    backchannel_logout_uri: Option<String>,
    /// Remove the back-channel logout URI.
    #[arg(long)]
    clear_backchannel_logout_uri: bool,
    /// A file holding the client's public keys as a JWKS.
    #[arg(long, value_name = "FILE", conflicts_with = "clear_jwks")]
    jwks_file: Option<PathBuf>,
    /// Remove the registered JWKS.
    #[arg(long)]
    clear_jwks: bool,
    /// Lifetime of its access tokens in seconds.
    #[arg(long, value_name = "SECONDS", conflicts_with = "default_access_token_ttl")]
    access_token_ttl: Option<u64>,
    /// Its access tokens live as long as the service's default.
    #[arg(long)]
    default_access_token_ttl: bool,
    /// Lifetime of its refresh tokens in seconds.
    #[arg(long, value_name = "SECONDS", conflicts_with = "default_refresh_token_ttl")]
    refresh_token_ttl: Option<u64>,
    /// Its refresh tokens live as long as the service's default.
    #[arg(long)]
    default_refresh_token_ttl: bool,
    /// A role (repeatable; replaces the list).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Take every role away.
    #[arg(long, conflicts_with = "roles")]
    clear_roles: bool,
}

fn usage(message: String) -> CliError {
    CliError { code: 2, message }
}

fn auth_method(name: &str) -> Result<TokenAuthMethod, CliError> {
    TokenAuthMethod::ALL
        .into_iter()
        .find(|m| m.as_str() == name)
        .ok_or_else(|| {
            usage(format!(
                "unknown --auth-method {name}; known: client_secret_basic, client_secret_post, private_key_jwt, none"
            ))
        })
}

fn read_jwks(path: &Path) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{} is not JSON: {e}", path.display())))
}

/// A list option: given values replace, `clear` empties, neither keeps.
fn replace(values: Vec<String>, clear: bool) -> Option<Vec<String>> {
    (clear || !values.is_empty()).then_some(values)
}

/// An optional field: a value sets, `clear` removes, neither keeps.
fn set_or_clear<T>(value: Option<T>, clear: bool) -> Option<Option<T>> {
    if clear { Some(None) } else { value.map(Some) }
}

fn spec(name: String, client_id: Option<String>, f: CreateFields) -> Result<ClientSpec, CliError> {
    Ok(ClientSpec {
        client_id,
        name,
        kind: f.public.then_some(ClientKind::Public),
        token_endpoint_auth_method: f.auth_method.as_deref().map(auth_method).transpose()?,
        redirect_uris: f.redirect_uris,
        post_logout_redirect_uris: f.post_logout_redirect_uris,
        grant_types: (!f.grants.is_empty()).then_some(f.grants),
        scopes: (!f.scopes.is_empty()).then_some(f.scopes),
        first_party: f.first_party,
        backchannel_logout_uri: f.backchannel_logout_uri,
        jwks: f.jwks_file.as_deref().map(read_jwks).transpose()?,
        access_token_ttl: f.access_token_ttl,
        refresh_token_ttl: f.refresh_token_ttl,
        roles: f.roles,
    })
}

fn patch(name: Option<String>, f: UpdateFields) -> Result<ClientPatch, CliError> {
    let jwks = f.jwks_file.as_deref().map(read_jwks).transpose()?;
    Ok(ClientPatch {
        name,
        token_endpoint_auth_method: f.auth_method.as_deref().map(auth_method).transpose()?,
        redirect_uris: replace(f.redirect_uris, f.clear_redirect_uris),
        post_logout_redirect_uris: replace(f.post_logout_redirect_uris, f.clear_post_logout_redirect_uris),
        grant_types: replace(f.grants, false),
        scopes: replace(f.scopes, false),
        first_party: f.first_party,
        backchannel_logout_uri: set_or_clear(f.backchannel_logout_uri, f.clear_backchannel_logout_uri),
        jwks: set_or_clear(jwks, f.clear_jwks),
        access_token_ttl: set_or_clear(f.access_token_ttl, f.default_access_token_ttl),
        refresh_token_ttl: set_or_clear(f.refresh_token_ttl, f.default_refresh_token_ttl),
        roles: replace(f.roles, f.clear_roles),
    })
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
}

fn print_table(clients: &[Client]) {
    println!(
        "{:<32}  {:<24}  {:<12}  {:<19}  grants",
        "client_id", "name", "type", "auth method"
    );
    for c in clients {
        println!(
            "{:<32}  {:<24}  {:<12}  {:<19}  {}",
            c.client_id,
            escape_for_terminal(&c.name),
            c.kind.as_str(),
            c.token_endpoint_auth_method.as_str(),
            c.grant_types.join(",")
        );
    }
}

fn print_client(c: &Client) {
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(" ") };
    let ttl = |t: Option<u64>| t.map_or("default".to_string(), |s| format!("{s} s"));
    println!("client_id:                 {}", c.client_id);
    println!("name:                      {}", escape_for_terminal(&c.name));
    println!("type:                      {}", c.kind.as_str());
    println!("auth method:               {}", c.token_endpoint_auth_method.as_str());
    println!("redirect URIs:             {}", list(&c.redirect_uris));
    println!("post-logout redirect URIs: {}", list(&c.post_logout_redirect_uris));
    println!("grants:                    {}", list(&c.grant_types));
    println!("scopes:                    {}", list(&c.scopes));
    println!("roles:                     {}", list(&c.roles));
    println!("first party:               {}", c.first_party);
    println!(
        "back-channel logout URI:   {}",
        c.backchannel_logout_uri.as_deref().unwrap_or("-")
    );
    println!(
        "JWKS:                      {}",
        c.jwks
            .as_ref()
            .and_then(|j| j["keys"].as_array().map(|k| format!("{} key(s)", k.len())))
            .unwrap_or_else(|| "-".into())
    );
    println!("access token lifetime:     {}", ttl(c.access_token_ttl));
    println!("refresh token lifetime:    {}", ttl(c.refresh_token_ttl));
    println!("has secret:                {}", c.has_secret);
    if let Some(until) = c.previous_secret_expires_at {
        println!("previous secret until:     {}", until.format("%Y-%m-%dT%H:%M:%SZ"));
    }
    println!(
        "created:                   {}",
        c.created_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
}

/// A client with its secret: the secret alone on standard output (or the whole
/// answer with --json), what it is on standard error.
fn print_secret(created: &CreatedClient, json_output: bool, what: &str) {
    if json_output {
        print_json(created);
        return;
    }
    match &created.client_secret {
        Some(secret) => {
            println!("{secret}");
            eprintln!(
                "client {} {what}: the line above is its secret, shown only now",
                created.client.client_id
            );
        }
        None => println!("client {} {what} (it has no secret)", created.client.client_id),
    }
}

pub async fn client(cmd: ClientCommand, service: Portcullis, json_output: bool) -> CliResult {
    let by = Actor::system();
    match cmd {
        ClientCommand::Create {
            name,
            client_id,
            fields,
        } => {
            let created = service.create_client(spec(name, client_id, fields)?, &by).await?;
            print_secret(&created, json_output, "registered");
        }
        ClientCommand::List => {
            let clients = service.clients().await?;
            if json_output {
                print_json(&clients);
            } else {
                print_table(&clients);
            }
        }
        ClientCommand::Show { id } => {
            let c = service.client(&id).await?;
            if json_output {
                print_json(&c);
            } else {
                print_client(&c);
            }
        }
        ClientCommand::Update { id, name, fields } => {
            let c = service.update_client(&id, patch(name, fields)?, &by).await?;
            if json_output {
                print_json(&c);
            } else {
                print_client(&c);
            }
        }
        ClientCommand::RotateSecret { id, grace_seconds } => {
            let grace = grace_seconds.map_or(DEFAULT_ROTATION_GRACE, Duration::from_secs);
            let rotated = service.rotate_client_secret(&id, grace, &by).await?;
            print_secret(&rotated, json_output, "has a new secret");
            if !json_output {
                eprintln!("the previous secret works for {} more seconds", grace.as_secs());
            }
        }
        ClientCommand::Delete { id } => {
            service.delete_client(&id, &by).await?;
            done(
                json_output,
                json!({"client_id": id, "deleted": true}),
                format!("deleted client {id}; its tokens are refused"),
            );
        }
    }
    Ok(())
}
