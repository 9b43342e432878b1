//! The `portcullis` command: run the service, administer its database, and call a
//! running service from the shell. It lives in the library, not in `main.rs`, so the
//! generic code it instantiates (the runtime, clap, serde) is compiled once, beside
//! the service's own, instead of a second time for the binary.

pub mod admin;
pub mod apikey;
pub mod audit;
pub mod client;
pub mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::Portcullis;
use crate::config::{Config, LogFormat, Sources};
use admin::{CliError, PermissionCommand, RoleCommand, UserCommand};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Self-hosted authentication and authorization service"
)]
struct Cli {
    /// TOML configuration file (also PORTCULLIS_CONFIG). Environment variables win.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// JSON output on standard output, for scripts (each command's --help gives its shape).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (creates and migrates the database, bootstraps an admin).
    ///
    /// Needs the master key (PORTCULLIS_MASTER_KEY or its key file); one is generated
    /// only for a database that holds nothing sealed yet. --json has no effect (logs go
    /// to standard error; PORTCULLIS_LOG_FORMAT=json makes them JSON).
    Serve {
        /// Address to listen on (also PORTCULLIS_BIND).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Apply database migrations and exit.
    ///
    /// --json has no effect.
    Migrate,
    /// Manage users in the configured database.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage roles in the configured database.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage API keys in the configured database.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCommand),
    /// Manage OpenID Connect clients (applications, service accounts) in the configured database.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage permissions in the configured database.
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Manage JWT signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read, export and verify the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Log in to a running Portcullis and keep the tokens for `token` and `whoami`.
    ///
    /// --json has no effect.
    Login {
        /// The service's URL, including any base path (e.g. https://auth.example.com/api/v1).
        #[arg(long)]
        server: String,
        /// The username or email to log in as (prompted for when absent).
        #[arg(long)]
        username: Option<String>,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Sign in through a browser instead (the device flow, RFC 8628): prints a URL
        /// and a code to approve there, for accounts without a password too.
        #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
        device: bool,
        /// With --device: the client to sign in as (a public client allowed the device
        /// grant).
        #[arg(long, requires = "device", default_value = crate::domain::oidc::CLI_CLIENT_ID)]
        client_id: String,
    },
    /// Print a valid access token, refreshing it first when it is about to expire.
    ///
    /// --json has no effect: the token alone is printed.
    Token,
    /// Show who the stored tokens belong to.
    ///
    /// --json: the server's GET /auth/me answer.
    Whoami,
    /// End the stored session on the server and delete the tokens.
    ///
    /// --json has no effect.
    Logout,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the previous one keeps verifying until its tokens expire.
    ///
    /// Needs the master key. Running instances sign with the new key within their sync
    /// interval (PORTCULLIS_SYNC_INTERVAL_MS). --json: {"kid", "applies_within_ms",
    /// "previous_keys_verify_until"}.
    Rotate,
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn exit_with(e: CliError) -> ExitCode {
    eprintln!("portcullis: {}", e.message);
    ExitCode::from(e.code)
}

/// glibc raises its mmap threshold after freeing a large block, so freed argon2 work
/// areas (19 MiB each) would stay in the heap and in RSS. A fixed threshold keeps
/// large blocks mmap-backed (returned to the OS when freed), and two arenas stop each
/// thread from growing a heap of its own.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called once before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The `portcullis` command line, parsed from the process arguments.
pub fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run_cli()),
        Err(e) => exit_with(CliError {
            code: 1,
            message: format!("cannot start the runtime: {e}"),
        }),
    }
}

async fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    // Remote commands need no server-side configuration.
    let remote = match &cli.command {
        Command::Login {
            server,
            device: true,
            client_id,
            ..
        } => Some(remote::login_device(server.clone(), client_id.clone()).await),
        Command::Login {
            server,
            username,
            password_stdin,
            ..
        } => Some(remote::login(server.clone(), username.clone(), *password_stdin).await),
        Command::Token => Some(remote::token().await),
        Command::Whoami => Some(remote::whoami(cli.json).await),
        Command::Logout => Some(remote::logout().await),
        _ => None,
    };
    if let Some(result) = remote {
        return result.map(|_| ExitCode::SUCCESS).unwrap_or_else(exit_with);
    }

    let mut sources = match Sources::from_environment(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            return exit_with(CliError {
                code: 1,
                message: format!("configuration error: {e}"),
            });
        }
    };
    if let Command::Serve { bind: Some(bind) } = &cli.command {
        sources.set("PORTCULLIS_BIND", bind.clone());
    }
    let config = match Config::from_sources(&sources).and_then(|c| crate::http::router::check_settings(&c).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            return exit_with(CliError {
                code: 1,
                message: format!("configuration error: {e}"),
            });
        }
    };
    init_tracing(config.server.log_format);
    let file = sources
        .file()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf()));
    match run(cli.command, config, file, cli.json).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_with(e),
    }
}

