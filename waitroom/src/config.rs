//! Settings of the waiting-room processes, read once from the environment.

use std::time::Duration;

use platform::env::var;

use crate::Error;
use crate::tokens::{TokenSigner, TokenVerifier};

/// Where Redis is and how keys are prefixed.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub url: String,
    /// Deployment-wide key prefix (`FLOODGATE_REDIS_PREFIX`, default `fg`).
    pub prefix: String,
}

impl RedisConfig {
    pub fn from_env() -> Self {
        Self {
            url: var("REDIS_URL", "redis://127.0.0.1:6379"),
            prefix: var("FLOODGATE_REDIS_PREFIX", "fg"),
        }
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
            redis: RedisConfig::from_env(),
            listen: var("ADMITTER_LISTEN", "127.0.0.1:8084"),
            tick: ms("ADMITTER_TICK_MS", 100)?,
            lease: ms("ADMITTER_LEASE_MS", 1500)?,
        })
    }
}
