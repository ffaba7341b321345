//! The admitter's own small HTTP face: liveness, readiness (Redis reachable) and metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::admission::Admitter;
use crate::queue::Waitroom;

#[derive(Clone)]
struct Probe {
    room: Waitroom,
    admitter: Arc<Admitter>,
}

pub fn router(room: Waitroom, admitter: Arc<Admitter>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Probe { room, admitter })
}

async fn ready(State(p): State<Probe>) -> (StatusCode, &'static str) {
    match p.room.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
    }
}

async fn metrics(State(p): State<Probe>) -> String {
    let families = p.admitter.metrics().registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}
