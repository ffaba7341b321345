//! The queue's figures for the people watching it: one atomic read of everything the
//! control room shows about an event's crowd.
//!
//! The console's live feed calls [`Waitroom::figures`] once a second per watched event,
//! however many people watch, so it is one script (one round trip, one consistent
//! instant) rather than a handful of commands. The per-minute counters it reads are
//! written by the join script (`arrivals:{minute}`) and the admitter
//! (`admitted:{minute}`); [`Waitroom::minute_counts`] reads a range of them to draw the
//! last half hour when a feed starts.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use fred::prelude::*;
use fred::types::Value;
use fred::types::scripts::Script;

use crate::queue::Waitroom;
use crate::settings::{AdmissionSettings, Mode};
use crate::{Error, EventSlug};

/// How many live admission slots the script inspects to count the unclaimed ones. Past
/// this (a `max_active` in the tens of thousands) the no-show count is a lower bound;
/// the cap keeps the script's time inside Redis to a few milliseconds.
const UNCLAIMED_SCAN_LIMIT: u32 = 20_000;

const FIGURES: &str = r#"
local s = redis.call('HGETALL', KEYS[1])
local q = redis.call('HMGET', KEYS[2], 'head', 'tail', 'obs_per_min', 'claimed')
local m = tonumber(ARGV[2])
local c = redis.call('HMGET', KEYS[3], 'arrivals:' .. m, 'arrivals:' .. (m - 1),
  'admitted:' .. m, 'admitted:' .. (m - 1))
local pq = redis.call('LLEN', KEYS[4])
local revealed = redis.call('HGET', KEYS[5], 'revealed')
local active = redis.call('ZCARD', KEYS[6])
local live = redis.call('ZRANGEBYSCORE', KEYS[6], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[3])
local unclaimed = 0
for _, seq in ipairs(live) do
  if redis.call('HEXISTS', KEYS[7], seq) == 0 then unclaimed = unclaimed + 1 end
end
return {s, q[1] or '0', q[2] or '0', q[3] or '0', q[4] or '0', c[1] or '0', c[2] or '0',
  c[3] or '0', c[4] or '0', pq, revealed or '0', active, unclaimed}
"#;

/// Hashed once; `evalsha_with_reload` loads it into a Redis that has not seen it.
static FIGURES_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(FIGURES));

/// One event's crowd at one instant.
#[derive(Clone, Debug)]
pub struct Figures {
    pub settings: AdmissionSettings,
    /// Admission pointer: everyone with `seq <= head` has been admitted.
    pub head: u64,
    /// Arrival counter of the queue proper.
    pub tail: u64,
    /// Admissions claimed by their visitor (an admission token was issued).
    pub claimed: u64,
    /// Admission slots held (admitted, not yet finished or lapsed).
    pub active: u64,
    /// Admitted slots still inside their window that nobody has claimed yet.
    pub unclaimed: u64,
    /// The admitter's own rate over its last 60 s of samples.
    pub observed_per_min: f64,
    /// Entrants in the pre-queue list (after the draw they also have places in `tail`).
    pub prequeue: u64,
    /// Whether the pre-queue lottery has been drawn.
    pub drawn: bool,
    /// The minute (`unix seconds / 60`) the counters below belong to.
    pub minute: i64,
    /// Arrivals in this minute and in the previous one.
    pub arrivals: [u64; 2],
    /// Admissions in this minute and in the previous one.
    pub admitted: [u64; 2],
    pub at: DateTime<Utc>,
}

impl Figures {
    /// People waiting for a place to be admitted (including an undrawn pre-queue).
    pub fn waiting(&self) -> u64 {
        self.tail.saturating_sub(self.head) + self.undrawn()
    }

    /// Everyone who ever took a place.
    pub fn arrived(&self) -> u64 {
        self.tail + self.undrawn()
    }

    /// Admitted visitors who never came for their admission: their slot lapsed
    /// unclaimed. Every admission is claimed, still waiting to be claimed, or lapsed.
    pub fn no_shows(&self) -> u64 {
        self.head
            .saturating_sub(self.claimed)
            .saturating_sub(self.unclaimed)
    }

    fn undrawn(&self) -> u64 {
        if self.settings.mode == Mode::Prequeue && !self.drawn {
            self.prequeue
        } else {
            0
        }
    }
}

/// One minute's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    /// `unix seconds / 60`.
    pub minute: i64,
    pub arrivals: u64,
    pub admitted: u64,
}

fn bad(what: &str) -> Error {
    Error::Protocol(what.to_owned())
}

fn num(v: &Value) -> Result<u64, Error> {
    match v {
        Value::Integer(i) => Ok((*i).max(0) as u64),
        other => other
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f.max(0.0) as u64)
            .ok_or_else(|| bad("expected a number")),
    }
}

impl Waitroom {
    /// Everything the control room shows about the crowd, read atomically.
    pub async fn figures(&self, event: &EventSlug) -> Result<Figures, Error> {
        let k = self.keys(event);
        let at = Utc::now();
        let minute = at.timestamp().div_euclid(60);
        let reply: Vec<Value> = FIGURES_SCRIPT
            .evalsha_with_reload(
                &self.client,
                vec![
                    k.settings(),
                    k.queue(),
                    k.counters(),
                    k.prequeue(),
                    k.lottery(),
                    k.active(),
                    k.claims(),
                ],
                vec![
                    at.timestamp_millis().to_string(),
                    minute.to_string(),
                    UNCLAIMED_SCAN_LIMIT.to_string(),
                ],
            )
            .await?;
        let [
            settings,
            head,
            tail,
            obs,
            claimed,
            arr_now,
            arr_prev,
            adm_now,
            adm_prev,
            pq,
            revealed,
            active,
            unclaimed,
        ] = <[Value; 13]>::try_from(reply).map_err(|_| bad("figures shape"))?;
        let pairs: Vec<String> = match settings {
            Value::Array(items) => items.into_iter().filter_map(|v| v.into_string()).collect(),
            _ => return Err(bad("figures settings")),
        };
        let map: HashMap<String, String> = pairs
            .chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        let settings = AdmissionSettings::from_hash(&map)?.ok_or(Error::UnknownEvent)?;
        Ok(Figures {
            settings,
            head: num(&head)?,
            tail: num(&tail)?,
            claimed: num(&claimed)?,
            active: num(&active)?,
            unclaimed: num(&unclaimed)?,
            observed_per_min: obs.as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0),
            prequeue: num(&pq)?,
            drawn: revealed.as_str().as_deref() == Some("1"),
            minute,
            arrivals: [num(&arr_now)?, num(&arr_prev)?],
            admitted: [num(&adm_now)?, num(&adm_prev)?],
            at,
        })
    }

    /// The per-minute counters of `minutes` (inclusive), oldest first; a minute nobody
    /// counted reads as zero.
    pub async fn minute_counts(
        &self,
        event: &EventSlug,
        first: i64,
        last: i64,
    ) -> Result<Vec<MinuteCount>, Error> {
        if last < first {
            return Ok(Vec::new());
        }
        let mut fields = Vec::with_capacity(((last - first + 1) * 2) as usize);
        for m in first..=last {
            fields.push(format!("arrivals:{m}"));
            fields.push(format!("admitted:{m}"));
        }
        let values: Vec<Option<u64>> = self
            .client
            .hmget(self.keys(event).counters(), fields)
            .await?;
        Ok((first..=last)
            .zip(values.chunks_exact(2))
            .map(|(minute, pair)| MinuteCount {
                minute,
                arrivals: pair[0].unwrap_or(0),
                admitted: pair[1].unwrap_or(0),
            })
            .collect())
    }
}
