//! Prometheus metrics of the edge, in a registry owned by the gateway (no globals),
//! served on a listener of their own (`FLOODGATE_GATEWAY_METRICS_LISTEN`), never on
//! the buyers' port: the figures (routes, refusals, latency) are for operators, and
//! encoding the registry is work the crowd should not be able to ask for.

use platform::registry::registered;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub rate_limited: IntCounterVec,
    /// Mirrors `waitroom::queue::short_waits` (a process-wide count) when scraped.
    short_waits: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_gateway_requests_total",
                    "Requests by route and status",
                ),
                &["route", "status"],
            ),
        );
        let duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "floodgate_gateway_request_duration_seconds",
                    "Time to answer, by route",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ]),
                &["route"],
            ),
        );
        let rate_limited = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_gateway_rate_limited_total",
                    "Requests refused with 429",
                ),
                &["route"],
            ),
        );
        let short_waits = registered(
            &registry,
            IntCounter::new(
                "floodgate_gateway_redis_short_waits_total",
                "Joins and claims answered before the Redis replicas they wait for confirmed them",
            ),
        );
        Self {
            registry,
            requests,
            duration,
            rate_limited,
            short_waits,
        }
    }

    /// Adds a metric made elsewhere (the join batcher's, which starts before the proxy).
    pub fn register_join_batches(&self, batches: Histogram) {
        self.registry
            .register(Box::new(batches))
            .expect("register join batches");
    }

    pub fn render(&self) -> String {
        let behind = waitroom::queue::short_waits().saturating_sub(self.short_waits.get());
        self.short_waits.inc_by(behind);
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// The metrics listener's one page: `GET /metrics`, anything else 404.
pub struct MetricsEndpoint(pub Metrics);

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsEndpoint {
    async fn response(
        &self,
        session: &mut pingora::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = if session.req_header().uri.path() == "/metrics" {
            (
                200,
                "text/plain; version=0.0.4",
                self.0.render().into_bytes(),
            )
        } else {
            (404, "text/plain", b"not found\n".to_vec())
        };
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .body(body)
            .expect("a valid response")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Visitors per Redis call of the join batcher (see `crate::arrivals`).
pub fn join_batch_histogram() -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(
            "floodgate_gateway_join_batch_size",
            "Joins answered by one Redis call",
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
    )
    .expect("metric")
}
