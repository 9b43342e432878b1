//! What every handler can reach: the service, the metrics handle, the served OpenAPI
//! document and the request limits the extractors enforce.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::domain::Portcullis;

/// Request limits the extractors need.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub service: Portcullis,
    pub metrics: PrometheusHandle,
    /// Rendered once at start-up from the route table.
    pub openapi: Bytes,
    pub limits: Limits,
    /// Every path the route table serves, for the discovery document (which names
    /// only endpoints that answer).
    pub served: Arc<HashSet<&'static str>>,
}

impl AsRef<Limits> for AppState {
    fn as_ref(&self) -> &Limits {
        &self.limits
    }
}

/// The pages (`src/ui`) take the service alone.
impl axum::extract::FromRef<AppState> for Portcullis {
    fn from_ref(state: &AppState) -> Self {
        state.service.clone()
    }
}
