//! Sign-in through panva's `oidc-provider` (npm, OpenID-certified) in its default
//! configuration, where a code flow's ID token carries no email or profile: those come
//! only from UserInfo (OpenID Connect Core 5.4). The provider runs under Node on an
//! ephemeral loopback port (`tests/oidc-provider/provider.mjs`); the test is the
//! browser, over plain HTTP: Portcullis's authorize, the provider's development login
//! and consent forms, and Portcullis's callback.
//!
//! The provider's directory (with `node_modules`) is `PORTCULLIS_TEST_OIDC_PROVIDER`
//! (`.ci/run` sets it after `.ci/setup-node.sh`), else `tests/oidc-provider` when it
//! has `node_modules`. Without either the test is skipped with a reason, except under
//! CI (`CI` or `PORTCULLIS_TEST_REQUIRE_POSTGRES` set), where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::support::*;

const CLIENT_ID: &str = "portcullis-node-client";
const CLIENT_SECRET: &str = "portcullis-node-client-secret-0123456789";
const APP: &str = "https://app.example.com/signed-in";
/// Portcullis's public URL here: the provider sends the browser back to its callback
/// under it, and the test hands that redirect to the server itself.
const PUBLIC_URL: &str = "https://portcullis.test";

/// Where the provider is installed, or why the test cannot run.
pub(crate) fn provider_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("PORTCULLIS_TEST_OIDC_PROVIDER") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider"),
    };
    if dir.join("node_modules/oidc-provider/package.json").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "oidc-provider is not installed in {} (run .ci/setup-node.sh, or npm ci there)",
            dir.display()
        ))
    }
}

/// The provider under Node, stopped when dropped; its issuer URL.
async fn start_provider(dir: &PathBuf, redirect_uri: &str) -> (tokio::process::Child, String) {
    let env = [
        ("OIDC_CLIENT_ID", CLIENT_ID),
        ("OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ("OIDC_REDIRECT_URI", redirect_uri),
    ];
    start_node_provider(dir, "provider.mjs", &env).await
}

/// `script` of the provider's directory under Node, stopped when dropped; the issuer
/// it prints (`issuer=<url>`) once it listens.
pub(crate) async fn start_node_provider(
    dir: &PathBuf,
    script: &str,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (it is installed with the provider)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(issuer) = line.strip_prefix("issuer=") {
                return issuer.to_string();
            }
        }
        panic!("the provider exited before it listened");
    })
    .await
    .expect("the provider listens within 30 s");
    // Read on, so nothing it writes later meets a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, issuer)
}

/// A browser's cookies at one site: (name, path) to value.
#[derive(Default)]
pub(crate) struct Jar(BTreeMap<(String, String), String>);

impl Jar {
    pub(crate) fn keep(&mut self, res: &reqwest::Response) {
        for header in res.headers().get_all("set-cookie") {
            let header = header.to_str().unwrap();
            let mut parts = header.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let path = parts
                .filter_map(|a| a.split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("path"))
                .map_or("/", |(_, v)| v);
            let key = (name.to_string(), path.to_string());
            let expired = header.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            if value.is_empty() || expired {
                self.0.remove(&key);
            } else {
                self.0.insert(key, value.to_string());
            }
        }
    }

