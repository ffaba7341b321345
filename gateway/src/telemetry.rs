//! Prometheus metrics of the edge, in a registry owned by the gateway (no globals).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub rate_limited: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "floodgate_gateway_requests_total",
                "Requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "floodgate_gateway_request_duration_seconds",
                "Time to answer, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            &["route"],
        )
        .expect("metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "floodgate_gateway_rate_limited_total",
                "Requests refused with 429",
            ),
            &["route"],
        )
        .expect("metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("register");
        registry
            .register(Box::new(duration.clone()))
            .expect("register");
        registry
            .register(Box::new(rate_limited.clone()))
            .expect("register");
        Self {
            registry,
            requests,
            duration,
            rate_limited,
        }
    }

    /// Adds a metric made elsewhere (the join batcher's, which starts before the proxy).
    pub fn register_join_batches(&self, batches: Histogram) {
        self.registry
            .register(Box::new(batches))
            .expect("register join batches");
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
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
