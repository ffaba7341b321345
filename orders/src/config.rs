//! Orders settings, read once at start-up. Secrets come from the environment (or a
//! file named by `*_FILE`) and are wrapped so they never print.

use std::time::Duration;

use platform::env::{ConfigError, Secret, secret, var};
use waitroom::config::RedisConfig;

#[derive(Clone, Debug)]
pub struct PaymentsConfig {
    /// `PAYMENTS_PROVIDER`: `sandbox` (default) or `stripe`.
    pub provider: &'static str,
    /// `PAYMENTS_API_BASE`: the provider's API (sandbox default `http://127.0.0.1:8085`).
    pub api_base: String,
    /// `PAYMENTS_PAY_BASE`: where the hosted payment page lives (default: the API base).
    pub pay_base: String,
    pub secret_key: Secret,
    pub webhook_secret: Secret,
}

#[derive(Clone, Debug)]
pub struct OrdersConfig {
    pub database_url: String,
    /// `ORDERS_LISTEN`, default `127.0.0.1:8081`.
    pub listen: String,
    /// `FLOODGATE_PUBLIC_URL`: the base of links shown to buyers.
    pub public_url: String,
    pub redis: RedisConfig,
    pub payments: PaymentsConfig,
    /// Key for order tokens (`FLOODGATE_ORDER_TOKEN_SECRET` or `..._FILE`).
    pub order_token_secret: Secret,
    /// How long an order may wait for its payment news before the reconciler asks.
    pub reconcile_after: Duration,
    /// Run the sweeper, reconciler and job runner in this process (`ORDERS_WORKERS`).
    pub workers: bool,
    /// Hold writers per tier (`ORDERS_HOLD_WRITERS`, 1–8, default 1; see
    /// `orders::holds::DEFAULT_WRITERS_PER_TIER`).
    pub hold_writers_per_tier: usize,
    /// Active holds one buyer (by e-mail) may have in one event (`ORDERS_HOLDS_PER_BUYER`,
    /// 1–100, default `orders::holds::DEFAULT_HOLDS_PER_BUYER`).
    pub holds_per_buyer: i32,
}

impl OrdersConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let provider = match var("PAYMENTS_PROVIDER", "sandbox").as_str() {
            "sandbox" => "sandbox",
            "stripe" => "stripe",
            other => {
                return Err(ConfigError(format!(
                    "PAYMENTS_PROVIDER {other:?}: sandbox or stripe"
                )));
            }
        };
        let sandbox = provider == "sandbox";
        // The sandbox's key and signing secret are fixtures of a local test double, not
        // secrets; a real provider's must be supplied.
        let secret_key = match secret("PAYMENTS_SECRET_KEY")? {
            Some(s) => s,
            None if sandbox => Secret::new("sk_test_floodgate"),
            None => {
                return Err(ConfigError(
                    "PAYMENTS_SECRET_KEY is required for stripe".into(),
                ));
            }
        };
        let webhook_secret = match secret("PAYMENTS_WEBHOOK_SECRET")? {
            Some(s) => s,
            None if sandbox => Secret::new("whsec_floodgate_dev"),
            None => {
                return Err(ConfigError(
                    "PAYMENTS_WEBHOOK_SECRET is required for stripe".into(),
                ));
            }
        };
        let api_base = var(
            "PAYMENTS_API_BASE",
            if sandbox {
                "http://127.0.0.1:8085"
            } else {
                "https://api.stripe.com"
            },
        );
        let order_token_secret = secret("FLOODGATE_ORDER_TOKEN_SECRET")?.ok_or_else(|| {
            ConfigError("FLOODGATE_ORDER_TOKEN_SECRET (or _FILE) is required".into())
        })?;
        if order_token_secret.expose().len() < 32 {
            return Err(ConfigError(
                "FLOODGATE_ORDER_TOKEN_SECRET must be at least 32 characters".into(),
            ));
        }
        let reconcile_after: u64 = var("ORDERS_RECONCILE_AFTER_SECONDS", "30")
            .parse()
            .map_err(|_| ConfigError("ORDERS_RECONCILE_AFTER_SECONDS is not a number".into()))?;
        let hold_writers_per_tier = var("ORDERS_HOLD_WRITERS", "1")
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=8).contains(n))
            .ok_or_else(|| {
                ConfigError("ORDERS_HOLD_WRITERS must be a number from 1 to 8".into())
            })?;
        let holds_per_buyer = var(
            "ORDERS_HOLDS_PER_BUYER",
            &crate::holds::DEFAULT_HOLDS_PER_BUYER.to_string(),
        )
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| {
            ConfigError("ORDERS_HOLDS_PER_BUYER must be a number from 1 to 100".into())
        })?;
        Ok(Self {
            hold_writers_per_tier,
            holds_per_buyer,
            database_url: var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/floodgate",
            ),
            listen: var("ORDERS_LISTEN", "127.0.0.1:8081"),
            public_url: var("FLOODGATE_PUBLIC_URL", "http://127.0.0.1:8080"),
            redis: RedisConfig::from_env()?,
            payments: PaymentsConfig {
                provider,
                pay_base: var("PAYMENTS_PAY_BASE", &api_base),
                api_base,
                secret_key,
                webhook_secret,
            },
            order_token_secret,
            reconcile_after: Duration::from_secs(reconcile_after),
            workers: var("ORDERS_WORKERS", "true") != "false",
        })
    }
}
