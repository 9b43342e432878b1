//! Application assembly: the middleware around the routes (`http::router`), the
//! background tasks that keep an instance current, and serving with graceful shutdown.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::domain::Portcullis;
use crate::error::AppError;
use crate::http;

/// Request ids: random (version 4) UUIDs drawn from the thread's CSPRNG.
/// tower-http's `MakeRequestUuid` asks the kernel (`getrandom`) for each one, a
/// system call on every request.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

/// No route takes a NUL in its path or query; refusing it here means no handler can
/// pass one on to the database.
async fn refuse_nul_in_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let encoded = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or_default();
    if http::extract::encodes_nul(encoded.as_bytes()) {
        return AppError::BadRequest("NUL characters are not accepted".into()).into_response();
    }
    next.run(req).await
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// Builds the complete application for a service: the routes of the table inside the
/// middleware every request passes through.
pub fn router(service: Portcullis) -> Router {
    let config = service.config().clone();
    let app = http::router::routes(service);
    let request_id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // The path only: query strings may carry codes or tokens.
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));

    let trusted_proxies = Arc::new(http::client_ip::TrustedProxies {
        nets: config.edge.trusted_proxies.clone(),
        header: config.edge.trusted_proxy_header,
    });
    app.layer(tower::util::option_layer(cors_layer(&config.edge.cors)))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    HeaderName::from_static("x-api-key"),
                ]))
                .map_request(move |req: Request| http::client_ip::attach(&trusted_proxies, req))
                .layer(middleware::from_fn(refuse_nul_in_uri))
                .layer(SetRequestIdLayer::new(request_id.clone(), RandomRequestId))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .option_layer(
                    config
                        .edge
                        .hsts
                        .as_deref()
                        .and_then(|v| HeaderValue::from_str(v).ok())
                        .map(|v| SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, v)),
                ),
        )
}

/// CORS for the configured origins; none configured, no CORS headers at all (browsers
/// then refuse cross-origin reads, the safe default).
fn cors_layer(cors: &crate::config::CorsSettings) -> Option<CorsLayer> {
    if cors.origins.is_empty() {
        return None;
    }
    let origin = if cors.origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(cors.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
            ])
            .allow_credentials(cors.allow_credentials)
            .max_age(Duration::from_secs(600)),
    )
}

/// Keeps an instance current with the others: revocations (every sync interval),
/// signing keys, and housekeeping. The tasks end when aborted by the server.
///
/// Revocations are pulled by a task of their own: nothing else done in the background
/// (an API key last-use write waiting on a row lock, a key reload, a purge) can hold
/// them back past the bound docs/security.md promises.
///
/// The token horizon is raised by a task of its own too: minting stops short of the
/// horizon last stored, so a stalled housekeeping loop must not leave it behind.
fn spawn_background(service: Portcullis) -> [tokio::task::JoinHandle<()>; 3] {
    let interval = service.config().tokens.sync_interval;
    let horizon = {
        let service = service.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::domain::HORIZON_INTERVAL).await;
                if let Err(e) = service.raise_token_horizon().await {
                    tracing::warn!(error = %e, "raising the token horizon failed");
                }
            }
        })
    };
    let revocations = {
        let service = service.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = service.sync_revocations().await {
                    tracing::warn!(error = %e, "revocation sync failed");
                }
            }
        })
    };
    let housekeeping = tokio::spawn(async move {
        let mut last_keys = Instant::now();
        let mut last_purge = Instant::now();
        let mut last_usage_flush = Instant::now();
        let mut last_upkeep = Instant::now();
        let mut last_heartbeat = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            // The recorder keeps every histogram sample until upkeep folds it into the
            // buckets: 8 bytes a request, which at tens of thousands of requests a
            // second grew the heap by tens of MB a minute when this ran once a minute.
            if last_upkeep.elapsed() >= Duration::from_secs(1) {
                last_upkeep = Instant::now();
                crate::recorder::metrics_handle().run_upkeep();
            }
            if last_usage_flush.elapsed() >= Duration::from_secs(5) {
                last_usage_flush = Instant::now();
                if let Err(e) = service.flush_key_usage().await {
                    tracing::warn!(error = %e, "writing API key last-use times failed");
                }
            }
            if last_keys.elapsed() >= service.config().tokens.key_reload_interval {
                last_keys = Instant::now();
                if let Err(e) = service.keys().reload().await {
                    tracing::warn!(error = %e, "signing key reload failed");
                }
            }
            if last_heartbeat.elapsed() >= crate::domain::instances::HEARTBEAT {
                last_heartbeat = Instant::now();
                if let Err(e) = service.touch_instance().await {
                    tracing::warn!(error = %e, "marking this instance as serving failed");
                }
            }
            if last_purge.elapsed() >= Duration::from_secs(60) {
                last_purge = Instant::now();
                if let Err(e) = service.purge_expired().await {
                    tracing::warn!(error = %e, "purging expired revocations failed");
                }
                release_free_heap();
            }
        }
    });
    [revocations, housekeeping, horizon]
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains in-flight
/// requests and returns.
pub async fn serve(
    service: Portcullis,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = spawn_background(service.clone());
    let (stop_audit, stopped) = tokio::sync::watch::channel(false);
    let audit_writer = {
        let service = service.clone();
        tokio::spawn(async move { service.write_audit_requests(stopped).await })
    };
    let app = router(service.clone());
    // Start-up (migrations, key loading, the bootstrap) is done.
    release_free_heap();
    let mut limits = service.config().server.connections.clone();
    limits.max_connections = connections_within_descriptors(
        limits.max_connections,
        service.config().database.max_connections as usize,
    );
    let trusted = service.config().edge.trusted_proxies.clone();
    let result = serve_connections(listener, app, limits, trusted, shutdown).await;
    for task in background {
        task.abort();
    }
    let _ = stop_audit.send(true);
    let _ = audit_writer.await;
    if let Err(e) = service.flush_audit_requests().await {
        tracing::warn!(error = %e, "writing audit records failed");
    }
    if let Err(e) = service.flush_key_usage().await {
        tracing::warn!(error = %e, "writing API key last-use times failed");
    }
    if let Err(e) = service.leave_instances().await {
        tracing::warn!(error = %e, "forgetting this instance's record failed");
    }
    service.store().close().await;
    result
}

