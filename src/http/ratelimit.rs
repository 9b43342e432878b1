//! Per-client-IP token buckets on the routes that take passwords or mint tokens.
//!
//! In memory, per instance: a flood is refused before it reaches the database or the
//! password hasher. IPv6 clients are bucketed by their /64, which is what one
//! subscriber usually holds. Idle buckets are swept at most once a minute.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::client_ip::ClientIp;
use crate::config::RateLimitSettings;
use crate::error::AppError;

const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct IpRateLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    last_sweep: Mutex<Instant>,
}

/// The bucket an address draws from.
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

impl IpRateLimiter {
    /// None when the limit is off (`RATE_LIMIT_PER_IP_PER_MINUTE=0`).
    pub fn new(settings: &RateLimitSettings) -> Option<Arc<Self>> {
        let per_minute = NonZeroU32::new(settings.per_minute)?;
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Some(Arc::new(Self {
            buckets: RateLimiter::keyed(quota),
            last_sweep: Mutex::new(Instant::now()),
        }))
    }

    /// Takes one token from `ip`'s bucket, or says how long until one is free.
    pub fn check(&self, ip: IpAddr) -> Result<(), AppError> {
        self.sweep_if_due();
        self.buckets.check_key(&bucket_of(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::TooManyRequests {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    fn sweep_if_due(&self) {
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
    }
}

/// The 429s of one limited route, labelled as the router matched it (base path
/// included).
fn refused(route: String) -> metrics::Counter {
    metrics::counter!("portcullis_rate_limited_total", "scope" => "ip", "route" => route)
}

/// Puts a limited route's 429 counter at zero when the router is built: the limited
/// routes are known from the configuration, so their series exist before the first
/// refusal.
pub fn count_from_zero(route: &str) {
    // The recorder must exist before the handle is taken, or it counts nowhere.
    let _ = crate::recorder::metrics_handle();
    refused(route.to_owned()).increment(0);
}

/// Middleware for one limited route; requests without a known address pass.
pub async fn limit(State(limiter): State<Arc<IpRateLimiter>>, req: Request, next: Next) -> Response {
    if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied()
        && let Err(e) = limiter.check(ip)
    {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        refused(route).increment(1);
        return e.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_past_the_burst_and_name_a_wait() {
        let limiter = IpRateLimiter::new(&RateLimitSettings {
            per_minute: 60,
            burst: 3,
            routes: None,
        })
        .unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        match limiter.check(a) {
            Err(AppError::TooManyRequests { retry_after }) => assert!((1..=2).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        limiter.check(b).unwrap();
    }

    #[test]
    fn ipv6_shares_a_bucket_per_64() {
        assert_eq!(
            bucket_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            bucket_of("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_ne!(
            bucket_of("2001:db8:1:2::1".parse().unwrap()),
            bucket_of("2001:db8:1:3::1".parse().unwrap())
        );
        assert!(
            IpRateLimiter::new(&RateLimitSettings {
                per_minute: 0,
                burst: 1,
                routes: None
            })
            .is_none()
        );
    }
}
