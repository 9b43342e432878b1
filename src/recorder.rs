//! The process's one metrics recorder: installed by whichever part records first (the
//! token cache's counters, the HTTP layer), read by `/metrics`. Its own module so the
//! domain does not reach into the application's assembly for it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder (the `metrics` facade allows one).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; then ours stays empty.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe_all();
            }
            handle
        })
        .clone()
}

/// Every metric the service records: name, kind, help text, and the label sets of a
/// counter that exist before its first event (a counter whose labels come from
/// requests, such as a route, appears with its first request).
const METRICS: &[Metric] = &[
    Metric {
        name: "portcullis_http_requests_total",
        kind: Kind::Counter,
        help: "Requests answered, by method, route template and status.",
        zero: &[],
    },
    Metric {
        name: "portcullis_http_request_duration_seconds",
        kind: Kind::Histogram,
        help: "Time to answer a request, by method, route template and status.",
        zero: &[],
    },
    Metric {
        name: "portcullis_token_cache_lookups_total",
        kind: Kind::Counter,
        help: "Access-token checks answered from the verified-token cache (hit) or by a signature check (miss).",
        zero: &[&[("result", "hit")], &[("result", "miss")]],
    },
    Metric {
        name: "portcullis_logins_total",
        kind: Kind::Counter,
        help: "Password logins, by result.",
        zero: &[&[("result", "success")], &[("result", "failure")]],
    },
    Metric {
        name: "portcullis_lockouts_total",
        kind: Kind::Counter,
        help: "Login names locked after consecutive failures.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_rate_limited_total",
        kind: Kind::Counter,
        help: "Requests refused with 429: per client IP (by route) or per account (lockout).",
        // The {scope="ip",route} series are put at zero as the router limits each
        // route (`http::ratelimit::count_from_zero`): the routes come from the config.
        zero: &[&[("scope", "account")]],
    },
    Metric {
        name: "portcullis_registrations_total",
        kind: Kind::Counter,
        help: "Accounts created.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_token_refreshes_total",
        kind: Kind::Counter,
        help: "Refresh tokens rotated.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_refresh_reuse_detected_total",
        kind: Kind::Counter,
        help: "Rotated refresh tokens presented again (each ends its session).",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_hash_queue_rejections_total",
        kind: Kind::Counter,
        help: "Password hashes refused (503) because the hashing queue was full.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_audit_requests_dropped_total",
        kind: Kind::Counter,
        help: "Request audit records dropped because the audit buffer was full.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_connections_refused_total",
        kind: Kind::Counter,
        help: "Connections closed at once: their client address already held as many as allowed.",
        zero: &[&[]],
    },
    Metric {
        name: "portcullis_db_pool_connections",
        kind: Kind::Gauge,
        help: "Database connections: open, and of those idle.",
        zero: &[],
    },
];

/// One metric: its name, kind, help text, and the label sets of a counter that exist
/// before its first event.
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    zero: &'static [&'static [(&'static str, &'static str)]],
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// `# HELP` for every metric, and its counters at zero, so dashboards and alerts can be
/// written before the first event.
fn describe_all() {
    for Metric { name, kind, help, zero } in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
        for labels in *zero {
            let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
            metrics::counter!(*name, labels).increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name the source records, found as a `"portcullis_..."` literal.
    fn recorded_names() -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("recorder.rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (at, _) in text.match_indices("\"portcullis_") {
                        let name: String = text[at + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        names.insert(name);
                    }
                }
            }
        }
        names
    }

    #[test]
    fn every_recorded_metric_is_described() {
        let described: std::collections::BTreeSet<String> = METRICS.iter().map(|m| m.name.to_string()).collect();
        let recorded = recorded_names();
        assert!(recorded.len() >= 10, "{recorded:?}");
        let missing: Vec<_> = recorded.difference(&described).collect();
        assert!(missing.is_empty(), "recorded but not described in METRICS: {missing:?}");
    }

    #[test]
    fn help_lines_and_counters_at_zero_before_any_event() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe_all);
        let text = handle.render();
        for Metric { name, kind, zero, .. } in METRICS {
            if !zero.is_empty() {
                assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
                let kind = match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                };
                assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name}: {text}");
            }
            for labels in *zero {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                let series = if labels.is_empty() {
                    format!("{name} 0")
                } else {
                    format!("{name}{{{}}} 0", labels.join(","))
                };
                assert!(text.lines().any(|l| l == series), "{series} missing: {text}");
            }
        }
    }
}