    pub(crate) fn header_for(&self, url: &str) -> String {
        let path = reqwest::Url::parse(url).unwrap().path().to_string();
        self.0
            .iter()
            .filter(|((_, p), _)| path.starts_with(p.as_str()))
            .map(|((n, _), v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Goes through the provider as a browser: from Portcullis's redirect to it, through
/// its login form (as `login`) and consent form, to where it sends the browser back.
async fn through_provider(issuer: &str, start: &str, login: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let mut next = start.to_string();
    for _ in 0..12 {
        if !next.starts_with(issuer) {
            return next;
        }
        let res = browser
            .get(&next)
            .header("cookie", jar.header_for(&next))
            .send()
            .await
            .unwrap();
        jar.keep(&res);
        let status = res.status().as_u16();
        if (300..400).contains(&status) {
            let location = res.headers()["location"].to_str().unwrap();
            next = reqwest::Url::parse(&next).unwrap().join(location).unwrap().to_string();
            continue;
        }
        let page = res.text().await.unwrap();
        assert_eq!(status, 200, "{next}: {page}");
        // An interaction page: the development login form, or the consent form.
        let form: Vec<(&str, &str)> = if page.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", login), ("password", "any password")]
        } else if page.contains(r#"name="prompt" value="consent""#) {
            vec![("prompt", "consent")]
        } else {
            panic!("an interaction page with no known form at {next}: {page}");
        };
        let res = browser
            .post(&next)
            .header("cookie", jar.header_for(&next))
            .form(&form)
            .send()
            .await
            .unwrap();
        jar.keep(&res);
        assert!(res.status().is_redirection(), "{next}: {}", res.status());
        let location = res.headers()["location"].to_str().unwrap();
        next = reqwest::Url::parse(&next).unwrap().join(location).unwrap().to_string();
    }
    panic!("the provider never sent the browser back (last at {next})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_panva_oidc_provider_with_userinfo_claims() {
    let dir = match provider_dir() {
        Ok(d) => d,
        Err(why)
            if std::env::var_os("CI").is_some() || std::env::var_os("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_some() =>
        {
            panic!("{why}; CI requires it")
        }
        Err(why) => {
            eprintln!("warning: skipped, {why}");
            return;
        }
    };
    let callback = format!("{PUBLIC_URL}/auth/oauth/node/callback");
    for backend in backends().await {
        let (_node, issuer) = start_provider(&dir, &callback).await;
        let settings = [
            ("PORTCULLIS_PUBLIC_URL", PUBLIC_URL),
            ("OAUTH_OIDC_NODE_ISSUER", issuer.as_str()),
            ("OAUTH_OIDC_NODE_CLIENT_ID", CLIENT_ID),
            ("OAUTH_OIDC_NODE_CLIENT_SECRET", CLIENT_SECRET),
            ("OAUTH_OIDC_NODE_SCOPES", "openid email profile"),
            ("OAUTH_REDIRECT_URIS", APP),
        ];
        let (s, _db) = TestServer::start_with(backend, &settings).await;

        let res = s.get(&format!("/auth/oauth/node/authorize?redirect_uri={APP}")).await;
        assert_eq!(res.status, 302, "{}", res.text);
        let browser_cookie = res.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
        let to_provider = res.header("location").unwrap().to_string();
        assert!(to_provider.starts_with(&issuer), "{to_provider}");

        let back = through_provider(&issuer, &to_provider, "nora").await;
        let query = back
            .strip_prefix(&format!("{callback}?"))
            .unwrap_or_else(|| panic!("the provider sends the browser to the callback: {back}"));
        let res = s
            .http
            .call_with(
                M::GET,
                &format!("/auth/oauth/node/callback?{query}"),
                Anonymous,
                Empty,
                &[("cookie", &browser_cookie)],
            )
            .await;
        assert_eq!(res.status, 302, "{}", res.text);
        let location = res.header("location").unwrap();
        let fragment = location
            .strip_prefix(&format!("{APP}#"))
            .unwrap_or_else(|| panic!("{location}"));
        let access = fragment
            .split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .expect("an access token in the fragment");

        // The account has what only UserInfo said.
        let me: Value = s.get_auth("/auth/me", access).await.json();
        assert_eq!(me["email"], "nora@example.org", "{me}");
        assert_eq!(me["full_name"], "Node nora", "{me}");
        let ids: Value = s.get_auth("/auth/me/identities", access).await.json();
        assert_eq!(ids[0]["provider"], "node", "{ids}");
        assert_eq!(ids[0]["issuer"], issuer.as_str(), "{ids}");
        assert_eq!(ids[0]["subject"], "nora", "{ids}");
        s.stop().await;
    }
}
