//! The sandbox's Prometheus counters, in a registry owned by the state rather than
//! a global, so every test's sandbox counts on its own.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    intents_created: IntCounter,
    confirms: IntCounterVec,
    refunds: IntCounter,
    webhooks: IntCounterVec,
    webhook_attempts: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let vec = |name: &str, help: &str, label: &str, values: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect("metric");
            registry.register(Box::new(v.clone())).expect("register");
            // Every outcome is exported from the start, at zero, so a rate over it
            // is defined before the first occurrence.
            for value in values {
                v.with_label_values(&[*value]);
            }
            v
        };
        Self {
            intents_created: counter(
                "floodgate_sandbox_payment_intents_created_total",
                "Payment intents created",
            ),
            confirms: vec(
                "floodgate_sandbox_confirms_total",
                "Confirm attempts by outcome (refused: the intent had already succeeded)",
                "outcome",
                &["succeeded", "declined", "refused"],
            ),
            refunds: counter("floodgate_sandbox_refunds_total", "Refunds created"),
            webhooks: vec(
                "floodgate_sandbox_webhooks_total",
                "Webhook deliveries by final result",
                "result",
                &["delivered", "failed", "dropped"],
            ),
            webhook_attempts: vec(
                "floodgate_sandbox_webhook_attempts_total",
                "Webhook delivery attempts by outcome",
                "outcome",
                &["ok", "error"],
            ),
            registry,
        }
    }

    pub fn intent_created(&self) {
        self.intents_created.inc();
    }

    pub fn confirm(&self, outcome: &str) {
        self.confirms.with_label_values(&[outcome]).inc();
    }

    pub fn refund(&self) {
        self.refunds.inc();
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks.with_label_values(&[result]).inc();
    }

    pub fn webhook_attempt(&self, ok: bool) {
        self.webhook_attempts
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
