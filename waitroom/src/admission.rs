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
use std::sync::Arc;
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
  -- Samples are `time:active:head`: admissions over the window are the head's move,
  -- slots freed (finished or lapsed) are those admissions less the growth of active.
  local act = redis.call('ZCARD', KEYS[4])
  redis.call('ZADD', KEYS[5], now, now .. ':' .. act .. ':' .. head)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  local obs, freed, done = 0, 0, 0
  if first[1] then
    local t0 = tonumber(first[2])
    local a0, h0 = string.match(first[1], '^%d+:(%d+):(%d+)$')
    if not h0 then h0 = string.match(first[1], ':(%d+)$') end
    if now - t0 >= 1000 then
      obs = (head - tonumber(h0)) * 60000 / (now - t0)
      if a0 then
        freed = math.max(0, (head - tonumber(h0)) - (act - tonumber(a0)))
        done = freed * 60000 / (now - t0)
      end
    end
  end
  redis.call('HSET', KEYS[3], 'last_sample', now, 'obs_per_min', string.format('%.1f', obs),
    'done_per_min', string.format('%.1f', done), 'done_in_window', freed)
end
return {admitted, mode, s[5] or '0'}
"#;

// Writes one chunk of the drawn sequence numbers (ARGV[2] the lease in ms, ARGV[3] the
// first entrant's index, then one number per entrant), only while no other admitter
// holds the lease and the pre-queue is not drawn yet; each chunk renews the lease, as
// the step it interrupts would have (a million entrants take seconds, the lease is
// shorter). Chunks keep each script short: a million entrants are a hundred steps of
// a few milliseconds, not one that blocks the shard (and every other event on it) for
// seconds. A chunk written by an attempt that did not finish is overwritten by the
// next one, which covers at least as many entrants with the same seed.
const WRITE_SEQS: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[2], 'mode') ~= 'prequeue' then return -2 end
if redis.call('HGET', KEYS[4], 'revealed') == '1' then return -2 end
local first = tonumber(ARGV[3])
for i = 4, #ARGV do
  redis.call('HSET', KEYS[3], first + i - 4, ARGV[i])
end
return #ARGV - 3
"#;

// Opens the queue once every chunk is written, only if no other admitter took the
// lease meanwhile (ours may have lapsed during a long draw: nobody else has it), the
// event is still in the pre-queue and the tail is still the base the numbers were
// drawn from. The draw covers the `n` entrants that were read (all of whom arrived
// before the admitter saw `opens_at` pass, give or take one step); anyone who arrived
// while it was computed arrived after opening and is queued behind the drawn ones in
// arrival order (entrant k gets base + k + 1, computed where it is read). So a steady
// stream of arrivals can never postpone the draw.
const OPEN: &str = r#"
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'mode') ~= 'prequeue' then return -2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local m = redis.call('LLEN', KEYS[3])
if m < n then return -3 end
if tonumber(redis.call('HGET', KEYS[2], 'tail') or '0') ~= base then return -4 end
redis.call('HSET', KEYS[2], 'tail', base + m, 'last_tick', now, 'carry', 0)
redis.call('HSET', KEYS[5], 'revealed', '1', 'base', base, 'drawn', n, 'drawn_at_ms', now)
redis.call('HSET', KEYS[1], 'mode', 'on')
redis.call('HINCRBY', KEYS[1], 'version', 1)
return m
"#;

/// Entrants per chunk of a draw.
const DRAW_CHUNK: usize = 10_000;

/// An event marked as being stepped, unmarked when dropped.
struct Busy<'a>(
    &'a std::sync::Mutex<std::collections::HashSet<EventSlug>>,
    &'a EventSlug,
);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // Poisoned or not, the set is only ever added to and removed from.
        let mut busy = self.0.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(self.1);
    }
}

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
    /// The events last read from the registry, stepped when it cannot be read (its
    /// key lives on one shard; losing that shard must not stop every event).
    known: std::sync::Mutex<Vec<EventSlug>>,
    /// Events whose step has not finished (a draw takes seconds): not stepped again
    /// until it has, and not waited for by the other events' ticks.
    busy: std::sync::Mutex<std::collections::HashSet<EventSlug>>,
}

