//! Counts and times every request by method, route template (never the raw path,
//! which could carry ids or tokens) and status.
//!
//! The `metrics` macros find a handle by hashing the name and freshly allocated
//! labels on every call; on the token check, which is meant to cost little more than
//! `/health`, that lookup showed up in profiles. The handles of each label set are
//! kept here after their first use instead.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

/// Requests to routes no template matched share this label.
const UNMATCHED: &str = "unmatched";

/// At most this many label sets get a kept handle; beyond it (which the finite route
/// table, methods and statuses should never reach) requests use the macros directly.
const MAX_KEPT: usize = 4096;

/// The label value of a method: the standard ones by name, any other as `OTHER`, so a
/// client inventing methods cannot add label values without bound.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

/// The counter and histogram of one (method, route, status).
#[derive(Clone)]
struct Handles {
    requests: Counter,
    duration: Histogram,
}

impl Handles {
    fn register(method: &'static str, route: &str, status: u16) -> Self {
        let (route, status) = (route.to_owned(), status.to_string());
        Self {
            requests: metrics::counter!("portcullis_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.clone()),
            duration: metrics::histogram!("portcullis_http_request_duration_seconds", "method" => method, "route" => route, "status" => status),
        }
    }
}

/// Kept handles: route template -> (method, status, handles). A route sees a handful
/// of (method, status) pairs, so a short list beats a second map.
type Kept = HashMap<Box<str>, Vec<(&'static str, u16, Handles)>>;

fn kept() -> &'static RwLock<Kept> {
    static KEPT: OnceLock<RwLock<Kept>> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

fn handles(method: &'static str, route: &str, status: u16) -> Handles {
    let find = |map: &Kept| {
        map.get(route)?
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, h)| h.clone())
    };
    // A poisoned lock only means another request panicked mid-insert; the map is
    // still a valid cache.
    if let Some(h) = find(&kept().read().unwrap_or_else(|e| e.into_inner())) {
        return h;
    }
    let h = Handles::register(method, route, status);
    let mut map = kept().write().unwrap_or_else(|e| e.into_inner());
    let size: usize = map.values().map(Vec::len).sum();
    if size < MAX_KEPT && find(&map).is_none() {
        map.entry(route.into()).or_default().push((method, status, h.clone()));
    }
    h
}

/// The middleware: one counter increment and one duration sample per request.
pub async fn record(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let h = handles(method, route, res.status().as_u16());
    h.requests.increment(1);
    h.duration.record(start.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "OTHER");
    }

    #[test]
    fn one_label_set_is_kept_once() {
        let a = handles("GET", "/kept-once-test", 200);
        let b = handles("GET", "/kept-once-test", 200);
        drop((a, b));
        let map = kept().read().unwrap();
        assert_eq!(map.get("/kept-once-test").map(Vec::len), Some(1));
    }
}
