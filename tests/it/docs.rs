//! The documentation's examples (`<!-- doc-test: NAME -->` blocks in README.md or
//! docs/): shell sessions run by bash against a live server, the TOML read by the real
//! configuration loader, the Traefik and Envoy snippets parsed and their keys checked.
//! (The nginx and Caddy examples run against the real gateways in `gateways.rs`.)

use std::collections::BTreeSet;

use portcullis::config::routemap::{METHOD_OVERRIDE_HEADERS, RouteMap};
use portcullis::config::{Config, Sources};
use serde_json::Value;

use crate::support::*;

/// Runs `script` with bash (`-eu -o pipefail`); its standard output, or the test fails
/// with both outputs. None where bash, curl or python3 is missing outside CI.
pub(crate) fn run_bash(script: &str) -> Option<String> {
    let bash = tool("bash")?;
    tool("curl")?;
    tool("python3")?;
    let out = std::process::Command::new(bash)
        .args(["-eu", "-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    Some(stdout)
}

/// The JSON answers a script printed before the line starting `marker` (curl prints
/// each as it came, with no newline after it), and what follows the marker. The marker
/// must be nothing an answer can hold: tokens are random base64url, so a marker of
/// letters alone (`end`) turns up inside one now and then; `#end` cannot.
pub(crate) fn answers_then<'a>(out: &'a str, marker: &str, what: &str) -> (Vec<Value>, &'a str) {
    let (answers, rest) = out.split_once(marker).expect(what);
    let answers = serde_json::Deserializer::from_str(answers)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect(what);
    (answers, rest)
}

/// The address the documentation's examples use, replaced by the test server's.
fn against(block: &str, s: &TestServer) -> String {
    block.replace("http://127.0.0.1:8000", s.http.base.trim_end_matches('/'))
}

/// "A session with curl", run as written: each step answers what its comment says, and
/// the logout at its end (with the refresh token the refresh step returned) ends the
/// session, so the latest access token is refused afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_session_runs_as_written() {
    let block = doc_block("curl-session");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let checks = "\necho \"after logout: $(curl -s -o /dev/null -w '%{http_code}' $B/auth/me -H \"Authorization: Bearer $ACCESS\")\"\n";
        let Some(out) = run_bash(&(against(&block, &s) + checks)) else {
            return;
        };
        let what = format!("{backend:?}: {out}");
        // Logout's status is a bare number, so a JSON value too.
        let (answers, check) = answers_then(&out, "after logout: ", &what);
        assert_eq!(answers.len(), 4, "register, me, token and logout: {what}");
        let user_id = answers[0]["user_id"].as_str().unwrap_or_default();
        assert!(uuid::Uuid::parse_str(user_id).is_ok(), "{what}");
        assert_eq!(answers[1]["username"], "johndoe", "{what}");
        assert_eq!(answers[2]["token_type"], "bearer", "{what}");
        assert!(answers[2]["access_token"].is_string(), "{what}");
        assert_eq!(answers[3], 204, "logout: {what}");
        assert_eq!(check.trim(), "401", "the session outlived its logout: {what}");
        s.stop().await;
    }
}

/// The setup lines of "A session with curl" (up to its first blank line: the address
/// and the `field` helper), which the other shell examples continue from.
fn session_setup(s: &TestServer) -> String {
    let block = doc_block("curl-session");
    let setup = block.split("\n\n").next().unwrap_or_default();
    against(setup, s)
}

