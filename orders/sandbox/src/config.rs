//! Sandbox settings, read once at start-up from `SANDBOX_*` environment variables,
//! each with a default that works against the local stack.

pub use platform::env::Secret;

use crate::faults::{Faults, Rate};

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// `SANDBOX_LISTEN`, default `127.0.0.1:8085`.
    pub listen: String,
    /// `SANDBOX_API_KEY`, default `sk_test_floodgate`: the bearer key `/v1` expects.
    pub api_key: Secret,
    /// `SANDBOX_WEBHOOK_URL`, default `http://127.0.0.1:8081/api/payments/webhook`.
    pub webhook_url: String,
    /// `SANDBOX_WEBHOOK_SECRET`, default `whsec_floodgate_dev`: the HMAC key of
    /// `Stripe-Signature`.
    pub webhook_secret: Secret,
    /// The fault knobs at start (`SANDBOX_LATENCY_MS`, `SANDBOX_DECLINE_RATE`,
    /// `SANDBOX_TIMEOUT_RATE`, `SANDBOX_TIMEOUT_HOLD_MS`, `SANDBOX_WEBHOOK_DELAY_MS`,
    /// `SANDBOX_DUPLICATE_WEBHOOKS`, `SANDBOX_OUT_OF_ORDER_WEBHOOKS`,
    /// `SANDBOX_WEBHOOK_DROP_RATE`); `PUT /admin/faults` changes the live copy.
    pub faults: Faults,
    /// `SANDBOX_STATE_FILE`: where the books are journaled (see `journal`); unset,
    /// they live only in memory.
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for SandboxConfig {
    /// The local defaults, ignoring the environment (what tests start from).
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8085".into(),
            api_key: Secret::new("sk_test_floodgate"),
            webhook_url: "http://127.0.0.1:8081/api/payments/webhook".into(),
            webhook_secret: Secret::new("whsec_floodgate_dev"),
            faults: Faults::default(),
            state_file: None,
        }
    }
}

/// A variable that is set but unusable. Start-up stops on it rather than running
/// with a default the operator did not ask for (a mistyped decline rate would
/// otherwise quietly test nothing).
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl SandboxConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (the environment in production, a map in
    /// tests). Unset and empty variables take their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&get);
        let defaults = Self::default();
        let start = Faults::default();
        Ok(Self {
            listen: vars.string("SANDBOX_LISTEN").unwrap_or(defaults.listen),
            api_key: vars
                .string("SANDBOX_API_KEY")
                .map(Secret::new)
                .unwrap_or(defaults.api_key),
            webhook_url: vars
                .string("SANDBOX_WEBHOOK_URL")
                .unwrap_or(defaults.webhook_url),
            webhook_secret: vars
                .string("SANDBOX_WEBHOOK_SECRET")
                .map(Secret::new)
                .unwrap_or(defaults.webhook_secret),
            faults: Faults {
                latency_ms: vars.number("SANDBOX_LATENCY_MS", start.latency_ms)?,
                decline_rate: vars.rate("SANDBOX_DECLINE_RATE", start.decline_rate)?,
                timeout_rate: vars.rate("SANDBOX_TIMEOUT_RATE", start.timeout_rate)?,
                timeout_hold_ms: vars.number("SANDBOX_TIMEOUT_HOLD_MS", start.timeout_hold_ms)?,
                webhook_delay_ms: vars
                    .number("SANDBOX_WEBHOOK_DELAY_MS", start.webhook_delay_ms)?,
                duplicate_webhooks: vars
                    .flag("SANDBOX_DUPLICATE_WEBHOOKS", start.duplicate_webhooks)?,
                out_of_order_webhooks: vars
                    .flag("SANDBOX_OUT_OF_ORDER_WEBHOOKS", start.out_of_order_webhooks)?,
                webhook_drop_rate: vars
                    .rate("SANDBOX_WEBHOOK_DROP_RATE", start.webhook_drop_rate)?,
            },
            state_file: vars.string("SANDBOX_STATE_FILE").map(Into::into),
        })
    }
}

struct Vars<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    fn string(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                name,
                problem: format!("expected a whole number of milliseconds, got {v:?}"),
            }),
        }
    }

    fn rate(&self, name: &'static str, default: Rate) -> Result<Rate, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number between 0 and 1, got {v:?}"))
                .and_then(Rate::try_from)
                .map_err(|problem| ConfigError { name, problem }),
        }
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.string(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    name,
                    problem: format!("expected true or false, got {v:?}"),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<SandboxConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SandboxConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_when_unset_or_empty() {
        let c = from(&[("SANDBOX_DECLINE_RATE", "")]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8085");
        assert_eq!(c.api_key.expose(), "sk_test_floodgate");
        assert_eq!(c.webhook_secret.expose(), "whsec_floodgate_dev");
        assert_eq!(c.faults, Faults::default());
        assert_eq!(c.faults.timeout_hold_ms, 30_000);
    }

    #[test]
    fn reads_every_knob() {
        let c = from(&[
            ("SANDBOX_LATENCY_MS", "250"),
            ("SANDBOX_DECLINE_RATE", "0.25"),
            ("SANDBOX_TIMEOUT_RATE", "1"),
            ("SANDBOX_TIMEOUT_HOLD_MS", "500"),
            ("SANDBOX_WEBHOOK_DELAY_MS", "40"),
            ("SANDBOX_DUPLICATE_WEBHOOKS", "true"),
            ("SANDBOX_OUT_OF_ORDER_WEBHOOKS", "1"),
            ("SANDBOX_WEBHOOK_DROP_RATE", "0.5"),
        ])
        .unwrap();
        let f = c.faults;
        assert_eq!(f.latency_ms, 250);
        assert_eq!(f64::from(f.decline_rate), 0.25);
        assert_eq!(f64::from(f.timeout_rate), 1.0);
        assert_eq!(f.timeout_hold_ms, 500);
        assert_eq!(f.webhook_delay_ms, 40);
        assert!(f.duplicate_webhooks && f.out_of_order_webhooks);
        assert_eq!(f64::from(f.webhook_drop_rate), 0.5);
    }

    #[test]
    fn refuses_unusable_values() {
        for (name, value) in [
            ("SANDBOX_DECLINE_RATE", "1.5"),
            ("SANDBOX_DECLINE_RATE", "NaN"),
            ("SANDBOX_LATENCY_MS", "-1"),
            ("SANDBOX_DUPLICATE_WEBHOOKS", "maybe"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let c = from(&[
            ("SANDBOX_API_KEY", "sk_test_hunter2"),
            ("SANDBOX_WEBHOOK_SECRET", "whsec_hunter2"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("***"));
    }
}
