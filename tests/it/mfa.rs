//! Multi-factor authentication with real TOTP codes computed from the enrolled secret:
//! enrolment, the login's second step, replay, recovery codes, removal, the role
//! policy, step-up, the administrator's reset and the audit trail; on both backends.

use std::time::Duration;

use base64::Engine;
use portcullis::crypto::totp;
use serde_json::{Value, json};

use crate::support::*;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The code of the step after the current one: accepted (one step of skew) and never
/// the step a code just used at enrolment had.
fn next_code(secret: &[u8]) -> String {
    totp::code_at(secret, now() + totp::STEP).unwrap()
}

/// The first step of enrolling TOTP for the holder of `token`, who repeats
/// `password`.
async fn start_enrolment(s: &TestServer, token: &str, password: &str) -> Reply {
    let body = json!({"password": password});
    s.call(M::POST, "/auth/mfa/totp/enroll", Bearer(token), Json(body))
        .await
}

/// Enrols and confirms TOTP for the holder of `token`; the secret and recovery codes.
pub(crate) async fn enrol(s: &TestServer, token: &str) -> (Vec<u8>, Vec<String>) {
    let e = start_enrolment(s, token, PASSWORD).await;
    assert_eq!(e.status, 200, "{}", e.body);
    let secret = totp::from_base32(e.body["secret"].as_str().unwrap()).unwrap();
    let code = totp::code_at(&secret, now()).unwrap();
    let c = s
        .call(
            M::POST,
            "/auth/mfa/totp/confirm",
            Bearer(token),
            Json(json!({"code": code})),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let codes = c.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

/// The second step; the status and body.
async fn verify(s: &TestServer, mfa_token: &str, factor: Value) -> (u16, Value) {
    let mut body = factor;
    body["mfa_token"] = json!(mfa_token);
    let res = s.post_json("/auth/mfa/verify", &body).await;
    (res.status, res.json())
}

async fn challenge(s: &TestServer, username: &str) -> String {
    let password = if username == "admin" { ADMIN_PASSWORD } else { PASSWORD };
    let Reply { status, body, .. } = s.login(username, password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none(), "no tokens before the second factor");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    body["mfa_token"].as_str().unwrap().to_string()
}

async fn events_of(s: &TestServer, admin: &str, user_id: &str) -> Vec<Value> {
    let page = s
        .get_auth(&format!("/audit/logs?kind=event&user_id={user_id}&limit=1000"), admin)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

fn count(events: &[Value], action: &str) -> usize {
    events.iter().filter(|e| e["action"] == action).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_login_replay_recovery_codes_and_removal() {
    for backend in backends().await {
        let (s, db) = TestServer::start_with(backend, &[("LOGIN_LOCKOUT_THRESHOLD", "20")]).await;
        let admin = s.login_as("admin", ADMIN_PASSWORD).await;
        let alice = s.user("alice").await;
        let alice_id = alice.user_id().to_string();
        let a = alice.access.as_str();

        let status = s.get_auth("/auth/mfa", a).await.body;
        assert_eq!(status["totp"], "none");
        assert_eq!(status["required"], false);

        // Enrolment: secret, URI and both QR codes; pending until confirmed.
        // A session token alone is not enough to enrol: the password too.
        let code = start_enrolment(&s, a, "wrong").await.status;
        assert_eq!(code, 422);
        let res = start_enrolment(&s, a, PASSWORD).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let e = res.body;
        let uri = e["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/Portcullis:alice?"), "{uri}");
        assert!(
            uri.contains("issuer=Portcullis") && uri.contains(&format!("secret={}", e["secret"].as_str().unwrap()))
        );
        assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(
                e["qr_png"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("data:image/png;base64,")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let st = s.get_auth("/auth/mfa", a).await.body;
        assert_eq!(st["totp"], "pending");
        // Not yet a factor: login still gives tokens.
        let body = s.login("alice", PASSWORD).await.json();
        assert!(body["access_token"].is_string(), "{body}");

        let secret = totp::from_base32(e["secret"].as_str().unwrap()).unwrap();
        let right = totp::code_at(&secret, now()).unwrap();
        let wrong = if right == "123456" { "654321" } else { "123456" };
        let confirm = |code: &str| {
            let body = json!({"code": code});
            s.call(M::POST, "/auth/mfa/totp/confirm", Bearer(a), Json(body))
        };
        let res = confirm(wrong).await;
        assert_eq!(res.status, 422, "{}", res.body);
        let res = confirm(&right).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let codes: Vec<String> = serde_json::from_value(res.body["recovery_codes"].clone()).unwrap();
        assert_eq!(codes.len(), 10);
        let st = s.get_auth("/auth/mfa", a).await.body;
        assert_eq!(
            (st["totp"].as_str(), st["recovery_codes_left"].as_i64()),
            (Some("enabled"), Some(10))
        );
        let code = start_enrolment(&s, a, PASSWORD).await.status;
        assert_eq!(code, 409, "a confirmed factor is not replaced");

        // Login: a challenge, then tokens with amr pwd+otp.
        let token = challenge(&s, "alice").await;
        let (code, _) = verify(&s, &token, json!({"code": wrong})).await;
        assert_eq!(code, 401);
        let otp = next_code(&secret);
        let (code, pair) = verify(&s, &token, json!({"code": otp})).await;
        assert_eq!(code, 200, "{pair}");
        let claims = jwt_part(pair["access_token"].as_str().unwrap(), 1);
        assert_eq!(claims["amr"], json!(["pwd", "otp"]));
        assert!(claims["auth_time"].as_i64().unwrap() >= now() as i64 - 5);
        assert_eq!(
            s.get_auth("/auth/me", pair["access_token"].as_str().unwrap())
                .await
                .status,
            200
        );
        // The mfa_token is spent; the code is spent.
        assert_eq!(verify(&s, &token, json!({"code": otp})).await.0, 401);
        let token = challenge(&s, "alice").await;
        assert_eq!(verify(&s, &token, json!({"code": otp})).await.0, 401, "replayed code");

        // A recovery code works once (any case, dashes optional).
        let (code, pair) = verify(&s, &token, json!({"recovery_code": codes[0].to_uppercase()})).await;
        assert_eq!(code, 200, "{pair}");
        assert_eq!(
            jwt_part(pair["access_token"].as_str().unwrap(), 1)["amr"],
            json!(["pwd", "rc"])
        );
        let token = challenge(&s, "alice").await;
        assert_eq!(verify(&s, &token, json!({"recovery_code": codes[0]})).await.0, 401);
        assert_eq!(
            verify(&s, &token, json!({"code": "1", "recovery_code": codes[1]}))
                .await
                .0,
            422
        );

        // Five wrong codes burn the mfa_token: even a good recovery code fails after.
        for _ in 0..4 {
            assert_eq!(verify(&s, &token, json!({"code": wrong})).await.0, 401);
        }
        assert_eq!(verify(&s, &token, json!({"recovery_code": codes[1]})).await.0, 401);
        let st = s.get_auth("/auth/mfa", a).await.body;
        assert_eq!(st["recovery_codes_left"], 9, "the burned token spent no code");

        // Regenerating invalidates the old set.
        let code = s
            .call(M::POST, "/auth/mfa/recovery-codes", Bearer(a), Json(json!({})))
            .await
            .status;
        assert_eq!(code, 422, "regenerating needs a current code");
        let res = s
            .call(
                M::POST,
                "/auth/mfa/recovery-codes",
                Bearer(a),
                Json(json!({"recovery_code": codes[2]})),
            )
            .await;
        assert_eq!(res.status, 200);
        let fresh: Vec<String> = serde_json::from_value(res.body["recovery_codes"].clone()).unwrap();
        let token = challenge(&s, "alice").await;
        assert_eq!(verify(&s, &token, json!({"recovery_code": codes[1]})).await.0, 401);
        assert_eq!(verify(&s, &token, json!({"recovery_code": fresh[0]})).await.0, 200);

        // The password grant answers the same challenge as an OAuth error, so OAuth
        // clients fail visibly instead of taking a 200 without an access token.
        let grant = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        let res = s.call(M::POST, "/auth/token", Anonymous, Form(&grant)).await;
        assert_eq!(res.status, 403, "{}", res.text);
        let body = res.json();
        assert_eq!(body["error"], "mfa_required", "{body}");
        assert!(body.get("access_token").is_none(), "{body}");
        let token = body["mfa_token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("pcm_"), "{body}");
        assert_eq!(verify(&s, &token, json!({"recovery_code": fresh[2]})).await.0, 200);

        // Removal needs the password and a code.
        let code = s
            .call(
                M::DELETE,
                "/auth/mfa/totp",
                Bearer(a),
                Json(json!({"password": "wrong", "recovery_code": fresh[1]})),
            )
            .await
            .status;
        assert_eq!(code, 422);
        let code = s
            .call(
                M::DELETE,
                "/auth/mfa/totp",
                Bearer(a),
                Json(json!({"password": PASSWORD, "code": wrong})),
            )
            .await
            .status;
        assert_eq!(code, 422);
        let res = s
            .call(
                M::DELETE,
                "/auth/mfa/totp",
                Bearer(a),
                Json(json!({"password": PASSWORD, "recovery_code": fresh[1]})),
            )
            .await;
        assert_eq!(res.status, 204, "{}", res.body);
        let st = s.get_auth("/auth/mfa", a).await.body;
        assert_eq!(
            (st["totp"].as_str(), st["recovery_codes_left"].as_i64()),
            (Some("none"), Some(0))
        );
        let body = s.login("alice", PASSWORD).await.json();
        assert!(body["access_token"].is_string(), "{body}");

        // Every step is in the trail, and failures give their reason.
        let events = events_of(&s, &admin.access, &alice_id).await;
        for (action, n) in [
            ("MFA_ENROLL", 1),
            ("MFA_ENABLE", 1),
            ("MFA_RECOVERY_CODES_REGENERATE", 1),
            // Two through /auth/login's challenge, one through /auth/token's.
            ("MFA_RECOVERY_CODE_USED", 3),
            ("MFA_DISABLE", 1),
            ("MFA_CHALLENGE", 5),
        ] {
            assert_eq!(count(&events, action), n, "{action}");
        }
        let reasons: Vec<String> = events
            .iter()
            .filter(|e| e["action"] == "MFA_FAILURE")
            .map(|e| {
                serde_json::from_str::<Value>(e["metadata"].as_str().unwrap()).unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for reason in ["bad_code", "replayed_code", "bad_recovery_code"] {
            assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
        }
        let mfa_logins = events
            .iter()
            .filter(|e| e["action"] == "LOGIN" && e["metadata"].as_str().unwrap().contains("otp"))
            .count();
        assert_eq!(mfa_logins, 1);

        // The secret is sealed at rest: neither its bytes nor its base32 are stored.
        if matches!(backend, Backend::Sqlite) {
            s.stop().await;
            let path = db
                .url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_string();
            let bytes = std::fs::read(&path).unwrap();
            let b32 = e["secret"].as_str().unwrap().as_bytes().to_vec();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()));
            assert!(!bytes.windows(b32.len()).any(|w| w == b32.as_slice()));
        } else {
            s.stop().await;
        }
    }
}

/// The challenge offers recovery codes only while one is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_recovery_codes_are_no_longer_offered() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("LOGIN_LOCKOUT_THRESHOLD", "50")]).await;
    let bob = s.user("bob").await;
    let (_, codes) = enrol(&s, &bob.access).await;
    for code in &codes {
        let token = challenge(&s, "bob").await;
        assert_eq!(verify(&s, &token, json!({"recovery_code": code})).await.0, 200);
    }
    let Reply { status, body, .. } = s.login("bob", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["methods"], json!(["totp"]));
    let token = body["mfa_token"].as_str().unwrap();
    assert_eq!(verify(&s, token, json!({"recovery_code": codes[0]})).await.0, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_count_toward_the_lockout() {
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("LOGIN_LOCKOUT_THRESHOLD", "3")]).await;
    let bob = s.user("bob").await;
    let (secret, _) = enrol(&s, &bob.access).await;
    let wrong = if next_code(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    // A right password does not reset the count while the code is still due, so
    // logging in again between rounds of guesses gains nothing: login (1), a wrong
    // code (2), login again (3), and the name is locked.
    let token = challenge(&s, "bob").await;
    assert_eq!(verify(&s, &token, json!({"code": wrong})).await.0, 401);
    let token = challenge(&s, "bob").await;
    let res = s
        .post_json(
            "/auth/mfa/verify",
            &json!({"mfa_token": token, "code": next_code(&secret)}),
        )
        .await;
    assert_eq!(res.status, 429, "locked after three attempts without a right code");
    assert!(res.headers.get("retry-after").is_some());
    let res = s.login("bob", PASSWORD).await;
    assert_eq!(res.status, 429);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_roles_enrolment_only_tokens_step_up_and_admin_reset() {
    for backend in backends().await {
        let policy = [("MFA_REQUIRED_ROLES", "admin"), ("MFA_STEP_UP_MAX_AGE_SECONDS", "600")];
        let (s, db) = TestServer::start_with(backend, &policy).await;

        // The administrator has no factor yet: login yields an enrolment-only token.
        let Reply { status, body, .. } = s.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mfa_enrollment_required"], true, "{body}");
        assert!(body.get("refresh_token").is_none());
        let restricted = body["access_token"].as_str().unwrap().to_string();
        for path in ["/auth/me", "/admin/users", "/auth/verify"] {
            let res = s.get_auth(path, &restricted).await;
            assert_eq!(res.status, 403, "{path}: {}", res.body);
            assert_eq!(
                res.body["type"], "urn:portcullis:problem:mfa-enrollment-required",
                "{path}"
            );
        }
        // RFC 7009 revocation works on it too (a second one, revoked).
        let spare = s.login("admin", ADMIN_PASSWORD).await.json();
        let spare = spare["access_token"].as_str().unwrap().to_string();
        let res = s
            .call(M::POST, "/auth/revoke", Anonymous, Form(&[("token", spare.as_str())]))
            .await;
        assert_eq!(res.status, 200);
        assert_eq!(s.get_auth("/auth/mfa", &spare).await.status, 401);
        // Revoked or forged, it is simply invalid on every other route too.
        assert_eq!(s.get_auth("/auth/me", &spare).await.status, 401);
        let forged = "pce_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
        assert_eq!(s.get_auth("/auth/verify", &forged).await.status, 401);
        let st = s.get_auth("/auth/mfa", &restricted).await;
        assert_eq!((st.status, st.body["required"].as_bool()), (200, Some(true)));
        let (secret, codes) = enrol(&s, &restricted).await;

        // Now login asks for the code; an ordinary user is not asked.
        let token = challenge(&s, "admin").await;
        let (code, pair) = verify(&s, &token, json!({"code": next_code(&secret)})).await;
        assert_eq!(code, 200, "{pair}");
        let fresh = pair["access_token"].as_str().unwrap().to_string();
        let carol = s.user("carol").await;
        let carol_id = carol.user_id().to_string();

        // Sensitive routes want a recent TOTP code: this session has one.
        let res = s
            .call(
                M::POST,
                "/admin/roles",
                Bearer(&fresh),
                Json(json!({"name": "auditor"})),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        // A recovery-code session is not enough for them, though fine elsewhere.
        let token = challenge(&s, "admin").await;
        let (_, pair) = verify(&s, &token, json!({"recovery_code": codes[0]})).await;
        let rc = pair["access_token"].as_str().unwrap().to_string();
        assert_eq!(s.get_auth("/admin/users", &rc).await.status, 200);
        let res = s
            .call(M::POST, "/admin/roles", Bearer(&rc), Json(json!({"name": "other"})))
            .await;
        assert_eq!(res.status, 401, "{}", res.body);
        assert_eq!(
            res.body["type"],
            "urn:portcullis:problem:insufficient-user-authentication"
        );
        let challenge_header = res.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge_header.contains("error=\"insufficient_user_authentication\""),
            "{challenge_header}"
        );
        assert!(challenge_header.contains("max_age=600"), "{challenge_header}");
        let code = s.call(M::POST, "/admin/keys/rotate", Bearer(&rc), Empty).await.status;
        assert_eq!(code, 401);
        // The role the policy names cannot be deleted from under it.
        let res = s.call(M::DELETE, "/admin/roles/admin", Bearer(&fresh), Empty).await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert!(res.text.contains("MFA_REQUIRED_ROLES"), "{}", res.text);

        // An old second factor is not recent: another instance allowing one second.
        let strict = TestServer::on(
            &db,
            &[("MFA_REQUIRED_ROLES", "admin"), ("MFA_STEP_UP_MAX_AGE_SECONDS", "1")],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let code = strict
            .call(M::POST, "/admin/roles", Bearer(&fresh), Json(json!({"name": "late"})))
            .await
            .status;
        assert_eq!(code, 401, "auth_time too old");
        strict.stop().await;

        // The administrator resets carol's factor (step-up applies), audited.
        enrol(&s, &carol.access).await;
        let reset = format!("/admin/users/{carol_id}/mfa");
        assert_eq!(s.call(M::DELETE, &reset, Bearer(&rc), Empty).await.status, 401);
        assert_eq!(s.call(M::DELETE, &reset, Bearer(&fresh), Empty).await.status, 204);
        assert_eq!(s.call(M::DELETE, &reset, Bearer(&fresh), Empty).await.status, 404);
        let body = s.login("carol", PASSWORD).await.json();
        assert!(
            body["access_token"].is_string(),
            "carol logs in without a factor: {body}"
        );
        let events = events_of(&s, &fresh, jwt_part(&fresh, 1)["sub"].as_str().unwrap()).await;
        let resets: Vec<&Value> = events.iter().filter(|e| e["action"] == "MFA_RESET").collect();
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0]["resource_id"], carol_id.as_str());
        assert_eq!(count(&events, "MFA_ENROLLMENT_REQUIRED"), 2);

        // A role that demands MFA, granted to a session without a second factor, is
        // not carried into refreshed tokens: that session ends.
        let dan = s.user("dan").await;
        s.service
            .assign_role(dan.user_id(), "admin", &portcullis::domain::Actor::system())
            .await
            .unwrap();
        let res = s.refresh(&dan.refresh).await;
        assert_eq!(res.status, 403);
        let problem: Value = res.json();
        assert_eq!(problem["type"], "urn:portcullis:problem:mfa-enrollment-required");
        assert_eq!(s.refresh(&dan.refresh).await.status, 401, "the session has ended");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_login_asks_for_the_second_factor() {
    let (s, _db) = TestServer::start(Backend::Sqlite).await;
    let dave = s.user("dave").await;
    let (_, codes) = enrol(&s, &dave.access).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let run = |stdin: String| {
        let mut c = binary();
        c.env("PORTCULLIS_CREDENTIALS_FILE", &creds).args([
            "login",
            "--server",
            s.http.base.as_str(),
            "--username",
            "dave",
            "--password-stdin",
        ]);
        tokio::task::spawn_blocking(move || run_binary(&mut c, &stdin))
    };
    let (code, _, err) = run(format!("{PASSWORD}\nnot-a-code\n")).await.unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(!creds.exists());
    let (code, _, err) = run(format!("{PASSWORD}\n{}\n", codes[0])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let access = stored["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(access, 1)["amr"], json!(["pwd", "rc"]));
    s.stop().await;
}
