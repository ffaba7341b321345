//! Settings of the waiting-room processes, read once from the environment.

use std::time::Duration;

use platform::env::{ConfigError, parse, var};

use crate::Error;
use crate::tokens::{QueueKeys, TokenSigner, TokenVerifier};

/// Where Redis is, how keys are prefixed, and how durable an answer must be.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://host:port` for one server, or
    /// `redis-cluster://host:port?node=host:port&node=...` for Redis Cluster (several
    /// seed nodes, so a client starts while one of them is down).
    pub url: String,
    /// Deployment-wide key prefix (`FLOODGATE_REDIS_PREFIX`, default `fg`).
    pub prefix: String,
    /// `FLOODGATE_REDIS_WAIT_REPLICAS` (default 0): how many replicas must have a join
    /// or a claim before it is answered (`WAIT`), so a place or an admission a visitor
    /// was told about survives the failover of its primary. 0 on a single server.
    pub wait_replicas: u32,
    /// `FLOODGATE_REDIS_WAIT_MS` (default 250): how long to wait for them.
    pub wait_timeout: Duration,
    /// `FLOODGATE_REDIS_UNRESPONSIVE_MS` (default 1000): a connection that answers
    /// nothing for this long is dropped and its commands retried elsewhere, so a
    /// frozen (SIGSTOPped, partitioned) primary costs a second, not the command timeout.
    pub unresponsive: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "fg".into(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(250),
            unresponsive: Duration::from_millis(1000),
        }
    }
}

impl RedisConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name: &str, default: Duration| {
            parse(name, default.as_millis() as u64).map(Duration::from_millis)
        };
        Ok(Self {
            url: var("REDIS_URL", &d.url),
            prefix: var("FLOODGATE_REDIS_PREFIX", &d.prefix),
            wait_replicas: parse("FLOODGATE_REDIS_WAIT_REPLICAS", d.wait_replicas)?,
            wait_timeout: ms("FLOODGATE_REDIS_WAIT_MS", d.wait_timeout)?,
            unresponsive: ms("FLOODGATE_REDIS_UNRESPONSIVE_MS", d.unresponsive)?,
        })
    }
}

/// The token keys: `FLOODGATE_SIGNING_KEY` (private PEM path) with `FLOODGATE_SIGNING_KID`,
/// and `FLOODGATE_VERIFY_KEYS` (`kid=path,...`, every public key still in rotation).
pub fn signer_from_env() -> Result<TokenSigner, Error> {
    let path = std::env::var("FLOODGATE_SIGNING_KEY")
        .map_err(|_| Error::Config("FLOODGATE_SIGNING_KEY is not set".into()))?;
    TokenSigner::from_file(&var("FLOODGATE_SIGNING_KID", "dev-1"), path.as_ref())
}

pub fn verifier_from_env() -> Result<TokenVerifier, Error> {
    let spec = std::env::var("FLOODGATE_VERIFY_KEYS")
        .map_err(|_| Error::Config("FLOODGATE_VERIFY_KEYS is not set".into()))?;
    TokenVerifier::from_spec(&spec)
}

/// The gateways' queue-token keys: `FLOODGATE_QUEUE_KEYS` (`kid=path,...`; the first
/// signs, every one verifies; each file a secret of at least 32 bytes, shared by every
/// gateway and by nothing else).
pub fn queue_keys_from_env() -> Result<QueueKeys, Error> {
    let spec = std::env::var("FLOODGATE_QUEUE_KEYS")
        .map_err(|_| Error::Config("FLOODGATE_QUEUE_KEYS is not set".into()))?;
    QueueKeys::from_spec(&spec)
}

/// The admitter process.
#[derive(Clone, Debug)]
pub struct AdmitterConfig {
    pub redis: RedisConfig,
    /// Health and metrics address (`ADMITTER_LISTEN`).
    pub listen: String,
    pub tick: Duration,
    pub lease: Duration,
}

impl AdmitterConfig {
    pub fn from_env() -> Result<Self, Error> {
        let ms = |name: &str, default: u64| -> Result<Duration, Error> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| Error::Config(format!("{name} is not a number")))
                })
                .transpose()
                .map(|v| Duration::from_millis(v.unwrap_or(default)))
        };
        Ok(Self {
            redis: RedisConfig::from_env().map_err(|e| Error::Config(e.0))?,
            listen: var("ADMITTER_LISTEN", "127.0.0.1:8084"),
            tick: ms("ADMITTER_TICK_MS", 100)?,
            lease: ms("ADMITTER_LEASE_MS", 1500)?,
        })
    }
}
