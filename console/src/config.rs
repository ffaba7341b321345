//! Console settings, read once at start-up.

use waitroom::config::RedisConfig;

#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    pub database_url: String,
    pub redis: RedisConfig,
    /// `CONSOLE_LISTEN`, default `127.0.0.1:8083`.
    pub listen: String,
}

impl ConsoleConfig {
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            database_url: var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/floodgate",
            ),
            redis: RedisConfig::from_env(),
            listen: var("CONSOLE_LISTEN", "127.0.0.1:8083"),
        }
    }
}
