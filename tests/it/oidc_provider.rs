//! A fake OpenID provider inside the test process, over real HTTP: discovery, a JWKS
//! with a real RSA key, authorize (code + PKCE S256), token (code and refresh grants),
//! userinfo, RFC 7662 introspection and Google-style tokeninfo. Tests choose who signs
//! in next and can make it fail, stall or lie, or release the email and profile only
//! at userinfo.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "portcullis-test-client";
pub const CLIENT_SECRET: &str = "fake-provider-client-secret";

/// Who the provider says signs in.
#[derive(Debug, Clone)]
pub struct Person {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
}

impl Person {
    pub fn new(sub: &str, email: &str) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            email_verified: true,
            name: "Test Person".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every endpoint answers 500.
    Down,
    /// Every endpoint waits this long first.
    Slow(Duration),
    /// ID tokens carry no email and no profile: only userinfo says them (OpenID
    /// Connect Core 5.4, as several providers do by default).
    UserInfoOnly,
    /// As `UserInfoOnly`, but userinfo answers about another subject.
    UserInfoOfAnother,
    /// ID tokens carry the email but no profile (`name`): userinfo says it.
    ProfileAtUserInfo,
    /// As `ProfileAtUserInfo`, but userinfo answers 500.
    ProfileAtUserInfoDown,
    /// As `ProfileAtUserInfo`, but userinfo answers about another subject.
    ProfileAtUserInfoOfAnother,
}

struct Grant {
    person: Person,
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    /// Set for a Microsoft-style multi-tenant issuer: tokens carry `tid`.
    tenant: Option<String>,
    /// The signing key: (key, kid, public JWK); replaced by `rotate_key`.
    signing: Mutex<(EncodingKey, String, Value)>,
    other_key: EncodingKey,
    next: Mutex<Person>,
    mode: Mutex<Mode>,
    /// Set: the ID tokens of the code grant carry this nonce instead of the asked one.
    nonce_override: Mutex<Option<String>>,
    grants: Mutex<HashMap<String, Grant>>,
    /// Access tokens: whose, and the client they were issued to.
    access: Mutex<HashMap<String, (Person, String)>>,
    /// Discovery advertises the introspection endpoint (not for a Microsoft-style
    /// provider: Microsoft's identity platform has none).
    introspection: bool,
    refresh: Mutex<HashMap<String, Person>>,
}

#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Inner>,
    pub base: String,
}

fn random() -> String {
    portcullis::crypto::tokens::random_token()
}

