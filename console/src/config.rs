//! Console settings, read once at start-up.

use std::time::Duration;

use platform::env::{self, ConfigError, var};
use waitroom::config::RedisConfig;

#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    pub database_url: String,
    /// `DATABASE_READ_URL`: a read replica for what decides nothing — the search box
    /// and the live control room's figures — so a morning of searches and a wall of
    /// control rooms do not load the primary that sells. Unset: the primary.
    pub database_read_url: Option<String>,
    pub redis: RedisConfig,
    /// `CONSOLE_LISTEN`, default `127.0.0.1:8083`.
    pub listen: String,
    /// `FLOODGATE_PUBLIC_URL`, default `http://127.0.0.1:8080` (the gateway of the dev
    /// stack): the base of the links buyers open, which an event's page shows
    /// (`{public_url}/e/{slug}`).
    pub public_url: String,
    /// Set `Secure` on the session cookie: the public URL is https.
    pub secure_cookies: bool,
    /// How long a live feed keeps running after its last viewer left, so a page reload
    /// keeps its history (`CONSOLE_FEED_LINGER_SECONDS`, default 15).
    pub feed_linger: Duration,
    /// Run the admission mirror and the live metrics export in this process
    /// (`CONSOLE_WORKERS`, default true; tests drive them step by step).
    pub workers: bool,
}

impl ConsoleConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let public_url = var("FLOODGATE_PUBLIC_URL", "http://127.0.0.1:8080");
        Ok(Self {
            database_url: var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/floodgate",
            ),
            database_read_url: Some(var("DATABASE_READ_URL", "")).filter(|u| !u.is_empty()),
            redis: RedisConfig::from_env()?,
            listen: var("CONSOLE_LISTEN", "127.0.0.1:8083"),
            public_url: public_url.clone(),
            secure_cookies: public_url.starts_with("https://"),
            feed_linger: Duration::from_secs(env::parse("CONSOLE_FEED_LINGER_SECONDS", 15)?),
            workers: env::parse("CONSOLE_WORKERS", true)?,
        })
    }
}