/// The credentials block, run as written after the session's setup, as a user who holds
/// what it asks for: the key it creates passes the gateway check as an API key, the
/// temporary token and the introspection answer, and the key is refused afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_examples_run_as_written() {
    let block = doc_block("credentials");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let user = s.user_with_role("ci-owner", "analyst").await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let body = serde_json::json!({"name": "resource server", "permissions": ["tokens:introspect"]});
        let resource_server: Value = s
            .call(M::POST, "/auth/api-keys", Bearer(&admin.access), Json(body))
            .await
            .json();
        let script = format!(
            "{}\nACCESS={}\nRESOURCE_SERVER_KEY={}\nSOME_TOKEN=$ACCESS\n{}\n\
             echo \"key afterwards: $(curl -s -o /dev/null -w '%{{http_code}}' $B/auth/verify -H \"X-API-Key: $KEY\")\"\n",
            session_setup(&s),
            user.access,
            resource_server["key"].as_str().unwrap(),
            against(&block, &s)
        );
        let Some(out) = run_bash(&script) else {
            return;
        };
        let what = format!("{backend:?}: {out}");
        let (created, rest) = out.split_once('\n').expect(&what);
        let created: Value = serde_json::from_str(created).expect(&what);
        assert!(
            created["key"].as_str().unwrap_or_default().starts_with("pcx_"),
            "{what}"
        );
        let headers: Vec<&str> = rest
            .lines()
            .take_while(|l| l.to_ascii_lowercase().starts_with("x-auth-"))
            .collect();
        let header_text = headers.join("\n").to_ascii_lowercase();
        assert!(header_text.contains("x-auth-credential: api_key"), "{what}");
        assert!(header_text.contains("x-auth-username: ci-owner"), "{what}");
        let rest = rest.lines().skip(headers.len()).collect::<Vec<_>>().join("\n");
        let (answers, check) = answers_then(&rest, "key afterwards: ", &what);
        assert_eq!(answers.len(), 2, "the temporary token and the introspection: {what}");
        assert!(
            answers[0]["token"].as_str().unwrap_or_default().starts_with("pct_"),
            "{what}"
        );
        assert_eq!(answers[1]["active"], true, "{what}");
        assert_eq!(answers[1]["username"], "ci-owner", "{what}");
        assert_eq!(check.trim(), "401", "the deleted and revoked key still passes: {what}");
        s.stop().await;
    }
}

/// The administration block, run as written after the session's setup, with an
/// administrator's token and a fresh login of the user it finds: the role it creates
/// and grants gives that user `billing_access`, and revoking the user's sessions ends
/// that login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administration_examples_run_as_written() {
    let block = doc_block("admin");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let user = s.user("johndoe").await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let script = format!(
            "{}\nADMIN={}\nACCESS={}\n{}\n\
             echo \"after revoke: $(curl -s -o /dev/null -w '%{{http_code}}' $B/auth/me -H \"Authorization: Bearer $ACCESS\")\"\n",
            session_setup(&s),
            admin.access,
            user.access,
            against(&block, &s)
        );
        let Some(out) = run_bash(&script) else {
            return;
        };
        let what = format!("{backend:?}: {out}");
        let (answers, check) = answers_then(&out, "after revoke: ", &what);
        // The users found, the permission, the role, (the grant answers 204), the
        // user's permissions, the check, the revocation.
        assert_eq!(answers.len(), 6, "{what}");
        assert_eq!(answers[0]["items"][0]["user_id"], user.user_id().to_string(), "{what}");
        assert_eq!(answers[1]["name"], "billing_access", "{what}");
        assert_eq!(answers[2]["name"], "support", "{what}");
        assert_eq!(answers[3]["roles"], serde_json::json!(["support"]), "{what}");
        let granted = answers[3]["permissions"].as_array().expect(&what);
        assert!(granted.contains(&"billing_access".into()), "{what}");
        assert_eq!(
            answers[4],
            serde_json::json!({"permission": "billing_access", "allowed": false}),
            "as the comment says, a token issued before the grant: {what}"
        );
        assert_eq!(answers[5], serde_json::json!({"revoked": 1}), "{what}");
        assert_eq!(check.trim(), "401", "the revoked session still works: {what}");
        let fresh = s.login_as("johndoe", PASSWORD).await;
        let res = s
            .call(
                M::POST,
                "/auth/check",
                Bearer(&fresh.access),
                Json(serde_json::json!({"permission": "billing_access"})),
            )
            .await;
        assert_eq!(res.json()["allowed"], true, "a token issued after the grant carries it");
        s.stop().await;
    }
}

