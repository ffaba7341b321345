//! The fault knobs: how the sandbox misbehaves. They start from the environment
//! ([`crate::config`]) and `PUT /admin/faults` changes them while it runs; every
//! request reads the current values, so a change applies to the next request.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A probability, checked to lie in [0, 1] when it is parsed, so rolling it can
/// neither panic nor silently mean something else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Rate(f64);

impl Rate {
    pub const NEVER: Rate = Rate(0.0);
    pub const ALWAYS: Rate = Rate(1.0);

    /// True with this probability.
    pub fn roll(self) -> bool {
        rand::thread_rng().gen_bool(self.0)
    }
}

impl TryFrom<f64> for Rate {
    type Error = String;

    fn try_from(p: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&p) {
            Ok(Rate(p))
        } else {
            Err(format!("a rate must be between 0 and 1, got {p}"))
        }
    }
}

impl From<Rate> for f64 {
    fn from(r: Rate) -> f64 {
        r.0
    }
}

/// How far `out_of_order_webhooks` may hold an event back.
pub const OUT_OF_ORDER_MAX: Duration = Duration::from_millis(2000);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Every `/v1` request waits this long before it is handled, so a client that
    /// gives up during the wait has changed nothing (the "answered, but late" case
    /// without a hidden charge; `timeout_rate` is the hidden-charge case).
    pub latency_ms: u64,
    /// The share of confirms without a decisive payment method or card that are
    /// declined.
    pub decline_rate: Rate,
    /// The share of confirms whose response is withheld: the confirm takes effect
    /// (charge, webhook) but the caller waits `timeout_hold_ms` and then gets a 504 —
    /// charged while the page timed out.
    pub timeout_rate: Rate,
    /// How long a withheld response is held before the 504.
    pub timeout_hold_ms: u64,
    /// Every webhook event waits this long before its first delivery attempt.
    pub webhook_delay_ms: u64,
    /// Every event is delivered twice (two independent deliveries, same event id).
    pub duplicate_webhooks: bool,
    /// Every event is held back a further random 0–2 s and delivered on its own, so
    /// later events can overtake earlier ones.
    pub out_of_order_webhooks: bool,
    /// The share of events never delivered at all; only polling finds those changes.
    pub webhook_drop_rate: Rate,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            decline_rate: Rate::NEVER,
            timeout_rate: Rate::NEVER,
            timeout_hold_ms: 30_000,
            webhook_delay_ms: 0,
            duplicate_webhooks: false,
            out_of_order_webhooks: false,
            webhook_drop_rate: Rate::NEVER,
        }
    }
}

impl Faults {
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    pub fn timeout_hold(&self) -> Duration {
        Duration::from_millis(self.timeout_hold_ms)
    }

    pub fn webhook_delay(&self) -> Duration {
        Duration::from_millis(self.webhook_delay_ms)
    }

    /// The extra hold for one event under `out_of_order_webhooks`, if it is on.
    pub fn reorder_hold(&self) -> Option<Duration> {
        self.out_of_order_webhooks.then(|| {
            let max = OUT_OF_ORDER_MAX.as_millis() as u64;
            Duration::from_millis(rand::thread_rng().gen_range(0..=max))
        })
    }

    pub fn apply(&mut self, patch: FaultsPatch) {
        let FaultsPatch {
            latency_ms,
            decline_rate,
            timeout_rate,
            timeout_hold_ms,
            webhook_delay_ms,
            duplicate_webhooks,
            out_of_order_webhooks,
            webhook_drop_rate,
        } = patch;
        if let Some(v) = latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = decline_rate {
            self.decline_rate = v;
        }
        if let Some(v) = timeout_rate {
            self.timeout_rate = v;
        }
        if let Some(v) = timeout_hold_ms {
            self.timeout_hold_ms = v;
        }
        if let Some(v) = webhook_delay_ms {
            self.webhook_delay_ms = v;
        }
        if let Some(v) = duplicate_webhooks {
            self.duplicate_webhooks = v;
        }
        if let Some(v) = out_of_order_webhooks {
            self.out_of_order_webhooks = v;
        }
        if let Some(v) = webhook_drop_rate {
            self.webhook_drop_rate = v;
        }
    }
}

/// The body of `PUT /admin/faults`: any subset of the knobs; the rest keep their
/// values. Unknown fields are refused so a misspelt knob is not silently ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub decline_rate: Option<Rate>,
    pub timeout_rate: Option<Rate>,
    pub timeout_hold_ms: Option<u64>,
    pub webhook_delay_ms: Option<u64>,
    pub duplicate_webhooks: Option<bool>,
    pub out_of_order_webhooks: Option<bool>,
    pub webhook_drop_rate: Option<Rate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_do_not_parse() {
        assert!(serde_json::from_str::<Rate>("0.3").is_ok());
        assert!(serde_json::from_str::<Rate>("1.01").is_err());
        assert!(serde_json::from_str::<Rate>("-0.1").is_err());
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"decline_rte": 1}"#).is_err());
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let mut f = Faults::default();
        f.apply(
            serde_json::from_str(r#"{"decline_rate": 1, "duplicate_webhooks": true}"#).unwrap(),
        );
        assert_eq!(f.decline_rate, Rate::ALWAYS);
        assert!(f.duplicate_webhooks);
        assert_eq!(f.timeout_hold_ms, 30_000);
        assert!(Rate::ALWAYS.roll());
        assert!(!Rate::NEVER.roll());
    }
}