/// `file` is the TOML file the settings were read from, if any.
async fn run(command: Command, config: Config, file: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Ok(serve(config, file).await?),
        Command::Migrate => {
            let store = crate::store::Store::connect(&config.database.target, 1).await?;
            store.migrate().await?;
            eprintln!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        // These touch nothing sealed: they need the master key only to append to or
        // verify the audit trail, and never generate one.
        Command::User(cmd) => admin::user(cmd, Portcullis::open_for_administration(config).await?, json).await,
        Command::Role(cmd) => admin::role(cmd, Portcullis::open_for_administration(config).await?, json).await,
        Command::Apikey(cmd) => apikey::apikey(cmd, Portcullis::open_for_administration(config).await?, json).await,
        Command::Client(cmd) => client::client(cmd, Portcullis::open_for_administration(config).await?, json).await,
        Command::Permission(cmd) => {
            admin::permission(cmd, Portcullis::open_for_administration(config).await?, json).await
        }
        Command::Audit(cmd) => audit::audit(cmd, Portcullis::open_for_administration(config).await?, json).await,
        Command::Keys(KeysCommand::Rotate) => {
            let service = Portcullis::open(config).await?;
            let kid = service.rotate_signing_key(&crate::domain::Actor::system()).await?;
            let within = service.config().tokens.sync_interval.as_millis();
            let verify_until = service.keys().grace_after(chrono::Utc::now());
            admin::done(
                json,
                serde_json::json!({
                    "kid": kid,
                    "applies_within_ms": within,
                    "previous_keys_verify_until": verify_until,
                }),
                format!(
                    "new signing key {kid}: running instances sign with it within {within} ms (their sync interval); \
                     tokens signed with the previous key verify until they expire (at the latest {})",
                    verify_until.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            );
            Ok(())
        }
        Command::Login { .. } | Command::Token | Command::Whoami | Command::Logout => unreachable!("handled before"),
    }
}

/// The first start's message about the administrator it created: where to sign in
/// (the hosted sign-in page), and that the first sign-in leads through what the account
/// still needs (enrolling a second factor, when `MFA_REQUIRED_ROLES` asks it of
/// administrators). A generated password is shown here and nowhere else.
fn bootstrap_message(config: &Config, admin: &crate::domain::accounts::BootstrapAdmin) -> String {
    let login = config.url("/login");
    let password = match &admin.password {
        Some(password) => {
            format!("with one-time password: {password}\n  It is shown only now: change it after signing in.")
        }
        None => "with the password from PORTCULLIS_ADMIN_PASSWORD.".to_string(),
    };
    let required = &config.mfa.required_roles;
    let next = if required.iter().any(|r| r == crate::domain::privilege::ADMIN_ROLE) {
        "The first sign-in will guide you through setting up two-factor authentication, which administrators need."
    } else {
        "The first sign-in will guide you through anything the account still needs."
    };
    format!(
        "\n  Created superuser '{}' {password}\n  Sign in at {login}\n  {next}\n",
        admin.username
    )
}

async fn serve(config: Config, file: Option<PathBuf>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bind = config.server.bind;
    let service = Portcullis::open(config).await?;
    service.check_named_roles().await?;
    if let Some(admin) = service.bootstrap_admin().await? {
        eprintln!("{}", bootstrap_message(service.config(), &admin));
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    service.join_instances().await?;
    let shutdown = crate::app::shutdown_signal();
    if service.config().server.public_url_is_wildcard() {
        tracing::warn!(
            public_url = %service.config().server.public_url,
            "PORTCULLIS_BIND is a wildcard address and PORTCULLIS_PUBLIC_URL is not set: discovery documents and the token issuer name an address no client can use, and every instance derives its own; set PORTCULLIS_PUBLIC_URL"
        );
    }
    // Which TOML file was read (--config, PORTCULLIS_CONFIG or ./portcullis.toml), if any.
    let config_file = file.as_ref().map_or("none".to_string(), |f| f.display().to_string());
    tracing::info!(
        address = %listener.local_addr()?,
        config_file = %config_file,
        backend = service.store().backend_name(),
        startup_ms = started.elapsed().as_millis() as u64,
        "portcullis is ready"
    );
    crate::app::serve(service, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command and every argument (flags and positionals, at every level) says
    /// what it is for, and every command says what --json prints.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path}: argument {id} has no help"));
                }
            }
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            let leaf = cmd.get_subcommands().next().is_none();
            if leaf {
                let long = cmd.get_long_about().map(|a| a.to_string()).unwrap_or_default();
                if !long.contains("--json") {
                    missing.push(format!("{path}: its help does not say what --json prints"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        // The walk reaches the commands it is meant to check.
        let names: Vec<String> = cli
            .find_subcommand("apikey")
            .map(|c| {
                c.get_subcommands()
                    .map(|s| s.get_name().to_string())
                    .filter(|n| n != "help")
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, ["create", "list", "revoke"]);
    }
}

#[cfg(test)]
mod bootstrap_message_tests {
    use super::bootstrap_message;
    use crate::config::{Config, Sources};
    use crate::domain::accounts::BootstrapAdmin;

    /// The first start points at the sign-in page and says the first sign-in leads on.
    #[test]
    fn the_bootstrap_message_points_at_the_sign_in_page() {
        let config =
            Config::from_sources(&Sources::from_pairs([("PORTCULLIS_PUBLIC_URL", "https://id.example")])).unwrap();
        let admin = BootstrapAdmin {
            username: "admin".into(),
            password: Some("s3cret-once".into()),
        };
        let text = bootstrap_message(&config, &admin);
        assert!(text.contains("one-time password: s3cret-once\n"), "{text}");
        assert!(text.contains("Sign in at https://id.example/login"), "{text}");
        assert!(text.contains("two-factor authentication"), "{text}");
        let config = Config::from_sources(&Sources::from_pairs([("MFA_REQUIRED_ROLES", "none")])).unwrap();
        let text = bootstrap_message(
            &config,
            &BootstrapAdmin {
                username: "admin".into(),
                password: None,
            },
        );
        assert!(
            text.contains("PORTCULLIS_ADMIN_PASSWORD") && text.contains("/login"),
            "{text}"
        );
        assert!(!text.contains("two-factor"), "{text}");
    }
}
