//! Fulfilment settings, read once at start-up.

use std::time::Duration;

use contract::stream::StreamConfig;
use platform::env::{self, Secret, var};

#[derive(Clone, Debug)]
pub struct FulfilmentConfig {
    pub database_url: String,
    pub nats_url: String,
    /// The JetStream stream and subject prefix (`FLOODGATE_NATS_STREAM`,
    /// `FLOODGATE_NATS_PREFIX`; shared with the orders relay).
    pub stream: StreamConfig,
    /// Durable consumer name (`FULFILMENT_CONSUMER`, default `fulfilment`).
    pub consumer: String,
    /// `SMTP_URL`, e.g. `smtp://127.0.0.1:2525` or `smtps://user:pass@host:465`.
    pub smtp_url: String,
    /// `MAIL_FROM`, default `Floodgate <tickets@floodgate.local>`.
    pub mail_from: String,
    /// `FLOODGATE_PUBLIC_URL`: access links point here.
    pub public_url: String,
    /// `FULFILMENT_LISTEN`, default `127.0.0.1:8087`.
    pub listen: String,
    /// Derives access-link tokens (`FULFILMENT_LINK_SECRET` or `_FILE`).
    pub link_secret: Secret,
    /// Orders' key for order-page links (`FLOODGATE_ORDER_TOKEN_SECRET` or `_FILE`),
    /// so every email links back to the buyer's order and receipt. Without it the
    /// emails carry no such link.
    pub order_token_secret: Option<Secret>,
    /// Links open this long before the start (`FULFILMENT_WINDOW_BEFORE_SECONDS`, 3600).
    pub window_before: Duration,
    /// `FULFILMENT_JITSI_BASE`, default `https://meet.jit.si`.
    pub jitsi_base: String,
    /// Zoom's API (`ZOOM_API_BASE`, default `https://api.zoom.us/v2`) and token.
    pub zoom_api_base: String,
    pub zoom_token: Option<Secret>,
    /// The reconciler queues confirmations missing after this long.
    pub reconcile_after: Duration,
    /// Retry backoff cap (`FULFILMENT_MAX_BACKOFF_SECONDS`, default 300).
    pub max_backoff: Duration,
    /// Run the JetStream consumer and the sender, reconciler and reminders in this
    /// process (`FULFILMENT_WORKERS`, default true; tests drive them step by step).
    pub workers: bool,
}

fn secret(name: &str) -> Result<Option<Secret>, crate::Error> {
    env::secret(name).map_err(|e| crate::Error::Config(e.to_string()))
}

fn secs(name: &str, default: u64) -> Result<Duration, crate::Error> {
    var(name, &default.to_string())
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| crate::Error::Config(format!("{name} is not a number")))
}

impl FulfilmentConfig {
    pub fn from_env() -> Result<Self, crate::Error> {
        let link_secret = secret("FULFILMENT_LINK_SECRET")?.ok_or_else(|| {
            crate::Error::Config("FULFILMENT_LINK_SECRET (or _FILE) is required".into())
        })?;
        if link_secret.expose().len() < 32 {
            return Err(crate::Error::Config(
                "FULFILMENT_LINK_SECRET must be at least 32 characters".into(),
            ));
        }
        Ok(Self {
            database_url: var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/floodgate",
            ),
            nats_url: var("NATS_URL", "nats://127.0.0.1:4222"),
            stream: StreamConfig::from_env().map_err(crate::Error::Config)?,
            consumer: var("FULFILMENT_CONSUMER", "fulfilment"),
            smtp_url: var("SMTP_URL", "smtp://127.0.0.1:2525"),
            mail_from: var("MAIL_FROM", "Floodgate <tickets@floodgate.local>"),
            public_url: var("FLOODGATE_PUBLIC_URL", "http://127.0.0.1:8080"),
            listen: var("FULFILMENT_LISTEN", "127.0.0.1:8087"),
            link_secret,
            order_token_secret: secret("FLOODGATE_ORDER_TOKEN_SECRET")?,
            window_before: secs("FULFILMENT_WINDOW_BEFORE_SECONDS", 3600)?,
            jitsi_base: var("FULFILMENT_JITSI_BASE", "https://meet.jit.si"),
            zoom_api_base: var("ZOOM_API_BASE", "https://api.zoom.us/v2"),
            zoom_token: secret("ZOOM_API_TOKEN")?,
            reconcile_after: secs("FULFILMENT_RECONCILE_AFTER_SECONDS", 120)?,
            max_backoff: secs("FULFILMENT_MAX_BACKOFF_SECONDS", 300)?,
            workers: env::parse("FULFILMENT_WORKERS", true)
                .map_err(|e| crate::Error::Config(e.to_string()))?,
        })
    }
}
