//! The admitter: advances each event's admission pointer at the live rate.
//!
//! Exactly one admitter works an event at a time: each step renews (or takes) a Redis
//! lease with a short TTL inside the same script that moves `head`, so a replica that
//! lost its lease cannot admit anyone, and a standby takes over within one lease
//! period after the holder dies. The admission budget is `rate × elapsed` plus the
//! fractional carry of the previous step, capped by the room left under `max_active`
//! and by the number of people actually waiting; unused budget is not banked, so a
//! long pause never turns into a burst.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use fred::prelude::*;
use fred::types::Value;
use fred::types::scripts::Script;
use platform::registry::registered;

use crate::lottery::{self, Seed};
use crate::queue::Waitroom;
use crate::settings::Mode;
use crate::{Error, EventSlug};

// Time is the Redis primary's (`TIME`), never the caller's: admitters, gateways and
// consoles on several machines disagree by their clock skew, and a deadline written
// with one clock and compared with another admits too early or expires too late.
const ADVANCE: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  return {-1, '', '0'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute = math.floor(now / 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local s = redis.call('HMGET', KEYS[2], 'mode', 'rate_per_minute', 'max_active', 'admission_ttl_seconds', 'opens_at_ms')
local mode = s[1]
if not mode then return {-2, '', '0'} end
local q = redis.call('HMGET', KEYS[3], 'head', 'tail', 'last_tick', 'carry', 'last_sample')
local head = tonumber(q[1] or '0')
local tail = tonumber(q[2] or '0')
local last = tonumber(q[3] or now)
local carry = tonumber(q[4] or '0')
local admitted = 0
if mode == 'on' then
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  if elapsed > 1000 then elapsed = 1000 end
  local budget = carry + tonumber(s[2]) * elapsed / 60000
  local want = math.floor(budget)
  local room = tonumber(s[3]) - redis.call('ZCARD', KEYS[4])
  local n = math.min(want, tail - head, room)
  if n < 0 then n = 0 end
  if n == want then carry = budget - want else carry = 0 end
  local deadline = now + tonumber(s[4]) * 1000
  for i = head + 1, head + n do
    redis.call('ZADD', KEYS[4], deadline, i)
  end
  if n > 0 then
    head = head + n
    admitted = n
    redis.call('HSET', KEYS[3], 'head', head)
    redis.call('HINCRBY', KEYS[6], 'admitted:' .. minute, n)
  end
else
  carry = 0
end
redis.call('HSET', KEYS[3], 'last_tick', now, 'carry', carry)
local ls = tonumber(q[5] or '0')
if now - ls >= 1000 then
  redis.call('ZADD', KEYS[5], now, now .. ':' .. head)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  local obs = 0
  if first[1] then
    local t0 = tonumber(first[2])
    local h0 = tonumber(string.match(first[1], ':(%d+)$'))
    if now - t0 >= 1000 then obs = (head - h0) * 60000 / (now - t0) end
  end
  redis.call('HSET', KEYS[3], 'last_sample', now, 'obs_per_min', string.format('%.1f', obs))
end
return {admitted, mode, s[5] or '0'}
"#;

// Assigns the drawn sequence numbers and opens the queue, only if the lease is still
// ours and the event is still in the pre-queue. The draw covers the `n` entrants that
// were read (all of whom arrived before the admitter saw `opens_at` pass, give or take
// one step); anyone who arrived while the shuffle was computed arrived after opening
// and is queued behind the drawn ones in arrival order. So a steady stream of arrivals
// can never postpone the draw.
const OPEN: &str = r#"
if redis.call('GET', KEYS[6]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'mode') ~= 'prequeue' then return -2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[2])
local m = redis.call('LLEN', KEYS[3])
if m < n then return -3 end
local base = tonumber(redis.call('HGET', KEYS[2], 'tail') or '0')
for i = 1, n do
  redis.call('HSET', KEYS[4], i - 1, base + tonumber(ARGV[2 + i]))
end
for i = n + 1, m do
  redis.call('HSET', KEYS[4], i - 1, base + i)
end
redis.call('HSET', KEYS[2], 'tail', base + m, 'last_tick', now, 'carry', 0)
redis.call('HSET', KEYS[5], 'revealed', '1', 'base', base, 'drawn', n, 'drawn_at_ms', now)
redis.call('HSET', KEYS[1], 'mode', 'on')
redis.call('HINCRBY', KEYS[1], 'version', 1)
return m
"#;

/// What one step did for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Another admitter holds the lease.
    NotLeader,
    /// Admitted this many (possibly zero).
    Admitted(u64),
    /// The pre-queue was drawn and the queue opened with this many entrants (drawn, plus
    /// any who arrived during the draw and were queued behind them).
    Opened(u64),
}

pub struct Admitter {
    room: Waitroom,
    owner: String,
    lease: Duration,
    advance: Script,
    metrics: AdmitterMetrics,
}

