//! The test client: one way to send a request (method, path, credential, body, and
//! where needed more headers) and read the whole answer, so that tests say what they
//! send and check rather than how reqwest builds it.

use serde_json::Value;

use super::Tokens;

/// Who a request presents itself as: the ways tests present credentials.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Anonymous,
    /// `Authorization: Bearer …`: an access token, or an API key or temporary token
    /// presented the way gateways forward it.
    Bearer(&'a str),
    /// `X-API-Key: …`.
    ApiKey(&'a str),
}

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    Empty,
    Json(Value),
    /// `application/x-www-form-urlencoded`, as OAuth clients send it.
    Form(&'a [(&'a str, &'a str)]),
    /// These bytes under this content type, for what JSON cannot say: invalid UTF-8,
    /// truncated documents, other media types.
    Raw(&'a str, &'a [u8]),
}

pub use Body::*;
pub use Credential::*;
pub use reqwest::Method as M;

/// An answer, read whole: the status, the headers and the body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body parsed as JSON; `Null` when it is empty or not JSON (then see `text`).
    pub body: Value,
    /// The body as text.
    pub text: String,
    is_json: bool,
}

impl Reply {
    /// The body, which must be JSON: a test that reads an answer as JSON fails on one
    /// that is not.
    pub fn json(self) -> Value {
        assert!(self.is_json, "{}: the body is not JSON: {:?}", self.status, self.text);
        self.body
    }

    /// The token pair of a login or refresh answer.
    pub fn tokens(self) -> Tokens {
        Tokens::from(self.json())
    }

    /// A header's value, when present and readable as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The HTTP client tests talk to one server with. Cheap to clone, so concurrent
/// requests can be spawned as tasks of their own. Redirects are never followed:
/// tests look at them.
#[derive(Clone)]
pub struct Http {
    /// For the few requests [`Http::call`] cannot express; each says why.
    pub client: reqwest::Client,
    /// The server's root URL, base path included.
    pub base: String,
}

impl Http {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            base: base.into(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `method path` with `credential` and `body`; the whole answer.
    pub async fn call(&self, method: M, path: &str, credential: Credential<'_>, body: Body<'_>) -> Reply {
        self.call_with(method, path, credential, body, &[]).await
    }

    /// [`Http::call`] with more headers: a gateway's, a browser's, a proxy's.
    pub async fn call_with(
        &self,
        method: M,
        path: &str,
        credential: Credential<'_>,
        body: Body<'_>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        req = match credential {
            Anonymous => req,
            Bearer(token) => req.bearer_auth(token),
            ApiKey(key) => req.header("x-api-key", key),
        };
        req = match body {
            Empty => req,
            Json(value) => req.json(&value),
            Form(pairs) => req.form(pairs),
            Raw(content_type, bytes) => req.header("content-type", content_type).body(bytes.to_vec()),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("response body");
        let parsed = serde_json::from_str::<Value>(&text).ok();
        Reply {
            status,
            headers,
            is_json: parsed.is_some(),
            body: parsed.unwrap_or(Value::Null),
            text,
        }
    }
}
