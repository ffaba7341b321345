//! Gateway settings, read once at start-up.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use platform::env::var;
use waitroom::config::RedisConfig;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Public listen address (`FLOODGATE_LISTEN`).
    pub listen: String,
    /// Where the gateway's Prometheus metrics are served
    /// (`FLOODGATE_GATEWAY_METRICS_LISTEN`, default 127.0.0.1:9080): a port of its own,
    /// never the buyers', so the crowd cannot read the edge's figures (or make the
    /// registry's encoding a cost it can call at will).
    pub metrics_listen: String,
    /// Base URL buyers see (`FLOODGATE_PUBLIC_URL`); `https` turns on `Secure` cookies.
    pub public_url: String,
    pub redis: RedisConfig,
    /// `host:port` lists, comma-separated (`FLOODGATE_UPSTREAM_ORDERS`, `..._CONSOLE`,
    /// `..._FULFILMENT`).
    pub orders_upstreams: Vec<String>,
    pub console_upstreams: Vec<String>,
    pub fulfilment_upstreams: Vec<String>,
    /// How old a cached queue snapshot may be before the refresher replaces it.
    pub snapshot_refresh: Duration,
    /// Queue tokens live this long (a visitor may wait hours for a big on-sale).
    pub queue_token_ttl: Duration,
    /// Per-IP limits (`FLOODGATE_JOIN_PER_MIN`, `FLOODGATE_STATUS_PER_MIN`).
    pub join_per_min: NonZeroU32,
    pub status_per_min: NonZeroU32,
    /// Per-IP limit on `/join/{token}` access-link redemptions (guessing defence).
    pub access_link_per_min: NonZeroU32,
    /// Per-IP limit on `POST /api/payments/webhook` (`FLOODGATE_WEBHOOK_PER_MIN`,
    /// default 6,000: a provider sends from a handful of addresses and an on-sale's
    /// payments stay far below 100 a second from each; a flood from one source does
    /// not, and each forged delivery costs orders an HMAC).
    pub webhook_per_min: NonZeroU32,
    /// Per-IP limit on hold requests that carry no admission, which only pass while the
    /// queue is `off` (`FLOODGATE_HOLDS_WITHOUT_ADMISSION_PER_MIN`, default 10): without
    /// a queue every hold is a fresh identity, and this is what keeps one script from
    /// holding the whole inventory every hold TTL.
    pub holds_without_admission_per_min: NonZeroU32,
    /// IPv6 clients share a bucket per network of this prefix length
    /// (`FLOODGATE_IPV6_BUCKET_PREFIX`, default 64): one allocation is one client,
    /// however many of its 2^64 addresses it rotates through.
    pub ipv6_bucket_prefix: u8,
    /// Clients in these networks are never rate limited (`FLOODGATE_RATE_ALLOWLIST`).
    pub allowlist: Vec<IpNet>,
    /// Only these peers may set `X-Forwarded-For` (`FLOODGATE_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Pingora worker threads (`FLOODGATE_GATEWAY_THREADS`).
    pub threads: usize,
    /// Whether Pingora's threads steal each other's connections
    /// (`FLOODGATE_GATEWAY_WORK_STEALING`, default false: each connection stays on the
    /// thread that accepted it; 15 % more status polls per second on two cores,
    /// docs/PERFORMANCE.md).
    pub work_stealing: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    name: &'static str,
    reason: String,
}

fn parsed<T: FromStr>(name: &'static str, default: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name, default)
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
        })
}

fn list(name: &str, default: &str) -> Vec<String> {
    var(name, default)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn nets(name: &'static str, default: &str) -> Result<Vec<IpNet>, ConfigError> {
    list(name, default)
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|e| ConfigError {
                    name,
                    reason: format!("{s}: {e}"),
                })
        })
        .collect()
}

fn prefix_len(name: &'static str, default: &str) -> Result<u8, ConfigError> {
    let len: u8 = parsed(name, default)?;
    if len > 128 {
        return Err(ConfigError {
            name,
            reason: format!("{len} is longer than an IPv6 address"),
        });
    }
    Ok(len)
}

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen: var("FLOODGATE_LISTEN", "127.0.0.1:8080"),
            metrics_listen: var("FLOODGATE_GATEWAY_METRICS_LISTEN", "127.0.0.1:9080"),
            public_url: var("FLOODGATE_PUBLIC_URL", "http://127.0.0.1:8080"),
            redis: RedisConfig::from_env().map_err(|e| ConfigError {
                name: "REDIS_*",
                reason: e.0,
            })?,
            orders_upstreams: list("FLOODGATE_UPSTREAM_ORDERS", "127.0.0.1:8081"),
            console_upstreams: list("FLOODGATE_UPSTREAM_CONSOLE", "127.0.0.1:8083"),
            fulfilment_upstreams: list("FLOODGATE_UPSTREAM_FULFILMENT", "127.0.0.1:8087"),
            snapshot_refresh: Duration::from_millis(parsed(
                "FLOODGATE_SNAPSHOT_REFRESH_MS",
                "200",
            )?),
            queue_token_ttl: Duration::from_secs(parsed(
                "FLOODGATE_QUEUE_TOKEN_TTL_SECONDS",
                "86400",
            )?),
            join_per_min: parsed("FLOODGATE_JOIN_PER_MIN", "30")?,
            status_per_min: parsed("FLOODGATE_STATUS_PER_MIN", "240")?,
            access_link_per_min: parsed("FLOODGATE_ACCESS_LINK_PER_MIN", "30")?,
            webhook_per_min: parsed("FLOODGATE_WEBHOOK_PER_MIN", "6000")?,
            holds_without_admission_per_min: parsed(
                "FLOODGATE_HOLDS_WITHOUT_ADMISSION_PER_MIN",
                "10",
            )?,
            ipv6_bucket_prefix: prefix_len("FLOODGATE_IPV6_BUCKET_PREFIX", "64")?,
            allowlist: nets("FLOODGATE_RATE_ALLOWLIST", "")?,
            trusted_proxies: nets("FLOODGATE_TRUSTED_PROXIES", "")?,
            threads: parsed("FLOODGATE_GATEWAY_THREADS", "2")?,
            work_stealing: parsed("FLOODGATE_GATEWAY_WORK_STEALING", "false")?,
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}
