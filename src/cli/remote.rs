//! Commands for people and scripts calling a running Portcullis: `login`, `token`,
//! `whoami`, `logout`.
//!
//! Tokens are kept in `<config dir>/portcullis/credentials.json` (or
//! `PORTCULLIS_CREDENTIALS_FILE`), written through a new owner-only (0600) file, so
//! `curl -H "Authorization: Bearer $(portcullis token)"` works from any shell.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admin::{CliError, CliResult, read_secret_line};

/// Refresh when the access token has less than this left.
const REFRESH_MARGIN_SECS: i64 = 60;

#[derive(Debug, Serialize, Deserialize)]
struct Credentials {
    server: String,
    username: String,
    access_token: String,
    refresh_token: String,
    expires_at: DateTime<Utc>,
    /// Set by `login --device`: the client the tokens were issued to, refreshed at
    /// its token endpoint rather than `/auth/refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_endpoint: Option<String>,
}

fn fail(message: impl Into<String>) -> CliError {
    CliError {
        code: 1,
        message: message.into(),
    }
}

fn credentials_path() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("PORTCULLIS_CREDENTIALS_FILE") {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("portcullis").join("credentials.json"))
        .ok_or_else(|| fail("no configuration directory; set PORTCULLIS_CREDENTIALS_FILE"))
}

fn load() -> Result<Credentials, CliError> {
    let path = credentials_path()?;
    let text =
        std::fs::read_to_string(&path).map_err(|_| fail("not logged in; run `portcullis login --server URL`"))?;
    serde_json::from_str(&text).map_err(|e| {
        fail(format!(
            "{} is damaged ({e}); run `portcullis login` again",
            path.display()
        ))
    })
}

fn save(c: &Credentials) -> Result<(), CliError> {
    let path = credentials_path()?;
    let text = serde_json::to_string_pretty(c).map_err(|e| fail(e.to_string()))?;
    write_private(&path, text.as_bytes())?;
    Ok(())
}

/// Writes `bytes` to `path` so that no one else can read them at any moment: into a new
/// file beside it, created exclusively (never an existing file, never through a symbolic
/// link) with owner-only permissions from the start, then renamed into place, so
/// readers never see a half-written file either. A missing directory is created
/// owner-only too.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        match crate::crypto::private_file::create_owner_only(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))
}

/// The server's own words for a failed request: a problem's `detail` or OAuth's
/// `error_description`.
async fn server_error(res: reqwest::Response) -> CliError {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let detail = body["detail"]
        .as_str()
        .or(body["error_description"].as_str())
        .unwrap_or("request failed");
    fail(format!("server answered {status}: {detail}"))
}

fn credentials_from(server: &str, username: &str, body: &Value) -> Result<Credentials, CliError> {
    let field = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(format!("server response lacks {k}")))
    };
    Ok(Credentials {
        server: server.to_string(),
        username: username.to_string(),
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        expires_at: Utc::now() + chrono::Duration::seconds(body["expires_in"].as_i64().unwrap_or(0)),
        client_id: None,
        token_endpoint: None,
    })
}

