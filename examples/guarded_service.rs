//! A service of your own, embedding Portcullis as a library and guarding its routes
//! with the same checks Portcullis uses for its own.
//!
//! ```sh
//! cargo run --example guarded_service          # listens on 127.0.0.1:3000 (or $GUARDED_SERVICE_BIND)
//! TOKEN=$(curl -s localhost:8000/auth/login -H 'content-type: application/json' \
//!   -d '{"username":"admin","password":"..."}' | jq -r .access_token)
//! curl -X POST localhost:3000/projects -H "Authorization: Bearer $TOKEN"
//! ```
//!
//! It uses the same configuration (environment, `.env`, TOML) and database as the
//! Portcullis service, so tokens issued there are accepted here, and revocations made
//! there are honoured here within the sync interval.

use axum::Router;
use axum::routing::{delete, get, post};
use portcullis::Portcullis;
use portcullis::config::{Config, Sources};
use portcullis::http::{Caller, require_authenticated, require_permission, require_role};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_sources(&Sources::from_environment(None)?)?;
    let auth = Portcullis::open(config).await?;

    let app = Router::new()
        // FastAPI's `Depends(require_permission("projects:create"))`, as a layer:
        .route(
            "/projects",
            post(|Caller(caller): Caller| async move { format!("project created by {}\n", caller.username) })
                .layer(require_permission(&auth, "projects:create")),
        )
        .route(
            "/projects/{id}",
            delete(|| async { "deleted\n" }).layer(require_permission(&auth, "projects:delete")),
        )
        .route(
            "/admin",
            get(|| async { "admins only\n" }).layer(require_role(&auth, "admin")),
        )
        .route(
            "/whoami",
            get(|Caller(caller): Caller| async move { format!("{} {:?}\n", caller.username, caller.permissions) })
                .layer(require_authenticated(&auth)),
        );

    let bind = std::env::var("GUARDED_SERVICE_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("guarded service on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