/// The MFA block, run as written after the session's setup with johndoe's access token:
/// its `totp` one-liner computes codes the server accepts (confirming the enrolment, then
/// a login with the next code, amr pwd+otp), a recovery code logs in once (amr pwd+rc)
/// and is refused the second time, and the status counts the code spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mfa_examples_run_as_written() {
    let block = doc_block("mfa");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let user = s.user("johndoe").await;
        let script = format!(
            "{}\nACCESS={}\n{}\necho '#end'\n",
            session_setup(&s),
            user.access,
            against(&block, &s)
        );
        let Some(out) = run_bash(&script) else {
            return;
        };
        let what = format!("{backend:?}: {out}");
        let (answers, _) = answers_then(&out, "#end", &what);
        // The recovery codes, the challenge, the pair for a code, the pair for a
        // recovery code, its refusal, the status.
        assert_eq!(answers.len(), 6, "{what}");
        let codes = answers[0]["recovery_codes"].as_array().expect(&what);
        assert_eq!(codes.len(), 10, "{what}");
        assert_eq!(answers[1]["mfa_required"], true, "{what}");
        assert_eq!(
            answers[1]["methods"],
            serde_json::json!(["totp", "recovery_code"]),
            "{what}"
        );
        let amr = |pair: &Value| jwt_part(pair["access_token"].as_str().expect(&what), 1)["amr"].clone();
        assert_eq!(amr(&answers[2]), serde_json::json!(["pwd", "otp"]), "{what}");
        assert_eq!(amr(&answers[3]), serde_json::json!(["pwd", "rc"]), "{what}");
        assert_eq!(answers[4]["status"], 401, "a spent recovery code: {what}");
        assert!(answers[4].get("access_token").is_none(), "{what}");
        assert_eq!(answers[5]["totp"], "enabled", "{what}");
        assert_eq!(answers[5]["recovery_codes_left"], 9, "{what}");
        s.stop().await;
    }
}

/// The block after it, run as written where the first left off (SQLite only: it waits
/// for two more 30-second code steps, and the routes run on both backends in mfa.rs):
/// ten new recovery codes that replace the old, then removing the factor, after which
/// a password login gives tokens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mfa_management_examples_run_as_written() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let user = s.user("johndoe").await;
    let script = format!(
        "{}\nACCESS={}\n{}\necho manage-start\n{}\n",
        session_setup(&s),
        user.access,
        against(&doc_block("mfa"), &s),
        against(&doc_block("mfa-manage"), &s)
    );
    let Some(out) = run_bash(&script) else {
        return;
    };
    let (first, rest) = answers_then(&out, "manage-start", &out);
    let old_codes = first[0]["recovery_codes"].as_array().expect(&out).clone();
    // curl prints the JSON with no newline after it, then the status line.
    let (answers, status) = rest
        .rsplit_once('}')
        .map(|(json, status)| {
            (
                serde_json::from_str::<Value>(&format!("{json}}}")).expect(&out),
                status.trim(),
            )
        })
        .expect(&out);
    let new_codes = answers["recovery_codes"].as_array().expect(&out);
    assert_eq!(new_codes.len(), 10, "{out}");
    assert!(new_codes.iter().all(|c| !old_codes.contains(c)), "{out}");
    assert_eq!(status, "204", "{out}");
    let login = s.login("johndoe", PASSWORD).await.json();
    assert!(login["access_token"].is_string(), "no second factor left: {login}");
    s.stop().await;
}

/// The audit block, run as written after the session's setup with an administrator's
/// token and an API key holding `audit:write`: the query answers logins only, the
/// actions include LOGIN, the export is one record a line, oldest first, and the
/// service's event is recorded as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_examples_run_as_written() {
    let block = doc_block("audit");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let body = serde_json::json!({"name": "invoicing", "permissions": ["audit:write"]});
        let service: Value = s
            .call(M::POST, "/auth/api-keys", Bearer(&admin.access), Json(body))
            .await
            .json();
        let script = format!(
            "{}\nADMIN={}\nSERVICE={}\n{}\necho '#end'\n",
            session_setup(&s),
            admin.access,
            service["key"].as_str().expect("an API key"),
            against(&block, &s)
        );
        let Some(out) = run_bash(&script) else {
            return;
        };
        let what = format!("{backend:?}: {out}");
        let (answers, _) = answers_then(&out, "#end", &what);
        // The logins, the actions, the export (one record a line), the event's status.
        assert!(answers.len() >= 4, "{what}");
        let logins = answers[0]["items"].as_array().expect(&what);
        assert!(!logins.is_empty(), "{what}");
        assert!(
            logins
                .iter()
                .all(|r| r["action"] == "LOGIN" || r["action"] == "LOGIN_FAILURE"),
            "{what}"
        );
        let actions = answers[1]["actions"].as_array().expect(&what);
        assert!(actions.contains(&"LOGIN".into()), "{what}");
        let exported = &answers[2..answers.len() - 1];
        assert!(exported.iter().any(|r| r["action"] == "LOGIN"), "{what}");
        let ids: Vec<i64> = exported.iter().map(|r| r["id"].as_i64().expect(&what)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {what}");
        let mut values = serde_json::Deserializer::from_str(&out).into_iter::<Value>();
        for i in 0..answers.len() - 1 {
            values.next();
            if i >= 2 {
                let end = values.byte_offset();
                assert_eq!(out.as_bytes().get(end), Some(&b'\n'), "one record a line: {what}");
            }
        }
        assert_eq!(answers[answers.len() - 1], 201, "{what}");
        let res = s
            .get_auth("/audit/logs?action=INVOICE_APPROVED&resource_id=inv-42", &admin.access)
            .await;
        let recorded = res.json()["items"].clone();
        assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{recorded}");
        assert_eq!(recorded[0]["resource_type"], "invoice", "{recorded}");
        assert!(
            recorded[0]["metadata"].to_string().contains("120"),
            "the event's metadata: {recorded}"
        );
        s.stop().await;
    }
}