impl FakeProvider {
    pub async fn start(tenant: Option<&str>) -> Self {
        let key = portcullis::crypto::jwt::generate(portcullis::config::SigningAlgorithm::Rs256).unwrap();
        let other = portcullis::crypto::jwt::generate(portcullis::config::SigningAlgorithm::Rs256).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let issuer = match tenant {
            Some(_) => format!("{base}/{{tenantid}}/v2.0"),
            None => base.clone(),
        };
        let mut jwk = key.public_jwk.clone();
        jwk["kid"] = json!(key.kid);
        let inner = Arc::new(Inner {
            issuer,
            tenant: tenant.map(str::to_string),
            signing: Mutex::new((EncodingKey::from_rsa_der(&key.private_der), key.kid.clone(), jwk)),
            other_key: EncodingKey::from_rsa_der(&other.private_der),
            next: Mutex::new(Person::new("subject-1", "person@example.com")),
            mode: Mutex::new(Mode::Normal),
            nonce_override: Mutex::default(),
            grants: Mutex::default(),
            access: Mutex::default(),
            introspection: tenant.is_none(),
            refresh: Mutex::default(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/introspect", post(introspect))
            .route("/tokeninfo", post(tokeninfo))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, base }
    }

    /// The issuer to configure (Microsoft-style: with the `{tenantid}` placeholder
    /// replaced by `common`, as Portcullis's default tenant setting does).
    pub fn issuer(&self) -> String {
        match &self.inner.tenant {
            Some(_) => format!("{}/common/v2.0", self.base),
            None => self.base.clone(),
        }
    }

    /// A new signing key under a new kid; the JWKS publishes only the new one.
    pub fn rotate_key(&self) {
        let key = portcullis::crypto::jwt::generate(portcullis::config::SigningAlgorithm::Rs256).unwrap();
        let mut jwk = key.public_jwk.clone();
        jwk["kid"] = json!(key.kid);
        *self.inner.signing.lock().unwrap() = (EncodingKey::from_rsa_der(&key.private_der), key.kid, jwk);
    }

    pub fn sign_in_as(&self, person: Person) {
        *self.inner.next.lock().unwrap() = person;
    }

    pub fn set_nonce_override(&self, nonce: Option<&str>) {
        *self.inner.nonce_override.lock().unwrap() = nonce.map(str::to_string);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// An access token issued to Portcullis's client (the implicit-client case).
    pub fn access_token_for(&self, person: &Person) -> String {
        self.access_token_for_client(person, CLIENT_ID)
    }

    /// An access token issued to another application of the same provider.
    pub fn access_token_for_client(&self, person: &Person, client_id: &str) -> String {
        let t = random();
        self.inner
            .access
            .lock()
            .unwrap()
            .insert(t.clone(), (person.clone(), client_id.to_string()));
        t
    }

    /// The `at_hash` an ID token of this provider (RS256) carries for `access_token`.
    pub fn at_hash(access_token: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(access_token.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    /// An ID token for `person`, with `change` applied to its claims; `forged` signs
    /// it with a key the JWKS does not hold (under the published kid).
    pub fn id_token(
        &self,
        person: &Person,
        nonce: Option<&str>,
        forged: bool,
        change: impl FnOnce(&mut Value),
    ) -> String {
        let mut claims = self.inner.claims(person, nonce);
        change(&mut claims);
        self.inner.sign(&claims, forged)
    }
}

impl Inner {
    /// Signs with the current key, or (`forged`) with a key the JWKS does not hold.
    fn sign(&self, claims: &Value, forged: bool) -> String {
        let signing = self.signing.lock().unwrap();
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(signing.1.clone());
        let key = if forged { &self.other_key } else { &signing.0 };
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn token_issuer(&self) -> String {
        match &self.tenant {
            Some(tid) => self.issuer.replace("{tenantid}", tid),
            None => self.issuer.clone(),
        }
    }

    fn claims(&self, p: &Person, nonce: Option<&str>) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut c = json!({
            "iss": self.token_issuer(),
            "aud": CLIENT_ID,
            "sub": p.sub,
            "email": p.email,
            "email_verified": p.email_verified,
            "name": p.name,
            "iat": now,
            "exp": now + 300,
        });
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        if let Some(tid) = &self.tenant {
            c["tid"] = json!(tid);
        }
        let withheld: &[&str] = match *self.mode.lock().unwrap() {
            Mode::UserInfoOnly | Mode::UserInfoOfAnother => &["email", "email_verified", "name"],
            Mode::ProfileAtUserInfo | Mode::ProfileAtUserInfoDown | Mode::ProfileAtUserInfoOfAnother => &["name"],
            _ => &[],
        };
        if let Some(claims) = c.as_object_mut() {
            for k in withheld {
                claims.remove(*k);
            }
        }
        c
    }

    async fn gate(&self) -> Option<Response> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Normal
            | Mode::UserInfoOnly
            | Mode::UserInfoOfAnother
            | Mode::ProfileAtUserInfo
            | Mode::ProfileAtUserInfoDown
            | Mode::ProfileAtUserInfoOfAnother => None,
            Mode::Down => Some((StatusCode::INTERNAL_SERVER_ERROR, "down").into_response()),
            Mode::Slow(d) => {
                tokio::time::sleep(d).await;
                None
            }
        }
    }
}

async fn discovery(State(s): State<Arc<Inner>>) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    let base = s.issuer.split("/{tenantid}").next().unwrap_or_default().to_string();
    let mut doc = json!({
        "issuer": s.issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
    });
    if s.introspection {
        doc["introspection_endpoint"] = json!(format!("{base}/introspect"));
    }
    Json(doc).into_response()
}

async fn jwks(State(s): State<Arc<Inner>>) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    let jwk = s.signing.lock().unwrap().2.clone();
    Json(json!({"keys": [jwk]})).into_response()
}

async fn authorize(State(s): State<Arc<Inner>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    let ok = q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("response_type").map(String::as_str) == Some("code")
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.contains_key("state")
        && q.get("scope").is_some_and(|s| s.split(' ').any(|x| x == "openid"));
    if !ok {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = random();
    let redirect_uri = q["redirect_uri"].clone();
    s.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            person: s.next.lock().unwrap().clone(),
            nonce: q.get("nonce").cloned(),
            challenge: q["code_challenge"].clone(),
            redirect_uri: redirect_uri.clone(),
        },
    );
    Redirect::to(&format!("{redirect_uri}?code={code}&state={}", q["state"])).into_response()
}

