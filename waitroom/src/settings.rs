//! Live admission settings. They live in Redis (mirrored from Postgres by the console)
//! so that every gateway and the admitter see a change within one cache period.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::keys::{self, EventKeys};
use crate::queue::Waitroom;
use crate::{Error, EventSlug, lottery};

/// How the queue treats arrivals. With the `sqlx` feature it reads and writes the
/// words of the events table's CHECK (`queue_mode`), so a service can compare modes,
/// not strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No queue: everyone passes.
    Off,
    /// Before opening: arrivals are collected and ordered by lottery at `opens_at`.
    Prequeue,
    /// First come, first served at the configured rate.
    On,
    /// The queue grows, nobody is admitted.
    Paused,
    SoldOut,
    Closed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Prequeue => "prequeue",
            Mode::On => "on",
            Mode::Paused => "paused",
            Mode::SoldOut => "sold_out",
            Mode::Closed => "closed",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "off" => Mode::Off,
            "prequeue" => Mode::Prequeue,
            "on" => Mode::On,
            "paused" => Mode::Paused,
            "sold_out" => Mode::SoldOut,
            "closed" => Mode::Closed,
            other => return Err(Error::InvalidSettings(format!("unknown mode {other:?}"))),
        })
    }
}

/// The knobs an operator turns during an on-sale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionSettings {
    pub mode: Mode,
    /// Visitors admitted per minute while the mode is `on`.
    pub rate_per_minute: u32,
    /// Admitted visitors holding a slot at once (admitted, not yet finished or expired).
    pub max_active: u32,
    /// Lifetime of an admission token, and of an unclaimed admission slot.
    pub admission_ttl_seconds: u32,
    /// When the pre-queue is drawn and the queue opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            mode: Mode::On,
            rate_per_minute: 600,
            max_active: 500,
            admission_ttl_seconds: 900,
            opens_at: None,
        }
    }
}

impl AdmissionSettings {
    /// Refuses values that would make the queue meaningless or overflow the arithmetic.
    pub fn validate(&self) -> Result<(), Error> {
        if self.rate_per_minute > 1_000_000 {
            return Err(Error::InvalidSettings(
                "rate_per_minute must be between 0 and 1000000".into(),
            ));
        }
        if self.max_active == 0 || self.max_active > 1_000_000 {
            return Err(Error::InvalidSettings(
                "max_active must be between 1 and 1000000".into(),
            ));
        }
        if !(30..=86_400).contains(&self.admission_ttl_seconds) {
            return Err(Error::InvalidSettings(
                "admission_ttl_seconds must be between 30 and 86400".into(),
            ));
        }
        if self.mode == Mode::Prequeue && self.opens_at.is_none() {
            return Err(Error::InvalidSettings(
                "mode prequeue needs opens_at".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn from_hash(h: &HashMap<String, String>) -> Result<Option<Self>, Error> {
        let Some(mode) = h.get("mode") else {
            return Ok(None);
        };
        let num = |k: &str| -> Result<u32, Error> {
            h.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Protocol(format!("settings field {k} missing")))
        };
        let opens_at = match h.get("opens_at_ms").map(|v| v.parse::<i64>()) {
            Some(Ok(ms)) if ms > 0 => DateTime::from_timestamp_millis(ms),
            _ => None,
        };
        Ok(Some(Self {
            mode: mode.parse()?,
            rate_per_minute: num("rate_per_minute")?,
            max_active: num("max_active")?,
            admission_ttl_seconds: num("admission_ttl_seconds")?,
            opens_at,
        }))
    }
}

/// Writes the settings and, when entering the pre-queue, commits to a lottery seed in
/// the same atomic step, so no arrival can be collected before the commitment exists.
/// 1 for an event that had no settings yet, 2 for one that had.
const APPLY: &str = r#"
if ARGV[1] == 'prequeue' and redis.call('HGET', KEYS[2], 'revealed') == '1' then
  return -1
end
redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'rate_per_minute', ARGV[2], 'max_active', ARGV[3],
  'admission_ttl_seconds', ARGV[4], 'opens_at_ms', ARGV[5])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[1] == 'prequeue' and redis.call('HEXISTS', KEYS[2], 'commit') == 0 then
  redis.call('HSET', KEYS[2], 'commit', ARGV[6], 'seed', ARGV[7], 'revealed', '0')
end
if version > 1 then return 2 end
return 1
"#;

/// Moves the mode from ARGV[1] to ARGV[2] only if it is still ARGV[1]; nothing else.
const SWITCH_MODE: &str = r#"
if redis.call('HGET', KEYS[1], 'mode') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'mode', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"#;

impl Waitroom {
    /// Sets the mode to `to` if it is `from` now, leaving every other setting as it
    /// is, in one atomic step: the queue following inventory (on ⇄ sold out) must
    /// never write back a rate or a limit it read before an operator changed them.
    /// Whether it switched.
    pub async fn switch_mode(
        &self,
        event: &EventSlug,
        from: Mode,
        to: Mode,
    ) -> Result<bool, Error> {
        let switched: i64 = self
            .client
            .eval(
                SWITCH_MODE,
                vec![self.keys(event).settings()],
                vec![from.as_str(), to.as_str()],
            )
            .await?;
        Ok(switched == 1)
    }

    /// Current settings, or `None` when Redis knows no such event.
    pub async fn settings(&self, event: &EventSlug) -> Result<Option<AdmissionSettings>, Error> {
        let h: HashMap<String, String> = self.client.hgetall(self.keys(event).settings()).await?;
        AdmissionSettings::from_hash(&h)
    }

    /// Stores the name the waiting page shows (not a setting, but read with them).
    pub async fn set_title(&self, event: &EventSlug, title: &str) -> Result<(), Error> {
        let _: i64 = self
            .client
            .hset(self.keys(event).settings(), ("title", title))
            .await?;
        Ok(())
    }

    /// Validates and stores settings for an event and registers it with the admitter.
    pub async fn apply_settings(
        &self,
        event: &EventSlug,
        s: &AdmissionSettings,
    ) -> Result<(), Error> {
        s.validate()?;
        let k: EventKeys = self.keys(event);
        let seed = lottery::Seed::generate();
        let args: Vec<String> = vec![
            s.mode.as_str().into(),
            s.rate_per_minute.to_string(),
            s.max_active.to_string(),
            s.admission_ttl_seconds.to_string(),
            s.opens_at
                .map(|t| t.timestamp_millis())
                .unwrap_or(0)
                .to_string(),
            seed.commitment(),
            seed.to_hex(),
        ];
        let applied: i64 = self
            .client
            .eval(APPLY, vec![k.settings(), k.lottery()], args)
            .await?;
        if applied < 0 {
            // Pre-queue tokens name places in *the* pre-queue; a second draw would
            // reuse the revealed seed and confuse old places with new ones.
            return Err(Error::InvalidSettings(
                "this event's pre-queue has already been drawn; it cannot enter prequeue again"
                    .into(),
            ));
        }
        // The registry spans events (another cluster slot), so it is a separate step;
        // registering twice is harmless. An event that had settings was registered when
        // it got them: a registry shard that is away (failing over) must not turn an
        // operator's change, already made, into an error that says nothing changed.
        let registered: Result<i64, _> = self
            .client
            .sadd(keys::registry(&self.prefix), event.to_string())
            .await;
        match registered {
            Ok(_) => Ok(()),
            Err(e) if applied == 2 => {
                tracing::warn!(%event, error = %e, "settings applied; the event registry was not reachable");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