/// The roles CLI block, run by bash with the real binary on PATH and configured for the
/// test server's database: the user it creates logs in with the password it gave, and
/// their token carries the role left after the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_roles_example_runs_as_written() {
    let block = doc_block("cli-roles");
    for backend in backends().await {
        let (s, db) = TestServer::start(backend).await;
        let Some(mut cmd) = crate::docs_live::bash_with_binary(&binary_on(&db)) else {
            return;
        };
        cmd.args(["-eu", "-o", "pipefail", "-c", &block]);
        let (code, out, err) = run_binary(&mut cmd, "");
        let what = format!("{backend:?}: {out}\n{err}");
        assert_eq!(code, 0, "{what}");
        let alice = s.login_as("alice", PASSWORD).await;
        let claims = jwt_part(&alice.access, 1);
        assert_eq!(claims["roles"], serde_json::json!(["analyst"]), "{what}");
        let me = s.get_auth("/auth/me", &alice.access).await.json();
        assert_eq!(me["full_name"], "Alice Smith", "{what}");
        assert_eq!(me["email"], "alice@example.com", "{what}");
        s.stop().await;
    }
}

/// The sample error is what registering with a guessable password answers: the same
/// fields, type, title and status, and its texts up to the `...` where they go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_problem_is_what_the_server_answers() {
    let sample: Value = serde_json::from_str(&doc_block("problem")).expect("the sample is JSON");
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let body = serde_json::json!({"username": "johndoe", "email": "john@example.com", "password": "password123"});
    let res = s.post_json("/auth/register", &body).await;
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let answer = expect_problem(res, 422);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answer), keys(&sample), "{answer}");
    for field in ["type", "title", "status"] {
        assert_eq!(answer[field], sample[field], "{field}: {answer}");
    }
    let starts = |answer: &Value, sample: &Value| {
        let prefix = sample.as_str().unwrap().trim_end_matches("...");
        assert!(
            answer.as_str().unwrap().starts_with(prefix),
            "{answer} does not start with {prefix:?}"
        );
    };
    starts(&answer["detail"], &sample["detail"]);
    assert_eq!(answer["errors"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["errors"][0]["field"], sample["errors"][0]["field"]);
    starts(&answer["errors"][0]["message"], &sample["errors"][0]["message"]);
    assert_eq!(answer["errors"][0]["code"], sample["errors"][0]["code"]);
    s.stop().await;
}

/// The route map's TOML block, read by the real configuration loader (a typo in a key
/// fails it: the loader refuses unknown keys), is the same map as the `VERIFY_ROUTES`
/// value its comment offers instead, and turns the default to deny.
#[test]
fn the_route_map_toml_loads_and_matches_its_environment_form() {
    let block = doc_block("verify-routes");
    let mut sources = Sources::from_pairs(Vec::<(String, String)>::new());
    sources.merge_toml_str(&block).expect("the documented TOML loads");
    let config = Config::from_sources(&sources).expect("a valid configuration");
    let env_form = block
        .split_once("VERIFY_ROUTES=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value)
        .expect("the comment gives the VERIFY_ROUTES form");
    assert_eq!(config.gateway.routes, RouteMap::parse(env_form).unwrap());
    assert!(!config.gateway.routes.is_empty());
    assert!(
        !config.gateway.default_allow,
        "a route map denies what it does not list"
    );
}

/// A YAML block of the documentation as a JSON value.
fn yaml(block: &str) -> Value {
    serde_yaml_ng::from_str(block).unwrap_or_else(|e| panic!("{e}:\n{block}"))
}

/// `value` is a mapping whose keys are all among `known` (a misspelt key fails) and
/// include `required`.
fn keys_of<'a>(value: &'a Value, known: &[&str], required: &[&str], at: &str) -> &'a serde_json::Map<String, Value> {
    let map = value
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not a mapping: {value}"));
    for key in map.keys() {
        assert!(
            known.contains(&key.as_str()),
            "{at}: unknown key {key:?} (known: {known:?})"
        );
    }
    for key in required {
        assert!(map.contains_key(*key), "{at}: {key:?} is missing");
    }
    map
}

