//! Prometheus metrics in a registry the process owns (no globals): registered as they are
//! made, so each one is a field of whatever counts with it.

use prometheus::Registry;
use prometheus::core::Collector;

/// Registers `metric` with `registry` and hands it back. Making or registering a metric
/// fails only for a programming error (a bad name, one registered twice), found at
/// start-up: hence the panics.
pub fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("register");
    metric
}
