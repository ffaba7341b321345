//! Latency and throughput figures: one HDR histogram per step, answer codes per
//! endpoint, and the summaries that go into the reports.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A step of the buyer's journey (a request kind, or a derived duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `POST /queue/{event}/join`.
    Join,
    /// `GET /queue/{event}/status`.
    Status,
    /// A refresher's second `POST /queue/{event}/join` with its queue token.
    Rejoin,
    /// `POST /api/events/{event}/holds`.
    Hold,
    /// `DELETE /api/holds/{id}`.
    Release,
    /// `POST /api/holds/{id}/checkout`.
    Checkout,
    /// `POST {sandbox}/v1/payment_intents/{id}/confirm`.
    Pay,
    /// `GET /api/orders/{id}`.
    Order,
    /// Derived: from the successful confirm to the first answer saying `paid`.
    OrderPaid,
    /// Derived: from `orders.paid_at` to the confirmation's arrival at the SMTP sink.
    Email,
    /// Derived: from the join to the first status answer saying `admitted`.
    QueueWait,
}

impl Step {
    pub const REQUESTS: [Step; 8] = [
        Step::Join,
        Step::Status,
        Step::Rejoin,
        Step::Hold,
        Step::Release,
        Step::Checkout,
        Step::Pay,
        Step::Order,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Join => "join",
            Step::Status => "status",
            Step::Rejoin => "rejoin",
            Step::Hold => "hold",
            Step::Release => "release",
            Step::Checkout => "checkout",
            Step::Pay => "pay",
            Step::Order => "order",
            Step::OrderPaid => "order_paid",
            Step::Email => "email",
            Step::QueueWait => "queue_wait",
        }
    }
}

/// One request as a buyer saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub step: Step,
    /// When it was sent, in milliseconds since the start of the run.
    pub at_ms: u64,
    pub latency_us: u64,
    /// HTTP status; 0 for a transport error (refused, reset, timed out).
    pub status: u16,
}

/// A histogram of microseconds, from 1 µs to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What a histogram says, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub count: u64,
    /// Per second, over the span between the first and the last sample.
    pub throughput_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The cumulative distribution: `[latency_ms, quantile]` pairs, for the plots.
    pub cdf: Vec<(f64, f64)>,
}

/// The quantiles the CDFs are drawn at.
fn cdf_quantiles() -> Vec<f64> {
    let mut q: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
    q.extend([0.995, 0.999, 0.9999, 1.0]);
    q
}

pub fn figures(h: &Histogram<u64>, span_ms: u64) -> Figures {
    let ms = |us: u64| us as f64 / 1000.0;
    let count = h.len();
    let cdf = if count == 0 {
        Vec::new()
    } else {
        cdf_quantiles()
            .into_iter()
            .map(|q| (ms(h.value_at_quantile(q)), q))
            .collect()
    };
    Figures {
        count,
        throughput_per_s: if span_ms > 0 {
            count as f64 * 1000.0 / span_ms as f64
        } else {
            0.0
        },
        mean_ms: if count == 0 { 0.0 } else { h.mean() / 1000.0 },
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        cdf,
    }
}

/// Every request of the run, folded: a histogram per step and the answers per endpoint.
#[derive(Default)]
pub struct Folded {
    pub hist: BTreeMap<Step, Histogram<u64>>,
    /// First and last send time per step (ms since start).
    pub span: BTreeMap<Step, (u64, u64)>,
    /// Step → status → count ("0" is a transport error).
    pub statuses: BTreeMap<Step, BTreeMap<u16, u64>>,
}

impl Folded {
    pub fn add(&mut self, s: &Sample) {
        *self
            .statuses
            .entry(s.step)
            .or_default()
            .entry(s.status)
            .or_default() += 1;
        // Latencies of answered requests only: a transport error's time says little.
        if s.status != 0 {
            self.record(s.step, s.at_ms, s.latency_us);
        }
    }

    /// Records a duration (µs) for `step`, observed at `at_ms`.
    pub fn record(&mut self, step: Step, at_ms: u64, us: u64) {
        self.hist
            .entry(step)
            .or_insert_with(histogram)
            .saturating_record(us.max(1));
        let span = self.span.entry(step).or_insert((at_ms, at_ms));
        span.0 = span.0.min(at_ms);
        span.1 = span.1.max(at_ms);
    }

    pub fn figures(&self) -> BTreeMap<&'static str, Figures> {
        self.hist
            .iter()
            .map(|(step, h)| {
                let (first, last) = self.span.get(step).copied().unwrap_or((0, 0));
                (step.name(), figures(h, last.saturating_sub(first)))
            })
            .collect()
    }

    /// `{"join": {"200": 2000}, ...}`, statuses as strings (transport errors: "error").
    pub fn status_table(&self) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        self.statuses
            .iter()
            .map(|(step, codes)| {
                let codes = codes
                    .iter()
                    .map(|(code, n)| {
                        let key = if *code == 0 {
                            "error".to_owned()
                        } else {
                            code.to_string()
                        };
                        (key, *n)
                    })
                    .collect();
                (step.name(), codes)
            })
            .collect()
    }

    /// Requests answered with a 5xx, per step.
    pub fn server_errors(&self) -> BTreeMap<Step, u64> {
        self.statuses
            .iter()
            .map(|(step, codes)| {
                (
                    *step,
                    codes
                        .iter()
                        .filter(|(c, _)| **c >= 500)
                        .map(|(_, n)| n)
                        .sum(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Requests that got no answer, per step.
    pub fn transport_errors(&self) -> BTreeMap<Step, u64> {
        self.statuses
            .iter()
            .filter_map(|(step, codes)| codes.get(&0).map(|n| (*step, *n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_known_distribution() {
        let mut f = Folded::default();
        for i in 1..=1000u64 {
            f.add(&Sample {
                step: Step::Join,
                at_ms: i,
                latency_us: i * 1000,
                status: 200,
            });
        }
        f.add(&Sample {
            step: Step::Join,
            at_ms: 5,
            latency_us: 7,
            status: 0,
        });
        f.add(&Sample {
            step: Step::Hold,
            at_ms: 5,
            latency_us: 7,
            status: 503,
        });
        let figs = f.figures();
        let join = &figs["join"];
        assert_eq!(join.count, 1000);
        assert!((join.p50_ms - 500.0).abs() < 1.0, "{}", join.p50_ms);
        assert!((join.p99_ms - 990.0).abs() < 1.5, "{}", join.p99_ms);
        assert!((join.throughput_per_s - 1000.0 * 1000.0 / 999.0).abs() < 0.01);
        assert_eq!(f.transport_errors().get(&Step::Join), Some(&1));
        assert_eq!(f.server_errors().get(&Step::Hold), Some(&1));
        assert_eq!(f.status_table()["join"]["error"], 1);
        assert!(join.cdf.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
