//! `portcullis login` for an account whose role demands two-factor authentication it
//! has not set up: the real binary against a real server, typed to over its stdin as
//! a person would, reading the key it prints to compute the codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use portcullis::crypto::totp;

use crate::pages_two_factor::now;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_enrols_an_account_that_must_in_the_terminal() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("MFA_REQUIRED_ROLES", "admin")]).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let mut child = binary()
        .env("PORTCULLIS_CREDENTIALS_FILE", &creds)
        .args([
            "login",
            "--server",
            &s.http.base,
            "--username",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{ADMIN_PASSWORD}").unwrap();
    // What it tells the person, line by line, as it comes.
    let (tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut told = Vec::new();
    let secret = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no key printed: {told:?}"));
        told.push(line.clone());
        if let Some(key) = line.strip_prefix("key: ") {
            break totp::from_base32(key.trim()).expect("a base32 key");
        }
    };
    // The QR code, in Unicode blocks, came before the key.
    let drawn = told
        .iter()
        .filter(|l| l.contains('█') || l.contains('▀') || l.contains('▄'))
        .count();
    assert!(drawn > 10, "a QR code of blocks: {told:?}");
    // The code confirms; the next step's code signs in (a step is accepted once).
    let confirm = totp::code_at(&secret, now()).unwrap();
    let next = totp::code_at(&secret, now() + totp::STEP).unwrap();
    writeln!(stdin, "{confirm}\n{next}").unwrap();
    drop(stdin);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.join().unwrap();
    told.extend(lines.try_iter());
    assert!(status.success(), "{told:?}");
    // The recovery codes, once, on standard output.
    let codes: Vec<&str> = out.lines().collect();
    assert_eq!(codes.len(), 10, "{out}");
    assert!(
        codes.iter().all(|c| c.len() == 19 && c.matches('-').count() == 3),
        "{out}"
    );
    assert!(told.iter().any(|l| l.contains("logged in to")), "{told:?}");

    // Logged in: the stored token works, and says the session began with a code.
    let mut c = binary();
    c.env("PORTCULLIS_CREDENTIALS_FILE", &creds).arg("token");
    let (code, token, err) = tokio::task::spawn_blocking(move || run_binary(&mut c, ""))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let token = token.trim();
    assert_eq!(s.get_auth("/auth/me", token).await.status, 200);
    assert_eq!(jwt_part(token, 1)["amr"], serde_json::json!(["pwd", "otp"]));
    // A recovery code it printed works.
    let login = s.login("admin", ADMIN_PASSWORD).await;
    let res = s
        .post_json(
            "/auth/mfa/verify",
            &serde_json::json!({"mfa_token": login.body["mfa_token"], "recovery_code": codes[0]}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    s.stop().await;
}
