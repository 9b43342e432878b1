//! The `portcullis` command: run the service and administer its database.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis::Portcullis;
use portcullis::config::{Config, LogFormat, Sources};
use portcullis::domain::accounts::Registration;
use portcullis::error::AppError;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (creates and migrates the database, bootstraps an admin).
    Serve {
        /// Address to listen on (also PORTCULLIS_BIND).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage JWT signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user, with a password or an existing passlib bcrypt/argon2 hash.
    Create(CreateUser),
    /// Disable a user: they cannot log in, and their sessions end.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
}

#[derive(Args)]
struct CreateUser {
    #[arg(long)]
    username: String,
    #[arg(long)]
    email: String,
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
    /// Give the user every permission.
    #[arg(long)]
    superuser: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the previous one keeps verifying until its tokens expire.
    Rotate,
}

fn init_tracing(format: LogFormat) {
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

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut sources = match Sources::from_environment(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    if let Command::Serve { bind: Some(bind) } = &cli.command {
        sources.set("PORTCULLIS_BIND", bind.clone());
    }
    let config = match Config::from_sources(&sources) {
        Ok(c) => c,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    init_tracing(config.log_format);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let store = portcullis::store::Store::connect(&config.database, 1).await?;
            store.migrate().await?;
            eprintln!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        Command::User(cmd) => user(cmd, Portcullis::open(config).await?).await,
        Command::Keys(KeysCommand::Rotate) => {
            let service = Portcullis::open(config).await?;
            let kid = service.keys().rotate().await.map_err(describe)?;
            println!("new signing key {kid}; the previous key verifies until its tokens expire");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bind = config.bind;
    let service = Portcullis::open(config).await?;
    if let Some(admin) = service.bootstrap_admin().await? {
        match admin.password {
            Some(password) => eprintln!(
                "\n  Created superuser '{}' with one-time password: {password}\n  It is shown only now: log in and change it (POST /auth/me/password).\n",
                admin.username
            ),
            None => eprintln!(
                "\n  Created superuser '{}' with the password from PORTCULLIS_ADMIN_PASSWORD.\n",
                admin.username
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        backend = service.store().backend_name(),
        startup_ms = started.elapsed().as_millis() as u64,
        "portcullis is ready"
    );
    portcullis::app::serve(service, listener, portcullis::app::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Client errors from the domain, phrased for a terminal.
fn describe(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(inner) => inner,
        other => anyhow::anyhow!("{other}"),
    }
}

async fn user(cmd: UserCommand, service: Portcullis) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create(c) => {
            let password = if c.password_stdin {
                if std::io::stdin().is_terminal() {
                    eprint!("password: ");
                }
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                c.password
            };
            let user = service
                .register(Registration {
                    username: c.username,
                    email: c.email,
                    full_name: c.full_name,
                    password,
                    password_hash: c.password_hash,
                    superuser: c.superuser,
                    roles: if c.superuser { vec!["admin".into()] } else { Vec::new() },
                })
                .await
                .map_err(describe)?;
            println!("created user {} ({})", user.username, user.id);
            Ok(())
        }
        UserCommand::Disable { username } => set_active(&service, &username, false).await,
        UserCommand::Enable { username } => set_active(&service, &username, true).await,
    }
}

async fn set_active(service: &Portcullis, username: &str, active: bool) -> anyhow::Result<()> {
    let user = service
        .store()
        .user_by_login(username)
        .await
        .map_err(describe)?
        .ok_or_else(|| anyhow::anyhow!("no user {username}"))?;
    service.set_user_active(user.id, active).await.map_err(describe)?;
    println!("{} {}", if active { "enabled" } else { "disabled" }, user.username);
    Ok(())
}
