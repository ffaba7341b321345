//! Orders settings, read once at start-up.

#[derive(Clone, Debug)]
pub struct OrdersConfig {
    pub database_url: String,
    /// `ORDERS_LISTEN`, default `127.0.0.1:8081`.
    pub listen: String,
    /// `FLOODGATE_PUBLIC_URL`: the base of links shown to buyers.
    pub public_url: String,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl OrdersConfig {
    pub fn from_env() -> Self {
        Self {
            database_url: var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/floodgate",
            ),
            listen: var("ORDERS_LISTEN", "127.0.0.1:8081"),
            public_url: var("FLOODGATE_PUBLIC_URL", "http://127.0.0.1:8080"),
        }
    }
}