/// The headers `/auth/verify` answers with, lower case.
async fn verify_answer_headers(s: &TestServer) -> BTreeSet<String> {
    let admin = s.login_as("admin", ADMIN_PASSWORD).await;
    let res = s.get_auth("/auth/verify", &admin.access).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-auth-"))
        .collect()
}

/// The Traefik middleware: a `forwardAuth` whose address is `/auth/verify`, handing on
/// exactly the `X-Auth-*` headers `/auth/verify` answers with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traefik_example_points_at_verify_and_hands_on_its_headers() {
    let doc = yaml(&doc_block("traefik"));
    let http = &keys_of(&doc, &["http"], &["http"], "top level")["http"];
    let middlewares = &keys_of(http, &["middlewares", "routers", "services"], &["middlewares"], "http")["middlewares"];
    let portcullis = &keys_of(middlewares, &["portcullis"], &["portcullis"], "middlewares")["portcullis"];
    let forward_auth = &keys_of(portcullis, &["forwardAuth"], &["forwardAuth"], "portcullis")["forwardAuth"];
    let fields = keys_of(
        forward_auth,
        &[
            "address",
            "tls",
            "trustForwardHeader",
            "authResponseHeaders",
            "authResponseHeadersRegex",
            "authRequestHeaders",
            "addAuthCookiesToResponse",
            "headerField",
            "forwardBody",
            "maxBodySize",
            "preserveLocationHeader",
            "preserveRequestMethod",
        ],
        &["address", "authResponseHeaders"],
        "forwardAuth",
    );
    let address = fields["address"].as_str().expect("address is a string");
    let url = reqwest::Url::parse(address).expect("address is a URL");
    assert_eq!(url.path(), "/auth/verify", "{address}");
    assert!(
        !fields.contains_key("authRequestHeaders"),
        "authRequestHeaders would keep the credential and method-override headers from the check"
    );
    let handed_on: BTreeSet<String> = fields["authResponseHeaders"]
        .as_array()
        .expect("authResponseHeaders is a list")
        .iter()
        .map(|h| h.as_str().expect("a header name").to_ascii_lowercase())
        .collect();
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    assert_eq!(handed_on, verify_answer_headers(&s).await);
    s.stop().await;
}

