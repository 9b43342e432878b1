//! An independent, OpenID-certified relying party against Portcullis: panva's
//! `openid-client` (npm, pinned in `tests/openid-client/`), through the script
//! `tests/openid-client/rp.mjs`. The script speaks JSON lines (one object a step on
//! stdout; where a browser is needed it prints the URL to visit and reads back, on
//! stdin, the URL the provider sent the browser to); this test is the browser.
//!
//! The same script first runs every step against panva's `oidc-provider`
//! (`tests/oidc-provider/complete.mjs`), so that the script itself is proven and a
//! failure against Portcullis is Portcullis's.
//!
//! The relying party's directory (with `node_modules`) is `PORTCULLIS_TEST_OPENID_CLIENT`
//! (`.ci/run` sets it after `.ci/setup-node.sh`), else `tests/openid-client` when it has
//! `node_modules`; the provider's is found as `oauth_node.rs` finds it. Without them
//! the tests are skipped with a reason, except under CI (`CI` or
//! `PORTCULLIS_TEST_REQUIRE_POSTGRES` set), where they fail.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::oauth_node::{Jar, provider_dir, start_node_provider};
use crate::oidc_code_flow::decide;
use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

/// `oidc-provider`'s clients in `complete.mjs` (test-only secrets).
const OP_WEB_SECRET: &str = "rp-web-secret-0123456789abcdef0123456789";
const OP_SERVICE_SECRET: &str = "rp-service-secret-0123456789abcdef01234";
const APP_CALLBACK: &str = "http://127.0.0.1:9/callback";
const APP_SIGNED_OUT: &str = "http://127.0.0.1:9/signed-out";

/// Where `openid-client` is installed, or why the test cannot run.
fn rp_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("PORTCULLIS_TEST_OPENID_CLIENT") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openid-client"),
    };
    if dir.join("node_modules/openid-client/package.json").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "openid-client is not installed in {} (run .ci/setup-node.sh, or npm ci there)",
            dir.display()
        ))
    }
}