pub async fn login(server: String, username: Option<String>, password_stdin: bool) -> CliResult {
    let server = server.trim_end_matches('/').to_string();
    let username = match username {
        Some(u) => u,
        None => {
            eprint!("username: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        read_secret_line("password: ")?
    };
    let mut body = password_login(&server, &username, &password).await?;
    if body["mfa_enrollment_required"] == true {
        enrol(&server, &body, password_stdin).await?;
        // As the API says: after confirming, log in again (now with a code).
        eprintln!("two-factor authentication is on; sign in with the next code your app shows");
        body = password_login(&server, &username, &password).await?;
    }
    if body["mfa_required"] == true {
        // The next line of stdin (or the terminal): six digits, or a recovery code.
        let code = read_code(password_stdin, "authenticator code (or recovery code): ")?;
        let field = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            "code"
        } else {
            "recovery_code"
        };
        let second = json!({"mfa_token": body["mfa_token"], field: code});
        body = post_json(&server, "/auth/mfa/verify", None, second).await?;
    }
    save(&credentials_from(&server, &username, &body)?)?;
    eprintln!("logged in to {server} as {username}");
    Ok(())
}

/// The scopes `login --device` asks for: who the person is, and their roles and
/// permissions in the access token, as a password login's carries them.
const DEVICE_SCOPES: &str = "openid profile email roles offline_access";

/// The device authorization and token endpoints: from the discovery document when it
/// names a device endpoint, else the paths Portcullis serves them at.
async fn device_endpoints(server: &str) -> Result<(String, String), CliError> {
    let fallback = (
        format!("{server}/oauth2/device_authorization"),
        format!("{server}/oauth2/token"),
    );
    let res = client()?
        .get(format!("{server}/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
    if !res.status().is_success() {
        return Ok(fallback);
    }
    let doc: Value = res.json().await.unwrap_or(Value::Null);
    match (
        doc["device_authorization_endpoint"].as_str(),
        doc["token_endpoint"].as_str(),
    ) {
        (Some(device), Some(token)) => Ok((device.to_string(), token.to_string())),
        _ => Ok(fallback),
    }
}

/// `login --device`: asks for a device code, shows where to approve it, and polls the
/// token endpoint (every `interval` seconds, five more after each `slow_down`) until
/// the person approves, denies, or the code expires; then keeps the tokens as a
/// password login does.
pub async fn login_device(server: String, client_id: String) -> CliResult {
    let server = server.trim_end_matches('/').to_string();
    let (device_endpoint, token_endpoint) = device_endpoints(&server).await?;
    let res = client()?
        .post(&device_endpoint)
        .form(&[("client_id", client_id.as_str()), ("scope", DEVICE_SCOPES)])
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
    if !res.status().is_success() {
        return Err(server_error(res).await);
    }
    let start: Value = res.json().await.map_err(|e| fail(e.to_string()))?;
    let text = |k: &str| {
        start[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(format!("server response lacks {k}")))
    };
    let device_code = text("device_code")?;
    let user_code = text("user_code")?;
    let uri = text("verification_uri")?;
    eprintln!("To sign in, open {uri} in a browser and enter the code {user_code}");
    if let Some(complete) = start["verification_uri_complete"].as_str() {
        eprintln!("(or open {complete})");
    }
    let mut interval = start["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(start["expires_in"].as_u64().unwrap_or(600));
    let body = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() > deadline {
            return Err(fail(
                "the code expired before it was approved; run `portcullis login --device` again",
            ));
        }
        let res = client()?
            .post(&token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
        if res.status().is_success() {
            break res.json::<Value>().await.map_err(|e| fail(e.to_string()))?;
        }
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        match answer["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some("expired_token") => {
                return Err(fail(
                    "the code expired before it was approved; run `portcullis login --device` again",
                ));
            }
            Some("access_denied") => return Err(fail("the sign-in was denied in the browser")),
            _ => {
                let detail = answer["error_description"].as_str().unwrap_or("request failed");
                return Err(fail(format!("server answered {status}: {detail}")));
            }
        }
    };
    let username = username_of(body["access_token"].as_str().unwrap_or_default());
    let credentials = Credentials {
        client_id: Some(client_id),
        token_endpoint: Some(token_endpoint),
        ..credentials_from(&server, &username, &body)?
    };
    save(&credentials)?;
    eprintln!("logged in to {server} as {username}");
    Ok(())
}

/// The `preferred_username` an access token names (read, not verified: it is only
/// shown, the server checks the token on every use).
fn username_of(access_token: &str) -> String {
    use base64::Engine;
    access_token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["preferred_username"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `POST /auth/login`: the answer's body (tokens, an MFA challenge, or an
/// enrolment-only token).
async fn password_login(server: &str, username: &str, password: &str) -> Result<Value, CliError> {
    let body = json!({"username": username, "password": password});
    post_json(server, "/auth/login", None, body).await
}

/// A code: the next line of stdin with `--password-stdin`, else asked for.
fn read_code(from_stdin: bool, prompt: &str) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim().to_string())
    } else {
        Ok(read_secret_line(prompt)?.trim().to_string())
    }
}

/// A JSON POST (with a bearer token, if any); the answer's body, or the server's error.
async fn post_json(server: &str, path: &str, token: Option<&str>, body: Value) -> Result<Value, CliError> {
    let mut req = client()?.post(format!("{server}{path}")).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
    if !res.status().is_success() {
        return Err(server_error(res).await);
    }
    res.json().await.map_err(|e| fail(e.to_string()))
}

/// The account's role demands two-factor authentication it has not set up: enrols
/// with the enrolment-only token the login gave (as `/auth/mfa/totp/enroll` and
/// `/confirm`), showing the QR code in the terminal and the key, and prints the
/// recovery codes, this once, on standard output.
async fn enrol(server: &str, login: &Value, code_from_stdin: bool) -> CliResult {
    let token = login["access_token"]
        .as_str()
        .ok_or_else(|| fail("the server sent no enrolment token"))?;
    let enrolment = post_json(server, "/auth/mfa/totp/enroll", Some(token), json!({})).await?;
    let (Some(uri), Some(secret)) = (enrolment["otpauth_uri"].as_str(), enrolment["secret"].as_str()) else {
        return Err(fail("the server's enrolment answer lacks the key"));
    };
    let qr = crate::crypto::totp::qr_unicode(uri).map_err(|e| fail(e.to_string()))?;
    eprintln!(
        "This account must set up two-factor authentication. Scan this QR code with an \
         authenticator app, or type in the key.\n\n{qr}\nkey: {secret}\n"
    );
    let code = read_code(code_from_stdin, "code from the app: ")?;
    let confirmed = post_json(server, "/auth/mfa/totp/confirm", Some(token), json!({ "code": code })).await?;
    let codes: Vec<&str> = confirmed["recovery_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    eprintln!("Recovery codes, shown this once; keep them safe. Each works once in place of a code:");
    let mut out = std::io::stdout().lock();
    for code in codes {
        writeln!(out, "{code}")?;
    }
    out.flush()?;
    Ok(())
}

/// The stored credentials, refreshed first when the access token is about to expire.
async fn current() -> Result<Credentials, CliError> {
    let c = load()?;
    if c.expires_at - Utc::now() > chrono::Duration::seconds(REFRESH_MARGIN_SECS) {
        return Ok(c);
    }
    // A device login's session belongs to its client: refreshed at the token endpoint.
    let req = match (&c.client_id, &c.token_endpoint) {
        (Some(id), Some(endpoint)) => client()?.post(endpoint).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", c.refresh_token.as_str()),
            ("client_id", id.as_str()),
        ]),
        _ => client()?
            .post(format!("{}/auth/refresh", c.server))
            .json(&json!({"refresh_token": c.refresh_token})),
    };
    let res = req
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {}: {e}", c.server)))?;
    if !res.status().is_success() {
        return Err(fail("the session has ended; run `portcullis login` again"));
    }
    let body: Value = res.json().await.map_err(|e| fail(e.to_string()))?;
    let fresh = Credentials {
        client_id: c.client_id.clone(),
        token_endpoint: c.token_endpoint.clone(),
        ..credentials_from(&c.server, &c.username, &body)?
    };
    save(&fresh)?;
    Ok(fresh)
}

pub async fn token() -> CliResult {
    println!("{}", current().await?.access_token);
    Ok(())
}

pub async fn whoami(json_output: bool) -> CliResult {
    let c = current().await?;
    let res = client()?
        .get(format!("{}/auth/me", c.server))
        .bearer_auth(&c.access_token)
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {}: {e}", c.server)))?;
    if !res.status().is_success() {
        return Err(server_error(res).await);
    }
    let me: Value = res.json().await.map_err(|e| fail(e.to_string()))?;
    if json_output {
        println!("{me}");
    } else {
        let roles: Vec<&str> = me["roles"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{} <{}> ({}) on {}; roles: {}",
            me["username"].as_str().unwrap_or("?"),
            me["email"].as_str().unwrap_or("?"),
            me["user_id"].as_str().unwrap_or("?"),
            c.server,
            if roles.is_empty() {
                "none".to_string()
            } else {
                roles.join(", ")
            }
        );
    }
    Ok(())
}

/// Ends the session on the server and forgets the tokens (the file goes even when
/// the server cannot be reached, and says so).
pub async fn logout() -> CliResult {
    let c = load()?;
    let outcome = client()?
        .post(format!("{}/auth/logout", c.server))
        .json(&json!({"refresh_token": c.refresh_token}))
        .send()
        .await;
    std::fs::remove_file(credentials_path()?)?;
    match outcome {
        Ok(res) if res.status().is_success() => {
            eprintln!("logged out of {}", c.server);
            Ok(())
        }
        Ok(res) => Err(server_error(res).await),
        Err(e) => Err(fail(format!(
            "forgot the local tokens, but could not reach {} to end the session: {e}",
            c.server
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn credentials_are_written_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("sub").join("creds.json");
        write_private(&fresh, b"secret").unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        let sub = std::fs::metadata(dir.path().join("sub")).unwrap();
        assert_eq!(sub.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