/// Descriptors kept back from client connections beyond the database pool: the
/// listener, the runtime's, SQLite's files, logs, outgoing HTTP (OAuth providers).
const DESCRIPTOR_RESERVE: usize = 64;

/// The connection cap `configured` would get within this process's open-file limit:
/// raises the soft `RLIMIT_NOFILE` to the hard limit, then keeps `db_pool` and
/// [`DESCRIPTOR_RESERVE`] descriptors back, warning when that lowers `configured`.
/// Past the limit, accept would fail with EMFILE, and so would new database
/// connections while clients hold every descriptor.
fn connections_within_descriptors(configured: usize, db_pool: usize) -> usize {
    let Some(limit) = raise_descriptor_limit() else {
        return configured;
    };
    let cap = descriptor_cap(limit, db_pool);
    if configured > cap {
        tracing::warn!(
            configured,
            cap,
            open_files = limit,
            "PORTCULLIS_MAX_CONNECTIONS is {configured}, more than the open-file limit ({limit}) leaves for \
             connections; serving at most {cap} at once (raise `ulimit -n` to serve more)"
        );
        return cap;
    }
    configured
}

/// Connections `limit` descriptors allow beside `db_pool` and the reserve (at least 1).
fn descriptor_cap(limit: u64, db_pool: usize) -> usize {
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(db_pool + DESCRIPTOR_RESERVE)
        .max(1)
}

/// Raises the soft open-file limit to the hard one; the soft limit now in force, or
/// `None` where it cannot be read (or is unlimited).
fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        if lim.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        Some(lim.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

/// Answers `req` within `limit` (`PORTCULLIS_REQUEST_TIMEOUT_SECONDS`), or with a 408
/// problem, as every error is answered.
async fn answer_within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => AppError::RequestTimeout(format!(
            "the request was not answered within {} seconds",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// Open connections per client address, for `max_connections_per_ip`.
type PerIp = Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>;

/// One connection's share of `PerIp`, given back when the connection ends.
struct IpSlot(PerIp, IpAddr);

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Accepts connections until `shutdown`, within `limits`: at most `max_connections`
/// at once (the rest wait in the backlog), `max_connections_per_ip` from one address
/// outside `trusted` (the rest are closed at once), each served by hyper with a
/// header-read timeout and closed when idle. Then drains: connections finish their
/// request in progress and close, for at most `shutdown_timeout`.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: crate::config::ConnectionLimits,
    trusted: Vec<ipnet::IpNet>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt;

    let request_timeout = limits.request_timeout;
    let app = app.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                answer_within(request_timeout, req, next)
            }))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout)),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip: PerIp = Arc::default();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip().to_canonical();
        let slot = if crate::http::client_ip::is_trusted(ip, &trusted) {
            None
        } else {
            let mut open = per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_ip {
                drop(open);
                metrics::counter!("portcullis_connections_refused_total").increment(1);
                drop(stream);
                continue;
            }
            *n += 1;
            Some(IpSlot(per_ip.clone(), ip))
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stopping = stopping.clone();
        let limits = limits.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            // Requests in progress and the end of the last one, for the idle timeout.
            let activity = Arc::new((
                std::sync::atomic::AtomicUsize::new(0),
                std::sync::Mutex::new(Instant::now()),
            ));
            let seen = activity.clone();
            let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let app = app.clone();
                let seen = seen.clone();
                seen.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let res = app.oneshot(req.map(axum::body::Body::new)).await;
                    *seen.1.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    seen.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    res
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(service),
                );
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                let idle_since = *activity.1.lock().unwrap_or_else(|e| e.into_inner());
                let busy = activity.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
                let from = if busy { Instant::now() } else { idle_since };
                let idle_deadline = tokio::time::Instant::from_std(from + limits.idle_timeout);
                tokio::select! {
                    _ = conn.as_mut() => break,
                    changed = stopping.changed(), if !closing => {
                        if changed.is_err() || *stopping.borrow() {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    _ = tokio::time::sleep_until(idle_deadline), if !closing => {
                        let busy = activity.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
                        let still_idle = *activity.1.lock().unwrap_or_else(|e| e.into_inner()) == idle_since;
                        if !busy && still_idle {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after {}s of draining; closing them",
            limits.shutdown_timeout.as_secs()
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
///
/// The SIGTERM handler is installed when this is called, not when the future is first
/// polled: a SIGTERM right after "ready" must drain, not kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown requested; draining in-flight requests");
    }
}

/// Hands the heap's free pages back to the OS. glibc only trims the top of its main
/// heap on its own, so memory freed by start-up work or a burst of load stays in RSS
/// while idle; called after start-up and once a minute (cheap: it walks free lists).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages; no pointer is affected.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_pool_and_files() {
        assert_eq!(descriptor_cap(1024, 10), 1024 - 10 - DESCRIPTOR_RESERVE);
        assert_eq!(descriptor_cap(256, 10), 256 - 10 - DESCRIPTOR_RESERVE);
        assert_eq!(descriptor_cap(50, 10), 1);
        assert_eq!(descriptor_cap(u64::MAX, 10), usize::MAX - 10 - DESCRIPTOR_RESERVE);
    }
}