/// The client authentication of the token and introspection endpoints
/// (`client_secret_post`): only Portcullis's registered client.
fn refuse_unknown_client(f: &HashMap<String, String>) -> Option<Response> {
    let known = f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    (!known).then(|| (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response())
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn token(State(s): State<Arc<Inner>>, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    if let Some(refused) = refuse_unknown_client(&f) {
        return refused;
    }
    let (person, nonce) = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(grant) = f.get("code").and_then(|c| s.grants.lock().unwrap().remove(c)) else {
                return oauth_error("invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let challenge =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if challenge != grant.challenge || f.get("redirect_uri") != Some(&grant.redirect_uri) {
                return oauth_error("invalid_grant");
            }
            let nonce = s.nonce_override.lock().unwrap().clone().or(grant.nonce);
            (grant.person, nonce)
        }
        Some("refresh_token") => match f
            .get("refresh_token")
            .and_then(|t| s.refresh.lock().unwrap().get(t).cloned())
        {
            Some(p) => (p, None),
            None => return oauth_error("invalid_grant"),
        },
        _ => return oauth_error("unsupported_grant_type"),
    };
    let access = random();
    let refresh = random();
    s.access
        .lock()
        .unwrap()
        .insert(access.clone(), (person.clone(), CLIENT_ID.to_string()));
    s.refresh.lock().unwrap().insert(refresh.clone(), person.clone());
    let id_token = s.sign(&s.claims(&person, nonce.as_deref()), false);
    Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

async fn userinfo(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    let mode = *s.mode.lock().unwrap();
    if mode == Mode::ProfileAtUserInfoDown {
        return (StatusCode::INTERNAL_SERVER_ERROR, "userinfo down").into_response();
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let another = matches!(mode, Mode::UserInfoOfAnother | Mode::ProfileAtUserInfoOfAnother);
    match s.access.lock().unwrap().get(token) {
        Some((p, _)) => Json(json!({
            "sub": if another { format!("{}-other", p.sub) } else { p.sub.clone() },
            "email": p.email,
            "email_verified": p.email_verified,
            "name": p.name,
        }))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// RFC 7662: only for this provider's registered client; says whom a token was
/// issued to (`client_id`). Its `aud` lists Portcullis's client beside the API,
/// whoever holds the token, as Keycloak's do when a token carries a client's roles.
async fn introspect(State(s): State<Arc<Inner>>, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    if let Some(refused) = refuse_unknown_client(&f) {
        return refused;
    }
    let token = f.get("token").map(String::as_str).unwrap_or_default();
    match s.access.lock().unwrap().get(token) {
        Some((p, client)) => Json(json!({
            "active": true,
            "client_id": client,
            "sub": p.sub,
            "aud": [CLIENT_ID, "api://default"],
            "token_type": "Bearer",
        }))
        .into_response(),
        None => Json(json!({"active": false})).into_response(),
    }
}

/// Google's tokeninfo: `azp` is the client the token was issued to; `aud` names
/// Portcullis's client whatever `azp` says, so only `azp` may decide. Asked by POST
/// with the token as a bearer; a token in the query string is refused, so a client
/// that puts it in the URL (where logs keep it) fails here.
async fn tokeninfo(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = s.gate().await {
        return r;
    }
    if !q.is_empty() {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match s.access.lock().unwrap().get(token) {
        Some((p, client)) => Json(json!({
            "aud": CLIENT_ID,
            "azp": client,
            "sub": p.sub,
            "email": p.email,
            "expires_in": 3599,
        }))
        .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_description": "Invalid Value"})),
        )
            .into_response(),
    }
}