/// How long one event's step may take before the admitter gives up on it for this
/// tick. Events are stepped concurrently, so a slow or failing shard costs its own
/// events a tick, never the events on healthy shards; well under the lease, so a
/// leader stuck on a frozen shard does not keep a lease it cannot use.
pub const STEP_TIMEOUT: Duration = Duration::from_millis(500);

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
            known: std::sync::Mutex::new(Vec::new()),
            busy: std::sync::Mutex::new(std::collections::HashSet::new()),
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
    pub async fn run(self: &Arc<Self>, tick: Duration, shutdown: impl Future<Output = ()>) {
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

    /// Steps every registered event, concurrently, each within [`STEP_TIMEOUT`]; an
    /// event whose last step is still going (a pre-queue being drawn) is left to it,
    /// and no event's tick waits for it.
    pub async fn step_all(self: &Arc<Self>) -> Result<(), Error> {
        let events = match tokio::time::timeout(STEP_TIMEOUT, self.room.events()).await {
            Ok(Ok(events)) => {
                *self.known.lock().expect("known events") = events.clone();
                events
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the event registry failed; stepping the events known");
                self.known.lock().expect("known events").clone()
            }
            Err(_) => {
                tracing::warn!("reading the event registry timed out; stepping the events known");
                self.known.lock().expect("known events").clone()
            }
        };
        let mut steps = Vec::with_capacity(events.len());
        for event in events {
            let marked = self
                .busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(event.clone());
            if !marked {
                continue;
            }
            let this = self.clone();
            steps.push(tokio::spawn(async move {
                // Freed however the step ends (a panic too): a step that never freed its
                // event would leave that event unstepped for the life of the process.
                let _busy = Busy(&this.busy, &event);
                this.step_reported(&event).await;
            }));
        }
        // The ordinary step is one script under STEP_TIMEOUT; a draw goes on alone.
        let _ = tokio::time::timeout(STEP_TIMEOUT, futures::future::join_all(steps)).await;
        Ok(())
    }

    /// One event's step, its outcome logged and counted.
    async fn step_reported(&self, event: &EventSlug) {
        let leader = self.metrics.leader.with_label_values(&[event.as_str()]);
        match self.step(event).await {
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

    /// One step for one event: renew the lease, expire lapsed slots, admit; the
    /// Redis step gives up after [`STEP_TIMEOUT`].
    pub async fn step(&self, event: &EventSlug) -> Result<Step, Error> {
        let k = self.room.keys(event);
        let now = Utc::now().timestamp_millis();
        let advance = self.advance.evalsha_with_reload(
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
        );
        let reply: Vec<Value> = tokio::time::timeout(STEP_TIMEOUT, advance)
            .await
            .map_err(|_| Error::Protocol("the admission step timed out".into()))??;
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

    /// Draws the pre-queue with the committed seed and opens the queue: the order is
    /// computed off the async workers (a million entrants take a CPU-second), written
    /// in chunks, and the queue opened in one last atomic step.
    async fn open(&self, event: &EventSlug) -> Result<Option<u64>, Error> {
        let k = self.room.keys(event);
        let client = &self.room.client;
        let seed_hex: Option<String> = client.hget(k.lottery(), "seed").await?;
        let seed = seed_hex
            .as_deref()
            .and_then(Seed::from_hex)
            .ok_or_else(|| Error::Protocol("pre-queue without a committed seed".into()))?;
        let n: u64 = client.llen(k.prequeue()).await?;
        let base: u64 = client
            .hget::<Option<u64>, _, _>(k.queue(), "tail")
            .await?
            .unwrap_or(0);
        let seqs = tokio::task::spawn_blocking(move || {
            let order = lottery::shuffle(&seed, n as usize);
            let mut seqs = vec![0u64; order.len()];
            for (position, &index) in order.iter().enumerate() {
                seqs[index] = base + position as u64 + 1;
            }
            seqs
        })
        .await
        .map_err(|e| Error::Protocol(format!("the draw failed: {e}")))?;
        for (chunk, part) in seqs.chunks(DRAW_CHUNK).enumerate() {
            let mut args = Vec::with_capacity(part.len() + 3);
            args.push(self.owner.clone());
            args.push(self.lease.as_millis().to_string());
            args.push((chunk * DRAW_CHUNK).to_string());
            args.extend(part.iter().map(u64::to_string));
            let written: i64 = client
                .eval(
                    WRITE_SEQS,
                    vec![k.lease(), k.settings(), k.lottery_seq(), k.lottery()],
                    args,
                )
                .await?;
            if written < 0 {
                return Ok(None);
            }
        }
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
                vec![self.owner.clone(), n.to_string(), base.to_string()],
            )
            .await?;
        Ok((r >= 0).then_some(r as u64))
    }
}