/// Counted per event so dashboards and alerts ("admitter without lease") can see it.
#[derive(Clone)]
pub struct AdmitterMetrics {
    pub registry: prometheus::Registry,
    admitted: prometheus::IntCounterVec,
    leader: prometheus::IntGaugeVec,
}

impl AdmitterMetrics {
    fn new() -> Self {
        let registry = prometheus::Registry::new();
        let admitted = registered(
            &registry,
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("floodgate_admitter_admitted_total", "Visitors admitted"),
                &["event"],
            ),
        );
        let leader = registered(
            &registry,
            prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "floodgate_admitter_lease_held",
                    "1 when this admitter holds the event's lease",
                ),
                &["event"],
            ),
        );
        Self {
            registry,
            admitted,
            leader,
        }
    }
}

impl Admitter {
    pub fn new(room: Waitroom, lease: Duration) -> Self {
        Self {
            room,
            owner: uuid::Uuid::new_v4().to_string(),
            lease,
            advance: Script::from_lua(ADVANCE),
            metrics: AdmitterMetrics::new(),
        }
    }

    pub fn metrics(&self) -> &AdmitterMetrics {
        &self.metrics
    }

    pub fn room(&self) -> &Waitroom {
        &self.room
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Steps every registered event every `tick` until `shutdown` resolves.
    pub async fn run(&self, tick: Duration, shutdown: impl Future<Output = ()>) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => {
                    if let Err(e) = self.step_all().await {
                        tracing::warn!(error = %e, "admitter step failed");
                    }
                }
            }
        }
    }

    pub async fn step_all(&self) -> Result<(), Error> {
        for event in self.room.events().await? {
            let leader = self.metrics.leader.with_label_values(&[event.as_str()]);
            match self.step(&event).await {
                Ok(Step::Opened(n)) => {
                    leader.set(1);
                    tracing::info!(%event, entrants = n, "pre-queue drawn, queue open");
                }
                Ok(Step::Admitted(n)) => {
                    leader.set(1);
                    self.metrics
                        .admitted
                        .with_label_values(&[event.as_str()])
                        .inc_by(n);
                }
                Ok(Step::NotLeader) => leader.set(0),
                Err(e) => {
                    leader.set(0);
                    tracing::warn!(%event, error = %e, "admitter step failed");
                }
            }
        }
        Ok(())
    }

    /// One step for one event: renew the lease, expire lapsed slots, admit.
    pub async fn step(&self, event: &EventSlug) -> Result<Step, Error> {
        let k = self.room.keys(event);
        let now = Utc::now().timestamp_millis();
        let reply: Vec<Value> = self
            .advance
            .evalsha_with_reload(
                &self.room.client,
                vec![
                    k.lease(),
                    k.settings(),
                    k.queue(),
                    k.active(),
                    k.samples(),
                    k.counters(),
                ],
                vec![self.owner.clone(), self.lease.as_millis().to_string()],
            )
            .await?;
        let admitted = reply.first().and_then(Value::as_i64).unwrap_or(-2);
        if admitted == -1 {
            return Ok(Step::NotLeader);
        }
        if admitted < 0 {
            return Err(Error::UnknownEvent);
        }
        let mode = reply
            .get(1)
            .and_then(Value::as_str)
            .and_then(|m| m.parse::<Mode>().ok());
        let opens_at_ms: i64 = reply
            .get(2)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if mode == Some(Mode::Prequeue) && opens_at_ms > 0 && opens_at_ms <= now {
            // A draw deferred (someone arrived meanwhile) is retried on the next step.
            return Ok(match self.open(event).await? {
                Some(n) => Step::Opened(n),
                None => Step::Admitted(0),
            });
        }
        Ok(Step::Admitted(admitted as u64))
    }

    /// Draws the pre-queue with the committed seed and opens the queue.
    async fn open(&self, event: &EventSlug) -> Result<Option<u64>, Error> {
        let k = self.room.keys(event);
        let client = &self.room.client;
        let seed_hex: Option<String> = client.hget(k.lottery(), "seed").await?;
        let seed = seed_hex
            .as_deref()
            .and_then(Seed::from_hex)
            .ok_or_else(|| Error::Protocol("pre-queue without a committed seed".into()))?;
        let n: u64 = client.llen(k.prequeue()).await?;
        let order = lottery::shuffle(&seed, n as usize);
        let mut rank = vec![0u64; order.len()];
        for (position, &index) in order.iter().enumerate() {
            rank[index] = position as u64 + 1;
        }
        let mut args = Vec::with_capacity(order.len() + 2);
        args.push(self.owner.clone());
        args.push(n.to_string());
        args.extend(rank.iter().map(u64::to_string));
        let r: i64 = client
            .eval(
                OPEN,
                vec![
                    k.settings(),
                    k.queue(),
                    k.prequeue(),
                    k.lottery_seq(),
                    k.lottery(),
                    k.lease(),
                ],
                args,
            )
            .await?;
        Ok((r >= 0).then_some(r as u64))
    }
}
