//! HTTP metrics for the axum services: requests by matched route and status class, and
//! their duration, in a registry owned by the service's state rather than a global.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::registry::registered;

#[derive(Clone)]
pub struct HttpMetrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// `service` prefixes the metric names: `floodgate_{service}_http_requests_total`.
    pub fn new(service: &str) -> Self {
        let registry = Registry::new();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    format!("floodgate_{service}_http_requests_total"),
                    "HTTP requests by route and status class",
                ),
                &["route", "status"],
            ),
        );
        let duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    format!("floodgate_{service}_http_request_duration_seconds"),
                    "HTTP request duration by route",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
                &["route"],
            ),
        );
        Self {
            registry,
            requests,
            duration,
        }
    }

    pub fn render(&self) -> String {
        crate::probes::render(&self.registry)
    }
}

/// `axum::middleware::from_fn_with_state(metrics, track)`.
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    m.requests.with_label_values(&[&route, class]).inc();
    m.duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    response
}
