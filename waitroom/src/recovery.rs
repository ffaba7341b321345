//! Coming back after Redis lost an event's queue (a restart without persistence, a
//! failover to an empty replica).
//!
//! The queue's places live only in Redis, but the people holding them still hold
//! signed queue tokens naming their sequence numbers. Restarting the counters at zero
//! would hand those numbers out again: newcomers would overtake people who waited,
//! and two visitors would share one place and its admission. So the console reads a
//! [`Mark`] of every live queue every second and keeps it in Postgres; after a loss it
//! [`Waitroom::restore`]s the counters from the last mark — the admission pointer no
//! further than the first admitted place nobody had claimed yet (so those people are
//! admitted again rather than told they expired), the arrival counter past the places
//! that can have been handed out since the mark — and the event paused, for an
//! operator to resume. A place the restore did not count is counted when its holder
//! next polls: the gateway [`Waitroom::raise_counters`] past any valid queue token
//! whose place is beyond the tail, so the pause gives every old place time to be
//! seen before newcomers are let in behind them.

use fred::prelude::*;
use fred::types::Value;

use crate::queue::Waitroom;
use crate::{Error, EventSlug};

/// What restoring an event's queue needs, read in one atomic step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Every place up to here was admitted and its admission claimed (a token issued).
    pub admitted_through: u64,
    /// The last place handed out.
    pub tail: u64,
}

const MARK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local q = redis.call('HMGET', KEYS[2], 'head', 'tail')
local head = tonumber(q[1] or '0')
local through = head
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  local n = tonumber(seq)
  if n - 1 < through and redis.call('HEXISTS', KEYS[4], seq) == 0 then through = n - 1 end
end
return {through, tonumber(q[2] or '0')}
"#;

// Counters only ever move forward: KEYS[1] is the queue hash, ARGV the floors.
macro_rules! raise_lua {
    () => {
        r#"
local q = redis.call('HMGET', KEYS[1], 'head', 'tail')
local head = math.max(tonumber(q[1] or '0'), tonumber(ARGV[1]))
local tail = math.max(tonumber(q[2] or '0'), tonumber(ARGV[2]), head)
redis.call('HSET', KEYS[1], 'head', head, 'tail', tail)
return 1
"#
    };
}

const RAISE: &str = raise_lua!();

// Only while the event (KEYS[2], its settings) is still unknown: a second console may
// have restored it already.
const RESTORE: &str = concat!(
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n",
    raise_lua!()
);

impl Waitroom {
    /// The event's mark, or `None` when Redis does not know the event.
    pub async fn mark(&self, event: &EventSlug) -> Result<Option<Mark>, Error> {
        let k = self.keys(event);
        let reply: Vec<Value> = self
            .client()
            .eval(
                MARK,
                vec![k.settings(), k.queue(), k.active(), k.claims()],
                vec![chrono::Utc::now().timestamp_millis().to_string()],
            )
            .await?;
        let num = |v: &Value| {
            v.as_i64()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| Error::Protocol(format!("mark: {v:?}")))
        };
        Ok(match reply.as_slice() {
            [] => None,
            [through, tail] => Some(Mark {
                admitted_through: num(through)?,
                tail: num(tail)?,
            }),
            _ => return Err(Error::Protocol("mark: unexpected reply".into())),
        })
    }

    /// Puts the counters back for an event Redis has lost, then its settings (the
    /// caller passes them paused). Returns false, changing nothing, when the event
    /// is known again already.
    pub async fn restore(
        &self,
        event: &EventSlug,
        settings: &crate::settings::AdmissionSettings,
        title: &str,
        admitted_through: u64,
        tail: u64,
    ) -> Result<bool, Error> {
        let k = self.keys(event);
        let restored: i64 = self
            .client()
            .eval(
                RESTORE,
                vec![k.queue(), k.settings()],
                vec![admitted_through.to_string(), tail.to_string()],
            )
            .await?;
        if restored == 0 {
            return Ok(false);
        }
        self.apply_settings(event, settings).await?;
        self.set_title(event, title).await?;
        Ok(true)
    }

    /// Moves the counters of a known event forward to at least these values.
    pub async fn raise_counters(
        &self,
        event: &EventSlug,
        admitted_through: u64,
        tail: u64,
    ) -> Result<(), Error> {
        let _: i64 = self
            .client()
            .eval(
                RAISE,
                vec![self.keys(event).queue()],
                vec![admitted_through.to_string(), tail.to_string()],
            )
            .await?;
        Ok(())
    }
}
