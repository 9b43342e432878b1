//! The replaced services' own Python libraries against a live Portcullis (issue 27):
//! FastAPI's OAuth2 password flow, python-jose and PyJWT verifying our tokens, a token
//! python-jose minted with the old secret, passlib's hashes. The interpreter is the
//! virtualenv `.ci/setup-python.sh` makes from tests/python/requirements.txt (pinned,
//! hash-checked), named by PORTCULLIS_TEST_PYTHON. Without it these tests skip with a
//! reason on a developer machine and fail under CI.

use serde_json::{Value, json};

use crate::compat::OLD_SECRET;
use crate::support::*;

/// The venv's python, or None (skip) on a developer machine without it.
fn python() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ if std::env::var("CI").is_ok() || std::env::var("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_ok() => {
            panic!("PORTCULLIS_TEST_PYTHON is not set; .ci/run sets it from .ci/setup-python.sh")
        }
        _ => {
            eprintln!(
                "warning: skipped, PORTCULLIS_TEST_PYTHON is not set (run `export PORTCULLIS_TEST_PYTHON=$(bash .ci/setup-python.sh | tail -n 1)`)"
            );
            None
        }
    }
}

/// Runs tests/python/`script` with `args`; its standard output, which it must have
/// printed with a zero exit.
async fn run(python: &str, script: &str, args: &[&str]) -> String {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {python} {path}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The old service's `op` (`token` or `hash`, see old_service.py), trimmed.
async fn old_service(python: &str, args: &[&str]) -> String {
    run(python, "old_service.py", args).await.trim().to_string()
}

/// Each library's verdict on `token`, by library name.
async fn python_verdicts(python: &str, token: &str, kind: &str, source: &str) -> Vec<Value> {
    run(python, "verify_without_audience.py", &[token, kind, source])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

/// (a) A FastAPI service's client posts only username and password to /auth/token
/// (OAuth2PasswordRequestForm) and gets a bearer token its OAuth2PasswordBearer route
/// accepts; the user was imported with a passlib bcrypt_sha256 hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_password_flow_needs_only_username_and_password() {
    let Some(python) = python() else { return };
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let hash = old_service(&python, &["hash", "bcrypt_sha256", "the old password"]).await;
        assert!(hash.starts_with("$bcrypt-sha256$v=2,"), "{hash}");
        s.service
            .register(portcullis::domain::accounts::Registration {
                username: "olduser".into(),
                email: "olduser@example.com".into(),
                full_name: None,
                password: None,
                password_hash: Some(hash),
                superuser: false,
                roles: vec![],
            })
            .await
            .unwrap();
        let base = s.http.url("");
        let out: Value = serde_json::from_str(
            &run(
                &python,
                "fastapi_password_flow.py",
                &[&base, "olduser", "the old password"],
            )
            .await,
        )
        .unwrap();
        assert_eq!(out["token_status"], 200, "{backend:?}: {out}");
        assert_eq!(out["token_type"], "bearer", "{out}");
        assert_eq!(out["items_status"], 200, "{out}");
        assert_eq!(out["items"], json!({"owner": "olduser"}));
        assert_eq!(out["unauthenticated_status"], 401);
        assert_eq!(out["openapi_token_url"], format!("{base}/auth/token"));
        let wrong: Value =
            serde_json::from_str(&run(&python, "fastapi_password_flow.py", &[&base, "olduser", "not it"]).await)
                .unwrap();
        assert_eq!(wrong["token_status"], 400, "{wrong}");
        s.stop().await;
    }
}

/// (b) python-jose and PyJWT, asking for no audience, verify Portcullis tokens against
/// the JWKS and against the HS256 secret when `JWT_AUDIENCE=none`; with the default
/// audience both refuse them, which is why the setting exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jose_and_pyjwt_verify_tokens_without_an_audience() {
    let Some(python) = python() else { return };
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let t = s.user("erin").await;
        let jwks = s.http.url("/.well-known/jwks.json");
        let verdicts = python_verdicts(&python, &t.access, "jwks", &jwks).await;
        assert_eq!(
            verdicts.len(),
            2,
            "one verdict from python-jose, one from PyJWT: {verdicts:?}"
        );
        for verdict in verdicts {
            assert_eq!(verdict["ok"], false, "{verdict}");
            assert!(
                verdict["error"].as_str().unwrap().to_lowercase().contains("audience"),
                "{verdict}"
            );
        }
        s.stop().await;

        let s = TestServer::on(&db, &[("JWT_AUDIENCE", "none")]).await;
        let t = s.login_as("erin", PASSWORD).await;
        let jwks = s.http.url("/.well-known/jwks.json");
        let verdicts = python_verdicts(&python, &t.access, "jwks", &jwks).await;
        assert_eq!(verdicts.len(), 2);
        for verdict in verdicts {
            assert_eq!(
                (&verdict["ok"], &verdict["sub"]),
                (&json!(true), &json!(t.user_id().to_string())),
                "{backend:?}: {verdict}"
            );
        }
        s.stop().await;

        let s = TestServer::on(
            &db,
            &[
                ("JWT_AUDIENCE", "none"),
                ("JWT_ALGORITHM", "HS256"),
                ("JWT_SECRET_KEY", OLD_SECRET),
                ("JWT_SUBJECT", "username"),
            ],
        )
        .await;
        let t = s.login_as("erin", PASSWORD).await;
        let verdicts = python_verdicts(&python, &t.access, "secret", OLD_SECRET).await;
        assert_eq!(verdicts.len(), 2);
        for verdict in verdicts {
            assert_eq!(
                (&verdict["ok"], &verdict["sub"]),
                (&json!(true), &json!("erin")),
                "{backend:?}: {verdict}"
            );
        }
        s.stop().await;
    }
}

/// (c) A token python-jose mints as the old service did (HS256 with its secret, no
/// kid) is refused, and accepted once `JWT_ACCEPT_UNKEYED=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jose_tokens_of_the_old_service_are_accepted_only_when_asked() {
    let Some(python) = python() else { return };
    for backend in backends().await {
        let settings = [
            ("JWT_ALGORITHM", "HS256"),
            ("JWT_SECRET_KEY", OLD_SECRET),
            ("JWT_SUBJECT", "username"),
        ];
        let (s, db) = TestServer::start_with(backend, &settings).await;
        s.register("frank").await;
        let old = old_service(&python, &["token", OLD_SECRET, "frank", "30"]).await;
        assert!(jwt_part(&old, 0).get("kid").is_none(), "{old}");
        expect_invalid_token(s.get_auth("/auth/me", &old).await);
        s.stop().await;

        let mut accepting = settings.to_vec();
        accepting.push(("JWT_ACCEPT_UNKEYED", "true"));
        let s = TestServer::on(&db, &accepting).await;
        let me = s.get_auth("/auth/me", &old).await;
        assert_eq!(me.status, 200, "{backend:?}: {}", me.text);
        assert_eq!(me.json()["username"], "frank");
        let expired = old_service(&python, &["token", OLD_SECRET, "frank", "-5"]).await;
        expect_invalid_token(s.get_auth("/auth/me", &expired).await);
        let forged = old_service(&python, &["token", "not-the-old-secret-at-all-0123", "frank", "30"]).await;
        expect_invalid_token(s.get_auth("/auth/me", &forged).await);
        s.stop().await;
    }
}