/// The directory, or `None` after saying why the test is skipped; CI fails instead.
fn installed(dir: Result<PathBuf, String>) -> Option<PathBuf> {
    match dir {
        Ok(d) => Some(d),
        Err(why)
            if std::env::var_os("CI").is_some() || std::env::var_os("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_some() =>
        {
            panic!("{why}; CI requires it")
        }
        Err(why) => {
            eprintln!("warning: skipped, {why}");
            None
        }
    }
}

/// `rp.mjs` running under Node, killed when dropped.
struct Rp {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Rp {
    fn start(dir: &PathBuf, env: &[(&str, &str)]) -> Self {
        let mut child = tokio::process::Command::new("node")
            .arg("rp.mjs")
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (it is installed with openid-client)");
        Self {
            stdin: child.stdin.take().unwrap(),
            lines: tokio::io::BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// The script's next line, which must be step `step` (an error line fails the test
    /// with what openid-client said).
    async fn next(&mut self, step: &str) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("rp.mjs said nothing for 60 s, waiting for {step}"))
            .unwrap()
            .unwrap_or_else(|| panic!("rp.mjs ended before {step}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("rp.mjs printed {line}"));
        assert_eq!(v["step"], step, "openid-client, expecting {step}: {v:#}");
        v
    }

    /// Hands the script the URL the browser was sent back to.
    async fn answer(&mut self, url: &str) {
        self.stdin.write_all(format!("{url}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

/// The `name`/`value` pairs of the `<input>`s of the form whose HTML starts at `at`.
fn inputs(page: &str, at: usize) -> (String, Vec<(String, String)>) {
    let form = &page[at..at + page[at..].find("</form>").unwrap_or(page.len() - at)];
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        tag.find(&key)
            .map(|i| tag[i + key.len()..].split('"').next().unwrap_or("").to_string())
    };
    let action = attr(&form[..form.find('>').unwrap_or(form.len())], "action").unwrap_or_default();
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect();
    (action, fields)
}

/// A browser at `oidc-provider`'s development pages: follows its redirects and submits
/// its login, consent, device and logout forms, until it is sent off the provider or
/// shown a page with none of them; that URL and page.
async fn walk_op(jar: &mut Jar, issuer: &str, start: &str) -> (String, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let join = |base: &str, to: &str| reqwest::Url::parse(base).unwrap().join(to).unwrap().to_string();
    let mut next = start.to_string();
    let mut form: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        if !next.starts_with(issuer) {
            return (next, String::new());
        }
        let req = match form.take() {
            Some(fields) => browser.post(&next).form(&fields),
            None => browser.get(&next),
        };
        let res = req.header("cookie", jar.header_for(&next)).send().await.unwrap();
        jar.keep(&res);
        let status = res.status().as_u16();
        if (300..400).contains(&status) {
            next = join(&next, res.headers()["location"].to_str().unwrap());
            continue;
        }
        let page = res.text().await.unwrap();
        assert_eq!(status, 200, "{next}: {page}");
        let own = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        form = if page.contains(r#"name="prompt" value="login""#) {
            Some(own(&[("prompt", "login"), ("login", "nora"), ("password", "any")]))
        } else if page.contains(r#"name="prompt" value="consent""#) {
            Some(own(&[("prompt", "consent")]))
        } else if let Some(at) = ["op.deviceInputForm", "op.deviceConfirmForm", "op.logoutForm"]
            .iter()
            .find_map(|id| page.find(&format!(r#"<form id="{id}""#)))
            // A form the page's script submits as soon as it loads.
            .or_else(|| {
                page.contains("document.forms[0].submit()")
                    .then(|| page.find("<form"))
                    .flatten()
            })
        {
            let (action, mut fields) = inputs(&page, at);
            if page[at..].starts_with(r#"<form id="op.logoutForm""#) {
                fields.push(("logout".into(), "yes".into()));
            }
            next = join(&next, &action);
            Some(fields)
        } else {
            return (next, page);
        };
    }
    panic!("the provider never let the browser go (last at {next})");
}

/// The script's steps, all of them, against `oidc-provider`: proves rp.mjs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_script_runs_every_step_against_panva_oidc_provider() {
    let (Some(rp_dir), Some(op_dir)) = (installed(rp_dir()), installed(provider_dir())) else {
        return;
    };
    let env = [
        ("OP_REDIRECT_URI", APP_CALLBACK),
        ("OP_POST_LOGOUT_URI", APP_SIGNED_OUT),
    ];
    let (_op, issuer) = start_node_provider(&op_dir, "complete.mjs", &env).await;
    let mut rp = Rp::start(
        &rp_dir,
        &[
            ("RP_ISSUER", &issuer),
            (
                "RP_STEPS",
                "code,userinfo,refresh,introspect,client_credentials,device,end_session",
            ),
            ("RP_CLIENT_ID", "rp-web"),
            ("RP_CLIENT_SECRET", OP_WEB_SECRET),
            ("RP_REDIRECT_URI", APP_CALLBACK),
            ("RP_SCOPE", "openid profile email"),
            ("RP_POST_LOGOUT_REDIRECT_URI", APP_SIGNED_OUT),
            ("RP_SERVICE_CLIENT_ID", "rp-service"),
            ("RP_SERVICE_CLIENT_SECRET", OP_SERVICE_SECRET),
            ("RP_DEVICE_CLIENT_ID", "rp-device"),
        ],
    );
    let discovery = rp.next("discovery").await;
    assert_eq!(discovery["issuer"], issuer.as_str());

    let mut jar = Jar::default();
    let authorize = rp.next("authorize").await;
    let (back, _) = walk_op(&mut jar, &issuer, authorize["url"].as_str().unwrap()).await;
    assert!(back.starts_with(&format!("{APP_CALLBACK}?code=")), "{back}");
    rp.answer(&back).await;
    let code = rp.next("code").await;
    assert_eq!(code["id_token_claims"]["sub"], "nora", "{code:#}");
    assert_eq!(code["id_token_claims"]["aud"], "rp-web", "{code:#}");
    assert_eq!(code["has_refresh_token"], true, "{code:#}");
    let info = rp.next("userinfo").await;
    assert_eq!(info["userinfo"]["email"], "nora@example.org", "{info:#}");
    let refresh = rp.next("refresh").await;
    assert_eq!(refresh["rotated"], true, "{refresh:#}");
    let intro = rp.next("introspect").await;
    assert_eq!(intro["introspection"]["active"], true, "{intro:#}");
    assert_eq!(intro["introspection"]["client_id"], "rp-web", "{intro:#}");
    let service = rp.next("client_credentials").await;
    assert_eq!(service["has_refresh_token"], false, "{service:#}");
    assert!(service["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    // The device flow: the script polls while this browser, still signed in, enters
    // the code (the complete URI pre-fills it), confirms and consents.
    let device = rp.next("device_authorization").await;
    let complete = device["verification_uri_complete"].as_str().unwrap();
    let (done, page) = walk_op(&mut jar, &issuer, complete).await;
    assert!(page.contains("Sign-in Success"), "{done}: {page}");
    let device = rp.next("device").await;
    assert_eq!(device["id_token_claims"]["sub"], "nora", "{device:#}");

    let end = rp.next("end_session").await;
    let (gone, _) = walk_op(&mut jar, &issuer, end["url"].as_str().unwrap()).await;
    assert_eq!(gone, format!("{APP_SIGNED_OUT}?state=bye-0123456789"));
    rp.next("done").await;
}

/// Registers a client through the admin API, as an operator would; its secret, if any.
async fn operator_registers(s: &TestServer, admin: &str, spec: Value) -> Option<String> {
    let res = s.call(M::POST, "/admin/clients", Bearer(admin), Json(spec)).await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.json()["client_secret"].as_str().map(str::to_string)
}

/// Portcullis's side: the same script, every step, on both backends. The test is the
/// browser: it signs in on the hosted page, allows on the consent page, approves the
/// device's code on `/device` and follows the logout URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_runs_every_step_against_portcullis() {
    let Some(rp_dir) = installed(rp_dir()) else {
        return;
    };
    for backend in backends().await {
        let addr = free_address();
        let (bind, public) = (addr.to_string(), format!("http://{addr}"));
        let (s, _db) = TestServer::start_with(
            backend,
            &[("PORTCULLIS_BIND", &bind), ("PORTCULLIS_PUBLIC_URL", &public)],
        )
        .await;
        let path_of = |url: &str| {
            url.strip_prefix(public.as_str())
                .unwrap_or_else(|| panic!("{url} is not under {public}"))
                .to_string()
        };
        let admin = s.login_as("admin", ADMIN_PASSWORD).await.access;
        let web_secret = operator_registers(
            &s,
            &admin,
            serde_json::json!({
                "client_id": "rp-web", "name": "Interop web app",
                "redirect_uris": [APP_CALLBACK],
                "post_logout_redirect_uris": [APP_SIGNED_OUT],
            }),
        )
        .await
        .expect("a confidential client's secret");
        let service_secret = operator_registers(
            &s,
            &admin,
            serde_json::json!({
                "client_id": "rp-service", "name": "Interop service",
                "grant_types": ["client_credentials"], "scopes": ["profile"],
            }),
        )
        .await
        .expect("a service account's secret");
        let device_secret = operator_registers(
            &s,
            &admin,
            serde_json::json!({
                "client_id": "rp-device", "name": "Interop device", "type": "public",
                "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            }),
        )
        .await;
        assert_eq!(device_secret, None, "a public client has no secret");
        let nora = s.register("nora").await;
        let nora_id = nora["user_id"].as_str().expect("the new user's id").to_string();

        let mut rp = Rp::start(
            &rp_dir,
            &[
                ("RP_ISSUER", &public),
                (
                    "RP_STEPS",
                    "code,userinfo,refresh,introspect,client_credentials,device,end_session",
                ),
                ("RP_CLIENT_ID", "rp-web"),
                ("RP_CLIENT_SECRET", &web_secret),
                ("RP_REDIRECT_URI", APP_CALLBACK),
                ("RP_SCOPE", "openid profile email offline_access"),
                ("RP_POST_LOGOUT_REDIRECT_URI", APP_SIGNED_OUT),
                ("RP_SERVICE_CLIENT_ID", "rp-service"),
                ("RP_SERVICE_CLIENT_SECRET", &service_secret),
                ("RP_SERVICE_SCOPE", "profile"),
                ("RP_DEVICE_CLIENT_ID", "rp-device"),
                ("RP_DEVICE_SCOPE", "openid profile"),
            ],
        );
        let discovery = rp.next("discovery").await;
        assert_eq!(discovery["issuer"], public.as_str(), "{discovery:#}");
        let meta = &discovery["metadata"];
        assert_eq!(meta["jwks_uri"], format!("{public}/.well-known/jwks.json"), "{meta:#}");
        assert_eq!(
            meta["end_session_endpoint"],
            format!("{public}/oauth2/logout"),
            "{meta:#}"
        );

        // Code + PKCE: a browser with no session is sent to sign in, signs in on the
        // hosted page, comes back and allows on the consent page.
        let authorize = rp.next("authorize").await;
        let path = path_of(authorize["url"].as_str().unwrap());
        let first = get_page(&s, &path, None).await;
        assert_eq!(first.status, 303, "{}", first.text);
        assert!(
            first.header("location").unwrap().starts_with("/login?return_to="),
            "{:?}",
            first.header("location")
        );
        let cookie = page_sign_in(&s, "nora", PASSWORD).await;
        let consent = get_page(&s, &path, Some(&cookie)).await;
        assert_eq!(consent.status, 200, "{}", consent.text);
        assert!(consent.text.contains("consent-allow"), "{}", consent.text);
        let back = decide(&s, &cookie, &consent.text, "allow").await;
        assert_eq!(back.status, 303, "{}", back.text);
        let back = back.header("location").unwrap().to_string();
        assert!(back.starts_with(&format!("{APP_CALLBACK}?")), "{back}");
        rp.answer(&back).await;
        let code = rp.next("code").await;
        let id = &code["id_token_claims"];
        assert_eq!(id["iss"], public.as_str(), "{code:#}");
        assert_eq!(id["aud"], "rp-web", "{code:#}");
        assert_eq!(id["sub"], nora_id.as_str(), "{code:#}");
        assert!(id["auth_time"].is_i64() && id["sid"].is_string(), "{code:#}");
        assert_eq!(code["has_refresh_token"], true, "{code:#}");

        let info = rp.next("userinfo").await;
        assert_eq!(info["userinfo"]["sub"], nora_id.as_str(), "{info:#}");
        assert_eq!(info["userinfo"]["email"], "nora@example.com", "{info:#}");
        assert_eq!(info["userinfo"]["preferred_username"], "nora", "{info:#}");

        let refresh = rp.next("refresh").await;
        assert_eq!(refresh["rotated"], true, "{refresh:#}");
        // A new ID token with the same subject: the logout step hints with it.
        assert_eq!(refresh["id_token_claims"]["sub"], nora_id.as_str(), "{refresh:#}");
        assert_eq!(refresh["id_token_claims"]["aud"], "rp-web", "{refresh:#}");

        let intro = rp.next("introspect").await;
        let i = &intro["introspection"];
        assert_eq!(i["active"], true, "{intro:#}");
        assert_eq!(i["client_id"], "rp-web", "{intro:#}");
        assert_eq!(i["sub"], nora_id.as_str(), "{intro:#}");

        let service = rp.next("client_credentials").await;
        assert_eq!(service["has_refresh_token"], false, "{service:#}");
        assert_eq!(service["has_id_token"], false, "{service:#}");
        let claims = jwt_part(service["access_token"].as_str().unwrap(), 1);
        assert_eq!(claims["sub"], "rp-service", "{claims:#}");
        assert_eq!(claims["client_id"], "rp-service", "{claims:#}");

        // The device flow: the script polls while the browser, still signed in, opens
        // the complete URI (it pre-fills the code), shows it and approves.
        let device = rp.next("device_authorization").await;
        let user_code = device["user_code"].as_str().unwrap().to_string();
        let complete = path_of(device["verification_uri_complete"].as_str().unwrap());
        let page = get_page(&s, &complete, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains(&format!("value=\"{user_code}\"")), "{}", page.text);
        for fields in [
            vec![("user_code", user_code.as_str())],
            vec![("user_code", user_code.as_str()), ("decision", "approve")],
        ] {
            let csrf = csrf_of(&get_page(&s, "/device", Some(&cookie)).await.text);
            let form = [fields.as_slice(), &[("csrf", csrf.as_str())]].concat();
            let res = post_form(&s, "/device", &form, Some(&cookie), SAME_ORIGIN).await;
            assert_eq!(res.status, 200, "{}", res.text);
        }
        let device = rp.next("device").await;
        assert_eq!(device["id_token_claims"]["sub"], nora_id.as_str(), "{device:#}");
        assert_eq!(device["id_token_claims"]["aud"], "rp-device", "{device:#}");

        // RP-initiated logout: back to the registered URI with the state, signed out.
        let end = rp.next("end_session").await;
        let res = get_page(&s, &path_of(end["url"].as_str().unwrap()), Some(&cookie)).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(
            res.header("location"),
            Some(format!("{APP_SIGNED_OUT}?state=bye-0123456789").as_str())
        );
        assert_eq!(get_page(&s, "/account", Some(&cookie)).await.status, 303, "signed out");
        rp.next("done").await;
        s.stop().await;
    }
}