/// The Envoy filter: one HTTP `ext_authz` filter of the v3 type, calling
/// `/auth/verify` as its path prefix with the credential and method-override headers,
/// and handing the `x-auth-` headers upstream; the connection manager refuses headers
/// with `_` in their names (an `x_http_method_override` would pass `allowed_headers`'
/// exact names by and reach the backend unjudged).
#[test]
fn the_envoy_example_has_the_ext_authz_shape() {
    let doc = yaml(&doc_block("envoy"));
    let top = keys_of(
        &doc,
        &["common_http_protocol_options", "http_filters"],
        &["common_http_protocol_options", "http_filters"],
        "top level",
    );
    // envoy.config.core.v3.HttpProtocolOptions
    let protocol = keys_of(
        &top["common_http_protocol_options"],
        &[
            "idle_timeout",
            "max_connection_duration",
            "max_headers_count",
            "max_stream_duration",
            "headers_with_underscores_action",
            "max_requests_per_connection",
        ],
        &["headers_with_underscores_action"],
        "common_http_protocol_options",
    );
    assert_eq!(protocol["headers_with_underscores_action"], "REJECT_REQUEST");
    let filters = top["http_filters"].as_array().expect("http_filters is a list");
    assert_eq!(filters.len(), 1, "{filters:?}");
    let filter = keys_of(
        &filters[0],
        &["name", "typed_config"],
        &["name", "typed_config"],
        "the filter",
    );
    assert_eq!(filter["name"], "envoy.filters.http.ext_authz");
    let config = keys_of(
        &filter["typed_config"],
        &[
            "@type",
            "http_service",
            "grpc_service",
            "failure_mode_allow",
            "with_request_body",
            "clear_route_cache",
            "status_on_error",
            "transport_api_version",
            "include_peer_certificate",
        ],
        &["@type", "http_service"],
        "typed_config",
    );
    assert_eq!(
        config["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    );
    assert_ne!(config.get("failure_mode_allow"), Some(&Value::Bool(true)), "fails open");
    let service = keys_of(
        &config["http_service"],
        &[
            "server_uri",
            "path_prefix",
            "authorization_request",
            "authorization_response",
            "retry_policy",
        ],
        &[
            "server_uri",
            "path_prefix",
            "authorization_request",
            "authorization_response",
        ],
        "http_service",
    );
    keys_of(
        &service["server_uri"],
        &["uri", "cluster", "timeout"],
        &["uri", "cluster", "timeout"],
        "server_uri",
    );
    assert_eq!(service["path_prefix"], "/auth/verify");
    let patterns = |parent: &Value, field: &str, at: &str| -> Vec<(String, String)> {
        let matcher = &keys_of(parent, &[field, "headers_to_add"], &[field], at)[field];
        keys_of(matcher, &["patterns"], &["patterns"], field)["patterns"]
            .as_array()
            .expect("patterns is a list")
            .iter()
            .map(|p| {
                let p = keys_of(
                    p,
                    &["exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"],
                    &[],
                    "pattern",
                );
                let (kind, value) = p.iter().next().expect("a pattern");
                (kind.clone(), value.as_str().expect("a string").to_string())
            })
            .collect()
    };
    let sent = patterns(
        &service["authorization_request"],
        "allowed_headers",
        "authorization_request",
    );
    let exact = |h: &str| ("exact".to_string(), h.to_string());
    for header in ["authorization", "x-api-key"]
        .into_iter()
        .chain(METHOD_OVERRIDE_HEADERS)
    {
        assert!(
            sent.contains(&exact(header)),
            "{header} does not reach the check: {sent:?}"
        );
    }
    let upstream = patterns(
        &service["authorization_response"],
        "allowed_upstream_headers",
        "authorization_response",
    );
    assert_eq!(upstream, vec![("prefix".to_string(), "x-auth-".to_string())]);
}

/// The remote commands of docs/cli.md, run as written against the test server (its URL
/// for the block's, `/auth/me` for the API it calls): the prompting login reads the
/// username and password from standard input, the scripted one logs in as ci-bot, the
/// token is accepted, whoami names ci-bot, and logout ends the session and deletes the
/// stored tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_cli_examples_run_as_written() {
    let block = doc_block("cli-remote");
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    s.register("alice").await;
    s.register("ci-bot").await;
    let base = s.http.base.trim_end_matches('/');
    let mut script = block.clone();
    for (written, here) in [
        ("https://auth.example.com/api/v1", base.to_string()),
        ("https://api.example.com/projects", format!("{base}/auth/me")),
        (" URL ", format!(" {base} ")),
    ] {
        assert!(block.contains(written), "the block no longer says {written:?}");
        script = script.replace(written, &here);
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    let Some(mut cmd) = crate::docs_live::bash_with_binary(&binary()) else {
        return;
    };
    cmd.env("PORTCULLIS_CREDENTIALS_FILE", &creds)
        .env("PASSWORD", PASSWORD)
        .args(["-eu", "-o", "pipefail", "-c", &script]);
    // The first login prompts: a username line, then a password line.
    let stdin = format!("alice\n{PASSWORD}\n");
    let (code, out, err) = tokio::task::spawn_blocking(move || run_binary(&mut cmd, &stdin))
        .await
        .unwrap();
    let what = format!("{out}\n{err}");
    assert_eq!(code, 0, "{what}");
    // curl prints /auth/me's answer with no newline after it; whoami's line follows.
    let (answers, whoami) = answers_then(&out, "ci-bot <ci-bot@example.com>", &what);
    assert_eq!(answers.len(), 1, "{what}");
    assert_eq!(answers[0]["username"], "ci-bot", "{what}");
    assert!(whoami.contains(base), "{what}");
    assert!(!creds.exists(), "logout deletes the stored tokens: {what}");
    for (who, live) in [("alice", 1), ("ci-bot", 0)] {
        let user = s.service.store().user_by_login(who).await.unwrap().unwrap();
        let sessions = s.service.sessions_of(user.id).await.unwrap();
        let active = sessions.iter().filter(|x| x.revoked_at.is_none()).count();
        assert_eq!(active, live, "{who}: {what}");
    }
    s.stop().await;
}
