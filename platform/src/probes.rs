//! The probes every axum service answers on its own port: `/healthz` (the process is
//! up), `/readyz` (its dependencies answer) and `/metrics` (Prometheus text). Each
//! service says what "ready" means and which registry it keeps by implementing
//! [`Probe`] for its state, and merges [`routes`] into its router.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Registry, TextEncoder};

/// What a service's state tells its probes.
pub trait Probe: Clone + Send + Sync + 'static {
    /// Whether the dependencies answer; the error names the one that does not.
    fn ready(&self) -> impl Future<Output = Result<(), &'static str>> + Send;
    /// The registry `/metrics` renders.
    fn registry(&self) -> &Registry;
}

/// `/healthz`, `/readyz` and `/metrics` for a state `S`.
pub fn routes<S: Probe>() -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
}

async fn ready<S: Probe>(State(s): State<S>) -> (StatusCode, &'static str) {
    match s.ready().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(what) => (StatusCode::SERVICE_UNAVAILABLE, what),
    }
}

async fn metrics<S: Probe>(State(s): State<S>) -> String {
    render(s.registry())
}

/// A registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}
