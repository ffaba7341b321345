//! The live control room's feed: one snapshot a second per watched event, shared by
//! everyone watching it.
//!
//! `GET /console/api/events/{event}/live` is a Server-Sent Events stream. The first
//! message (`history`) carries the last 30 minutes as columns for the charts plus the
//! latest snapshot; then one `snapshot` message a second; a `problem` message when a
//! store could not be read (the page says the figures are stale, the stream stays open).
//!
//! The cost does not grow with the audience: the [`Hub`] runs **one feed task per
//! watched event**, started by the first viewer and stopped when the last one has been
//! gone for the hub's linger (so a page reload does not lose the in-memory history).
//! Each second the feed makes one Redis call ([`Waitroom::figures`], a single script)
//! and one aggregate Postgres query, serialises the snapshot once, and publishes it on a
//! `tokio::sync::watch` channel; a viewer's stream only clones an `Arc` of the latest
//! frame. A slow viewer skips frames instead of holding anyone up. Starting a feed also
//! reads the per-minute counters and sales of the last 30 minutes once, so the charts
//! are never empty.
//!
//! Rates: `arrivals_per_min` and `admitted_per_min` are measured over the feed's last
//! 10 s of samples of the per-minute counters (so a rate change shows within seconds),
//! falling back to a sliding minute built from the two newest minute buckets while a
//! feed is younger than that. `holds_converted_per_min` is paid orders in the last 60 s:
//! the rate checkout actually keeps up with.
//!
//! The same figures are exported as Prometheus metrics (`floodgate_queue_*`,
//! `floodgate_tier_*`, `floodgate_orders_paid_total`, ...) by the feeds and, for
//! events nobody watches, by [`export_forever`] every 15 s.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use futures::Stream;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::figures::Figures;
use waitroom::queue::Waitroom;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, AuditRow};
use crate::auth::Operator;

/// How far back the charts reach.
const WINDOW_SECONDS: i64 = 30 * 60;
/// The window over which live per-minute rates are measured.
const RATE_WINDOW_MS: i64 = 10_000;
/// A feed needs this much of its own history before it trusts its window rate.
const RATE_MIN_SPAN_MS: i64 = 4_000;

/// The routes of the live control room: the feed, the page, its assets, the audit list.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/api/events/{event}/live", get(stream))
        .route("/console/api/events/{event}/audit", get(audit_log))
        .route(
            "/console/events/{event}/live",
            get(crate::control_room::page),
        )
        .route("/console/assets/{file}", get(crate::control_room::asset))
}

// ------------------------------------------------------------------ the snapshot

/// One tier's inventory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TierFigures {
    pub code: String,
    pub name: String,
    pub sold: i64,
    pub held: i64,
    pub capacity: i64,
}

/// Arrived → queued → admitted → held → paid → delivered. All cumulative except
/// `queued`, which is the people waiting now.
#[derive(Clone, Debug, Serialize)]
pub struct Funnel {
    pub arrived: u64,
    pub queued: u64,
    pub admitted: u64,
    pub held: u64,
    pub paid: u64,
    pub delivered: u64,
}

/// "Suggest, don't guess": what checkout is actually keeping up with.
#[derive(Clone, Debug, Serialize)]
pub struct CheckoutPace {
    /// Paid orders in the last 60 s (one order per converted hold).
    pub keeps_up_with_per_min: u64,
    /// Paid orders per claimed admission so far, once there is enough to tell.
    pub conversion: Option<f64>,
    /// The admission rate that feeds checkout at the pace it completes orders
    /// (`keeps_up_with_per_min / conversion`), once the conversion is known.
    pub suggested_rate_per_minute: Option<u64>,
    /// `true` when checkout is (nearly) full and admitting faster than it converts:
    /// a higher rate would only build a queue inside checkout.
    pub saturated: bool,
}

/// An operator's change, as a marker on the charts.
#[derive(Clone, Debug, Serialize)]
pub struct Marker {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    /// "rate 120 → 600/min, mode on → paused".
    pub summary: String,
    pub reason: Option<String>,
}

/// What every viewer receives each second.
#[derive(Clone, Debug, Serialize)]
pub struct LiveSnapshot {
    pub event: String,
    pub at: DateTime<Utc>,
    pub settings: AdmissionSettings,
    pub waiting: u64,
    pub arrivals_per_min: f64,
    pub admitted_per_min: f64,
    /// The admitter's own measure over its last minute (drives buyers' ETAs).
    pub observed_admissions_per_minute: f64,
    pub active: u64,
    pub admitted_total: u64,
    pub claimed: u64,
    /// Admitted, never came: their admission slot lapsed unclaimed
    /// (`admitted − claimed − slots still waiting to be claimed`).
    pub no_shows: u64,
    pub tiers: Vec<TierFigures>,
    pub holds_converted_per_min: u64,
    pub payments_failed: u64,
    pub payments_failed_per_min: u64,
    /// Failed / (failed + paid) over the last minute; `None` with no payments.
    pub payment_failure_rate: Option<f64>,
    pub deliveries_pending: u64,
    pub deliveries_failed: u64,
    pub funnel: Funnel,
    pub checkout: CheckoutPace,
    /// Operator changes made since the previous snapshot.
    pub changes: Vec<Marker>,
}

/// What Postgres says, in one aggregate query.
#[derive(Clone, Debug, Default)]
struct Sales {
    event_id: Option<Uuid>,
    tiers: Vec<TierFigures>,
    orders_paid: u64,
    paid_last_min: u64,
    holds: u64,
    payments_failed: u64,
    payments_failed_last_min: u64,
    deliveries_pending: u64,
    deliveries_failed: u64,
    delivered: u64,
    changes: Vec<Change>,
}

/// An audit row as the aggregate query returns it (JSON).
#[derive(Clone, Debug, Deserialize)]
struct Change {
    id: i64,
    actor: String,
    action: String,
    before: Option<Value>,
    after: Option<Value>,
    reason: Option<String>,
    at: DateTime<Utc>,
}

const AGGREGATE: &str = r#"
WITH ev AS (SELECT id FROM events WHERE slug = $1)
SELECT
  (SELECT id FROM ev) AS event_id,
  (SELECT coalesce(json_agg(json_build_object('code', t.code, 'name', t.name, 'sold', t.sold,
            'held', t.held, 'capacity', t.capacity) ORDER BY t.position), '[]'::json)
     FROM tiers t WHERE t.event_id = (SELECT id FROM ev)) AS tiers,
  o.paid, o.paid_last_min,
  (SELECT count(*) FROM holds h
     WHERE h.tier_id IN (SELECT id FROM tiers WHERE event_id = (SELECT id FROM ev))) AS holds,
  p.failed, p.failed_last_min,
  d.pending, d.failed AS deliveries_failed, d.delivered,
  (SELECT coalesce(json_agg(c ORDER BY c.id), '[]'::json) FROM (
     SELECT a.id, a.actor, a.action, a.before, a.after, a.reason, a.at
       FROM operator_audit a
      WHERE a.event_id = (SELECT id FROM ev) AND a.id > $2
        AND a.at > now() - interval '30 minutes'
        AND a.action NOT LIKE '%.refused'
      ORDER BY a.id DESC LIMIT 50) c) AS changes
FROM
  (SELECT count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid,
          count(*) FILTER (WHERE paid_at > now() - interval '1 minute') AS paid_last_min
     FROM orders WHERE event_id = (SELECT id FROM ev)) o,
  (SELECT count(*) AS failed,
          count(*) FILTER (WHERE pe.received_at > now() - interval '1 minute') AS failed_last_min
     FROM payment_events pe JOIN orders po ON po.id = pe.order_id
    WHERE po.event_id = (SELECT id FROM ev) AND pe.type = 'payment_intent.payment_failed') p,
  (SELECT count(*) FILTER (WHERE dl.status = 'queued') AS pending,
          count(*) FILTER (WHERE dl.status IN ('failed', 'bounced')) AS failed,
          count(DISTINCT dl.order_id) FILTER (WHERE dl.kind = 'confirmation' AND dl.status = 'sent')
            AS delivered
     FROM deliveries dl JOIN orders dor ON dor.id = dl.order_id
    WHERE dor.event_id = (SELECT id FROM ev)) d
"#;

fn count(row: &sqlx::postgres::PgRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
}

/// The one query a feed makes per second. `after_audit` is the newest audit row the
/// feed already has (`i64::MAX` for none at all).
async fn read_sales(db: &PgPool, slug: &EventSlug, after_audit: i64) -> Result<Sales, sqlx::Error> {
    let row = sqlx::query(AGGREGATE)
        .bind(slug.as_str())
        .bind(after_audit)
        .fetch_one(db)
        .await?;
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    let tiers: Value = row.try_get("tiers")?;
    let changes: Value = row.try_get("changes")?;
    Ok(Sales {
        event_id: row.try_get("event_id")?,
        tiers: serde_json::from_value(tiers).map_err(decode)?,
        orders_paid: count(&row, "paid")?,
        paid_last_min: count(&row, "paid_last_min")?,
        holds: count(&row, "holds")?,
        payments_failed: count(&row, "failed")?,
        payments_failed_last_min: count(&row, "failed_last_min")?,
        deliveries_pending: count(&row, "pending")?,
        deliveries_failed: count(&row, "deliveries_failed")?,
        delivered: count(&row, "delivered")?,
        changes: serde_json::from_value(changes).map_err(decode)?,
    })
}

/// "rate 120 → 600/min, mode on → paused" from an audit row's before and after.
pub(crate) fn summarise(action: &str, before: Option<&Value>, after: Option<&Value>) -> String {
    let (Some(before), Some(after)) = (before, after) else {
        return action.replace('.', " ");
    };
    let show = |v: &Value| match v {
        Value::String(s) => s.replace('_', " "),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    for (field, label, unit) in [
        ("mode", "mode", ""),
        ("rate_per_minute", "rate", "/min"),
        ("max_active", "max active", ""),
        ("admission_ttl_seconds", "admission TTL", " s"),
        ("opens_at", "opens", ""),
    ] {
        let (b, a) = (
            before.get(field).unwrap_or(&Value::Null),
            after.get(field).unwrap_or(&Value::Null),
        );
        if b != a {
            parts.push(format!("{label} {} → {}{unit}", show(b), show(a)));
        }
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

fn marker(c: &Change) -> Marker {
    Marker {
        id: c.id,
        at: c.at,
        actor: c.actor.clone(),
        action: c.action.clone(),
        summary: summarise(&c.action, c.before.as_ref(), c.after.as_ref()),
        reason: c.reason.clone(),
    }
}

/// A per-minute rate from the two newest minute buckets: all of this minute plus the
/// part of the previous minute that is still inside the last 60 s.
fn sliding_minute(now: u64, previous: u64, at: DateTime<Utc>) -> f64 {
    let into = f64::from(at.timestamp().rem_euclid(60) as u32)
        + f64::from(at.timestamp_subsec_millis()) / 1000.0;
    now as f64 + previous as f64 * (1.0 - into / 60.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn build_snapshot(
    slug: &EventSlug,
    f: &Figures,
    s: &Sales,
    rates: (f64, f64),
    changes: Vec<Marker>,
) -> LiveSnapshot {
    let settings = f.settings.clone();
    let conversion = (f.claimed >= 20 && s.orders_paid >= 5)
        .then(|| (s.orders_paid as f64 / f.claimed as f64).min(1.0));
    let suggested = conversion
        .filter(|c| *c > 0.0)
        .map(|c| (s.paid_last_min as f64 / c).round() as u64);
    let nearly_full = f.active as f64 >= 0.9 * f64::from(settings.max_active);
    let saturated =
        settings.mode == Mode::On && nearly_full && rates.1 > 1.2 * s.paid_last_min as f64;
    let tried = s.payments_failed_last_min + s.paid_last_min;
    LiveSnapshot {
        event: slug.to_string(),
        at: f.at,
        waiting: f.waiting(),
        arrivals_per_min: round1(rates.0),
        admitted_per_min: round1(rates.1),
        observed_admissions_per_minute: f.observed_per_min,
        active: f.active,
        admitted_total: f.head,
        claimed: f.claimed,
        no_shows: f.no_shows(),
        tiers: s.tiers.clone(),
        holds_converted_per_min: s.paid_last_min,
        payments_failed: s.payments_failed,
        payments_failed_per_min: s.payments_failed_last_min,
        payment_failure_rate: (tried > 0)
            .then(|| round1(100.0 * s.payments_failed_last_min as f64 / tried as f64) / 100.0),
        deliveries_pending: s.deliveries_pending,
        deliveries_failed: s.deliveries_failed,
        funnel: Funnel {
            arrived: f.arrived(),
            queued: f.waiting(),
            admitted: f.head,
            held: s.holds,
            paid: s.orders_paid,
            delivered: s.delivered,
        },
        checkout: CheckoutPace {
            keeps_up_with_per_min: s.paid_last_min,
            conversion: conversion.map(|c| round1(c * 1000.0) / 1000.0),
            suggested_rate_per_minute: suggested,
            saturated,
        },
        settings,
        changes,
    }
}

// ------------------------------------------------------------------ history

/// One point of the charts. Points reconstructed from minute counters when a feed starts
/// know less than live ones; what they do not know is `None` (a gap on the chart).
#[derive(Clone, Debug, Default)]
struct Point {
    t: i64,
    waiting: Option<u64>,
    arrivals_per_min: Option<f64>,
    admitted_per_min: Option<f64>,
    rate_per_minute: Option<u32>,
    active: Option<u64>,
    max_active: Option<u32>,
    converted_per_min: Option<u64>,
    payments_failed_per_min: Option<u64>,
    deliveries_pending: Option<u64>,
    deliveries_failed: Option<u64>,
    sold: HashMap<String, i64>,
}

impl Point {
    fn live(s: &LiveSnapshot) -> Self {
        Self {
            t: s.at.timestamp(),
            waiting: Some(s.waiting),
            arrivals_per_min: Some(s.arrivals_per_min),
            admitted_per_min: Some(s.admitted_per_min),
            rate_per_minute: Some(if s.settings.mode == Mode::On {
                s.settings.rate_per_minute
            } else {
                0
            }),
            active: Some(s.active),
            max_active: Some(s.settings.max_active),
            converted_per_min: Some(s.holds_converted_per_min),
            payments_failed_per_min: Some(s.payments_failed_per_min),
            deliveries_pending: Some(s.deliveries_pending),
            deliveries_failed: Some(s.deliveries_failed),
            sold: s.tiers.iter().map(|t| (t.code.clone(), t.sold)).collect(),
        }
    }
}

/// Cumulative arrivals/admissions as counted by the feed, for the window rates.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at_ms: i64,
    arrivals: u64,
    admitted: u64,
}

#[derive(Default)]
struct FeedState {
    tiers: Vec<(String, String)>,
    points: VecDeque<Point>,
    markers: VecDeque<Marker>,
    last_audit_id: i64,
    /// The previous reading of the minute counters: (minute, arrivals, admitted).
    last_counters: Option<(i64, [u64; 2], [u64; 2])>,
    cumulative: (u64, u64),
    samples: VecDeque<Sample>,
    latest: Option<Arc<str>>,
}

/// How much a pair of minute buckets grew between two readings a second or so apart.
fn counter_growth(prev_minute: i64, prev: [u64; 2], minute: i64, now: [u64; 2]) -> u64 {
    match minute - prev_minute {
        0 => now[0].saturating_sub(prev[0]),
        1 => now[1].saturating_sub(prev[0]) + now[0],
        // A gap of minutes (a stalled feed): count what the buckets show.
        _ => now[0] + now[1],
    }
}

impl FeedState {
    /// Advances the cumulative counts and returns (arrivals, admitted) per minute.
    fn rates(&mut self, f: &Figures) -> (f64, f64) {
        if let Some((m, a, d)) = self.last_counters {
            self.cumulative.0 += counter_growth(m, a, f.minute, f.arrivals);
            self.cumulative.1 += counter_growth(m, d, f.minute, f.admitted);
        }
        self.last_counters = Some((f.minute, f.arrivals, f.admitted));
        let now = Sample {
            at_ms: f.at.timestamp_millis(),
            arrivals: self.cumulative.0,
            admitted: self.cumulative.1,
        };
        self.samples.push_back(now);
        while self
            .samples
            .front()
            .is_some_and(|s| now.at_ms - s.at_ms > RATE_WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let first = self.samples.front().copied().unwrap_or(now);
        let span = now.at_ms - first.at_ms;
        if span >= RATE_MIN_SPAN_MS {
            let per_min = 60_000.0 / span as f64;
            (
                (now.arrivals - first.arrivals) as f64 * per_min,
                (now.admitted - first.admitted) as f64 * per_min,
            )
        } else {
            (
                sliding_minute(f.arrivals[0], f.arrivals[1], f.at),
                sliding_minute(f.admitted[0], f.admitted[1], f.at),
            )
        }
    }

    fn push(&mut self, point: Point) {
        let cutoff = point.t - WINDOW_SECONDS;
        self.points.push_back(point);
        while self.points.front().is_some_and(|p| p.t < cutoff) {
            self.points.pop_front();
        }
        while self
            .markers
            .front()
            .is_some_and(|m| m.at.timestamp() < cutoff)
        {
            self.markers.pop_front();
        }
    }

    /// The `history` message: the charts' columns, the markers and the latest snapshot.
    fn history(&self) -> String {
        fn col<T: Serialize>(points: &VecDeque<Point>, f: impl Fn(&Point) -> T) -> Vec<T> {
            points.iter().map(f).collect()
        }
        let p = &self.points;
        let sold: serde_json::Map<String, Value> = self
            .tiers
            .iter()
            .map(|(code, _)| (code.clone(), json!(col(p, |x| x.sold.get(code).copied()))))
            .collect();
        let latest: Value = self
            .latest
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        json!({
            "window_seconds": WINDOW_SECONDS,
            "tiers": self.tiers.iter().map(|(code, name)| json!({"code": code, "name": name})).collect::<Vec<_>>(),
            "t": col(p, |x| x.t),
            "waiting": col(p, |x| x.waiting),
            "arrivals_per_min": col(p, |x| x.arrivals_per_min),
            "admitted_per_min": col(p, |x| x.admitted_per_min),
            "rate_per_minute": col(p, |x| x.rate_per_minute),
            "active": col(p, |x| x.active),
            "max_active": col(p, |x| x.max_active),
            "holds_converted_per_min": col(p, |x| x.converted_per_min),
            "payments_failed_per_min": col(p, |x| x.payments_failed_per_min),
            "deliveries_pending": col(p, |x| x.deliveries_pending),
            "deliveries_failed": col(p, |x| x.deliveries_failed),
            "sold": sold,
            "markers": self.markers,
            "latest": latest,
        })
        .to_string()
    }
}

/// The minutes before a feed started, rebuilt from Redis' minute counters and paid
/// orders: queue depth is walked back from now (`waiting` at the end of a minute is
/// today's minus the arrivals since, plus the admissions since), sales likewise.
async fn backfill(
    db: &PgPool,
    room: &Waitroom,
    slug: &EventSlug,
    f: &Figures,
    s: &Sales,
) -> Result<Vec<Point>, ConsoleError> {
    let Some(event_id) = s.event_id else {
        return Ok(Vec::new());
    };
    let last = f.minute;
    let first = last - WINDOW_SECONDS / 60;
    let counts = room.minute_counts(slug, first, last).await?;
    let since = DateTime::from_timestamp(first * 60, 0).unwrap_or(f.at);
    let sales = sqlx::query(
        r#"SELECT floor(extract(epoch FROM o.paid_at) / 60)::bigint AS minute, t.code,
                  count(*) AS orders, sum(o.quantity)::bigint AS seats
             FROM orders o JOIN tiers t ON t.id = o.tier_id
            WHERE o.event_id = $1 AND o.paid_at >= $2
            GROUP BY 1, 2
           UNION ALL
           SELECT floor(extract(epoch FROM pe.received_at) / 60)::bigint, NULL, count(*), 0
             FROM payment_events pe JOIN orders o ON o.id = pe.order_id
            WHERE o.event_id = $1 AND pe.type = 'payment_intent.payment_failed'
              AND pe.received_at >= $2
            GROUP BY 1"#,
    )
    .bind(event_id)
    .bind(since)
    .fetch_all(db)
    .await?;
    let mut paid: HashMap<i64, u64> = HashMap::new();
    let mut failed: HashMap<i64, u64> = HashMap::new();
    let mut seats: HashMap<(i64, String), i64> = HashMap::new();
    for row in &sales {
        let minute: i64 = row.try_get("minute")?;
        let orders: i64 = row.try_get("orders")?;
        match row.try_get::<Option<String>, _>("code")? {
            Some(code) => {
                *paid.entry(minute).or_default() += orders.max(0) as u64;
                *seats.entry((minute, code)).or_default() += row.try_get::<i64, _>("seats")?;
            }
            None => *failed.entry(minute).or_default() += orders.max(0) as u64,
        }
    }
    // Walk back from now: the queue at the end of a minute is today's, less the arrivals
    // since, plus the admissions since; seats sold likewise.
    let mut points = Vec::new();
    let mut waiting = f.waiting() as i64;
    let mut sold: HashMap<String, i64> = s.tiers.iter().map(|t| (t.code.clone(), t.sold)).collect();
    for c in counts.iter().rev() {
        if c.minute < last {
            points.push(Point {
                t: (c.minute + 1) * 60,
                waiting: Some(waiting.max(0) as u64),
                arrivals_per_min: Some(c.arrivals as f64),
                admitted_per_min: Some(c.admitted as f64),
                converted_per_min: Some(paid.get(&c.minute).copied().unwrap_or(0)),
                payments_failed_per_min: Some(failed.get(&c.minute).copied().unwrap_or(0)),
                sold: sold.iter().map(|(k, v)| (k.clone(), (*v).max(0))).collect(),
                ..Point::default()
            });
        }
        waiting -= c.arrivals as i64 - c.admitted as i64;
        for (code, n) in sold.iter_mut() {
            *n -= seats.get(&(c.minute, code.clone())).copied().unwrap_or(0);
        }
    }
    points.reverse();
    // Start at the first minute anything happened: no flat line of zeros before it.
    let quiet = |p: &Point| {
        p.waiting == Some(0)
            && p.arrivals_per_min == Some(0.0)
            && p.admitted_per_min == Some(0.0)
            && p.converted_per_min == Some(0)
            && p.payments_failed_per_min == Some(0)
    };
    let first_busy = points
        .iter()
        .position(|p| !quiet(p))
        .unwrap_or(points.len());
    points.drain(..first_busy);
    Ok(points)
}

// ------------------------------------------------------------------ the hub

/// A published frame: an SSE event name and its JSON, serialised once for everyone.
#[derive(Debug)]
struct Frame {
    kind: &'static str,
    data: Arc<str>,
}

struct Feed {
    slug: EventSlug,
    tx: watch::Sender<Option<Arc<Frame>>>,
    state: Mutex<FeedState>,
}

/// The per-event feeds. The map is behind a std `Mutex`: it is held only to look up,
/// insert or remove an entry (never across an `.await`), and holding it while the last
/// viewer check runs is what makes "start on first viewer, stop after the last"
/// race-free.
#[derive(Clone)]
pub struct Hub {
    feeds: Arc<Mutex<HashMap<EventSlug, Arc<Feed>>>>,
    /// The feeds' own few connections, made from the console pool's settings on first
    /// use: a slow aggregate never takes a connection an operator's request needs, and
    /// a small pool keeps every connection's prepared statements warm.
    pool: Arc<OnceLock<PgPool>>,
    linger: Duration,
    metrics: LiveMetrics,
}

/// Connections for all live feeds together (one aggregate query per feed per second).
const FEED_CONNECTIONS: u32 = 3;

impl Default for Hub {
    fn default() -> Self {
        Self::new(&Registry::new(), Duration::from_secs(15))
    }
}

impl Hub {
    /// A hub whose metrics go into `registry`; a feed keeps running for `linger` after
    /// its last viewer left (a page reload keeps its history).
    pub fn new(registry: &Registry, linger: Duration) -> Self {
        Self {
            feeds: Arc::default(),
            pool: Arc::default(),
            linger,
            metrics: LiveMetrics::new(registry),
        }
    }

    /// How many feeds are running (tests, metrics).
    pub fn running(&self) -> usize {
        self.feeds.lock().expect("hub lock").len()
    }

    fn pool(&self, db: &PgPool) -> PgPool {
        self.pool
            .get_or_init(|| {
                PgPoolOptions::new()
                    .max_connections(FEED_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with((*db.connect_options()).clone())
            })
            .clone()
    }

    fn is_running(&self, slug: &EventSlug) -> bool {
        self.feeds.lock().expect("hub lock").contains_key(slug)
    }

    /// Joins the event's feed, starting it if nobody was watching.
    pub fn subscribe(&self, db: &PgPool, room: &Waitroom, slug: &EventSlug) -> Subscription {
        let mut feeds = self.feeds.lock().expect("hub lock");
        let feed = feeds
            .entry(slug.clone())
            .or_insert_with(|| {
                let feed = Arc::new(Feed {
                    slug: slug.clone(),
                    tx: watch::Sender::new(None),
                    state: Mutex::new(FeedState::default()),
                });
                tokio::spawn(run_feed(
                    self.clone(),
                    self.pool(db),
                    room.clone(),
                    feed.clone(),
                ));
                self.metrics.feeds.inc();
                tracing::info!(event = %slug, "live feed started");
                feed
            })
            .clone();
        let rx = feed.tx.subscribe();
        drop(feeds);
        let viewers = self.metrics.viewers.with_label_values(&[slug.as_str()]);
        viewers.inc();
        Subscription {
            rx,
            feed,
            history_sent: false,
            _viewer: ViewerGuard(viewers),
        }
    }

    /// Removes the feed if still nobody watches; the check and the removal happen under
    /// the lock `subscribe` takes.
    fn retire(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = self.feeds.lock().expect("hub lock");
        if feed.tx.receiver_count() > 0 {
            return false;
        }
        if feeds.get(&feed.slug).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(&feed.slug);
        }
        self.metrics.feeds.dec();
        tracing::info!(event = %feed.slug, "live feed stopped");
        true
    }
}

struct ViewerGuard(IntGauge);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One viewer's place on a feed.
pub struct Subscription {
    rx: watch::Receiver<Option<Arc<Frame>>>,
    feed: Arc<Feed>,
    history_sent: bool,
    _viewer: ViewerGuard,
}

impl Subscription {
    /// The next message for this viewer: first the history (once the feed has produced
    /// its first snapshot), then each new frame. `None` when the feed is gone.
    pub async fn next(&mut self) -> Option<(&'static str, Arc<str>)> {
        if !self.history_sent {
            self.rx.wait_for(Option::is_some).await.ok()?;
            self.history_sent = true;
            let history = self.feed.state.lock().expect("feed lock").history();
            return Some(("history", history.into()));
        }
        self.rx.changed().await.ok()?;
        let frame = self.rx.borrow_and_update().clone()?;
        Some((frame.kind, frame.data.clone()))
    }
}

async fn run_feed(hub: Hub, db: PgPool, room: Waitroom, feed: Arc<Feed>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since: Option<Instant> = None;
    let mut started = false;
    loop {
        tick.tick().await;
        if feed.tx.receiver_count() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= hub.linger && hub.retire(&feed) {
                return;
            }
        } else {
            idle_since = None;
        }
        match step(&hub, &db, &room, &feed, !started).await {
            Ok(()) => started = true,
            Err(e) => {
                tracing::warn!(event = %feed.slug, error = %e, "live feed could not read");
                let data: Arc<str> = json!({
                    "error": "unavailable",
                    "message": "the figures could not be read; showing the last known",
                    "at": Utc::now(),
                })
                .to_string()
                .into();
                feed.tx.send_replace(Some(Arc::new(Frame {
                    kind: "problem",
                    data,
                })));
            }
        }
    }
}

/// One second of a feed: read both stores, build, remember and publish the snapshot.
async fn step(
    hub: &Hub,
    db: &PgPool,
    room: &Waitroom,
    feed: &Feed,
    first: bool,
) -> Result<(), ConsoleError> {
    let after_audit = feed.state.lock().expect("feed lock").last_audit_id;
    let (figures, sales) = tokio::join!(
        room.figures(&feed.slug),
        read_sales(db, &feed.slug, after_audit)
    );
    hub.metrics.read("redis", figures.is_ok());
    hub.metrics.read("postgres", sales.is_ok());
    let (figures, sales) = (figures?, sales?);
    if sales.event_id.is_none() {
        return Err(orders::Error::NotFound("event").into());
    }
    let backfilled = if first {
        backfill(db, room, &feed.slug, &figures, &sales).await?
    } else {
        Vec::new()
    };
    hub.metrics.export(&feed.slug, &figures, &sales);
    let mut state = feed.state.lock().expect("feed lock");
    if first {
        state.tiers = sales
            .tiers
            .iter()
            .map(|t| (t.code.clone(), t.name.clone()))
            .collect();
        state.points.extend(backfilled);
    }
    let changes: Vec<Marker> = sales.changes.iter().map(marker).collect();
    if let Some(last) = changes.last() {
        state.last_audit_id = last.id;
    }
    state.markers.extend(changes.iter().cloned());
    let rates = state.rates(&figures);
    let snapshot = build_snapshot(&feed.slug, &figures, &sales, rates, changes);
    state.push(Point::live(&snapshot));
    let data: Arc<str> = serde_json::to_string(&snapshot)
        .expect("snapshot serialises")
        .into();
    state.latest = Some(data.clone());
    drop(state);
    feed.tx.send_replace(Some(Arc::new(Frame {
        kind: "snapshot",
        data,
    })));
    Ok(())
}

/// Exports the figures of events nobody is watching, every `every`, so that alerts work
/// whether or not anyone has the control room open. Watched events export each second
/// from their feed.
pub async fn export_forever(s: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let db = s.live.pool(&s.db);
    loop {
        tick.tick().await;
        let events = match s.room.events().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "metrics export: cannot list events");
                continue;
            }
        };
        for slug in events {
            if s.live.is_running(&slug) {
                continue;
            }
            let (figures, sales) =
                tokio::join!(s.room.figures(&slug), read_sales(&db, &slug, i64::MAX));
            s.live.metrics.read("redis", figures.is_ok());
            s.live.metrics.read("postgres", sales.is_ok());
            if let (Ok(f), Ok(sales)) = (figures, sales) {
                s.live.metrics.export(&slug, &f, &sales);
            }
        }
    }
}

// ------------------------------------------------------------------ metrics

#[derive(Clone)]
struct LiveMetrics {
    viewers: IntGaugeVec,
    feeds: IntGauge,
    reads: IntCounterVec,
    read_failures: IntCounterVec,
    waiting: IntGaugeVec,
    active: IntGaugeVec,
    max_active: IntGaugeVec,
    rate: IntGaugeVec,
    mode: IntGaugeVec,
    no_shows: IntGaugeVec,
    arrivals: IntCounterVec,
    admitted: IntCounterVec,
    tier_sold: IntGaugeVec,
    tier_held: IntGaugeVec,
    tier_capacity: IntGaugeVec,
    orders_paid: IntCounterVec,
    payments_failed: IntCounterVec,
    deliveries_pending: IntGaugeVec,
    deliveries_failed: IntGaugeVec,
}

const MODES: [Mode; 6] = [
    Mode::Off,
    Mode::Prequeue,
    Mode::On,
    Mode::Paused,
    Mode::SoldOut,
    Mode::Closed,
];

impl LiveMetrics {
    fn new(registry: &Registry) -> Self {
        fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            r.register(Box::new(g.clone())).expect("register");
            g
        }
        fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            r.register(Box::new(c.clone())).expect("register");
            c
        }
        let feeds = IntGauge::new(
            "floodgate_console_live_feeds",
            "Live feeds running (one per watched event)",
        )
        .expect("metric");
        registry
            .register(Box::new(feeds.clone()))
            .expect("register");
        let r = registry;
        let ev = &["event"];
        let tier = &["event", "tier"];
        Self {
            viewers: gauge(
                r,
                "floodgate_console_live_viewers",
                "Open control-room streams",
                ev,
            ),
            feeds,
            reads: counter(
                r,
                "floodgate_console_live_reads_total",
                "Store reads made by live feeds and the exporter",
                &["store"],
            ),
            read_failures: counter(
                r,
                "floodgate_console_live_read_failures_total",
                "Store reads that failed",
                &["store"],
            ),
            waiting: gauge(r, "floodgate_queue_waiting", "People waiting in line", ev),
            active: gauge(
                r,
                "floodgate_queue_active",
                "Admission slots held (admitted, not finished or lapsed)",
                ev,
            ),
            max_active: gauge(r, "floodgate_queue_max_active", "Configured max active", ev),
            rate: gauge(
                r,
                "floodgate_queue_rate_per_minute",
                "Configured admission rate",
                ev,
            ),
            mode: gauge(
                r,
                "floodgate_queue_mode",
                "1 for the queue's current mode",
                &["event", "mode"],
            ),
            no_shows: gauge(
                r,
                "floodgate_queue_no_shows",
                "Admissions that lapsed unclaimed",
                ev,
            ),
            arrivals: counter(
                r,
                "floodgate_queue_arrivals_total",
                "Places taken in the queue (as counted in Redis)",
                ev,
            ),
            admitted: counter(
                r,
                "floodgate_queue_admitted_total",
                "Visitors admitted (the queue's admission pointer)",
                ev,
            ),
            tier_sold: gauge(r, "floodgate_tier_sold", "Seats sold", tier),
            tier_held: gauge(r, "floodgate_tier_held", "Seats on hold", tier),
            tier_capacity: gauge(r, "floodgate_tier_capacity", "Seats in the tier", tier),
            orders_paid: counter(
                r,
                "floodgate_orders_paid_total",
                "Orders paid (as counted in Postgres)",
                ev,
            ),
            payments_failed: counter(
                r,
                "floodgate_payments_failed_total",
                "Failed payment attempts (as counted in Postgres)",
                ev,
            ),
            deliveries_pending: gauge(
                r,
                "floodgate_deliveries_pending",
                "Emails queued, not yet sent",
                ev,
            ),
            deliveries_failed: gauge(
                r,
                "floodgate_deliveries_failed",
                "Emails given up on or bounced",
                ev,
            ),
        }
    }

    fn read(&self, store: &str, ok: bool) {
        self.reads.with_label_values(&[store]).inc();
        if !ok {
            self.read_failures.with_label_values(&[store]).inc();
        }
    }

    fn export(&self, slug: &EventSlug, f: &Figures, s: &Sales) {
        let ev = slug.as_str();
        let set = |g: &IntGaugeVec, v: u64| g.with_label_values(&[ev]).set(v as i64);
        set(&self.waiting, f.waiting());
        set(&self.active, f.active);
        set(&self.max_active, u64::from(f.settings.max_active));
        set(&self.rate, u64::from(f.settings.rate_per_minute));
        set(&self.no_shows, f.no_shows());
        set(&self.deliveries_pending, s.deliveries_pending);
        set(&self.deliveries_failed, s.deliveries_failed);
        for m in MODES {
            self.mode
                .with_label_values(&[ev, m.as_str()])
                .set(i64::from(m == f.settings.mode));
        }
        for t in &s.tiers {
            let labels = [ev, t.code.as_str()];
            self.tier_sold.with_label_values(&labels).set(t.sold);
            self.tier_held.with_label_values(&labels).set(t.held);
            self.tier_capacity
                .with_label_values(&labels)
                .set(t.capacity);
        }
        // Counters follow the database's counts (they only grow there).
        let follow = |c: &IntCounterVec, v: u64| {
            let c = c.with_label_values(&[ev]);
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        follow(&self.arrivals, f.arrived());
        follow(&self.admitted, f.head);
        follow(&self.orders_paid, s.orders_paid);
        follow(&self.payments_failed, s.payments_failed);
    }
}

// ------------------------------------------------------------------ handlers

fn slug(s: &str) -> Result<EventSlug, ConsoleError> {
    EventSlug::parse(s).map_err(|_| orders::Error::NotFound("event").into())
}

/// The event, if it exists and this operator may see it (hosts: only their events).
pub(crate) async fn visible_event(
    db: &PgPool,
    operator: &Operator,
    event: &str,
) -> Result<(EventSlug, orders::events::Event), ConsoleError> {
    let slug = slug(event)?;
    let found = orders::events::by_slug(db, slug.as_str())
        .await?
        .filter(|e| operator.may_see(e.id))
        .ok_or(orders::Error::NotFound("event"))?;
    Ok((slug, found))
}

/// `GET /console/api/events/{event}/live`: the Server-Sent Events stream.
pub async fn stream(
    State(s): State<AppState>,
    operator: Operator,
    Path(event): Path<String>,
) -> Result<Response, ConsoleError> {
    let (slug, _) = visible_event(&s.db, &operator, &event).await?;
    let subscription = s.live.subscribe(&s.db, &s.room, &slug);
    let events = futures::stream::unfold(subscription, |mut sub| async move {
        let (kind, data) = sub.next().await?;
        Some((Ok(SseEvent::default().event(kind).data(&*data)), sub))
    });
    Ok(sse(events))
}

fn sse(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    (
        // Proxies must not buffer the stream (nginx honours this header).
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        // Below the gateway's 30 s upstream read timeout.
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<i64>,
}

/// `GET /console/api/events/{event}/audit`: the event's operator changes, newest first.
pub async fn audit_log(
    State(s): State<AppState>,
    operator: Operator,
    Path(event): Path<String>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ConsoleError> {
    let Query(q) = q?;
    let (_, found) = visible_event(&s.db, &operator, &event).await?;
    let rows = audit::for_event(&s.db, found.id, q.limit.unwrap_or(50).clamp(1, 500)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| AuditEntry {
                summary: summarise(&row.action, row.before.as_ref(), row.after.as_ref()),
                row,
            })
            .collect(),
    ))
}

/// An audit row with its human summary.
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    #[serde(flatten)]
    pub row: AuditRow,
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(minute: i64, arrivals: [u64; 2], admitted: [u64; 2], at_ms: i64) -> Figures {
        Figures {
            settings: AdmissionSettings::default(),
            head: 0,
            tail: 0,
            claimed: 0,
            active: 0,
            unclaimed: 0,
            observed_per_min: 0.0,
            prequeue: 0,
            drawn: false,
            minute,
            arrivals,
            admitted,
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
        }
    }

    #[test]
    fn minute_buckets_are_stitched_across_a_minute_boundary() {
        assert_eq!(counter_growth(10, [5, 40], 10, [9, 40]), 4);
        assert_eq!(counter_growth(10, [5, 40], 11, [3, 8]), 3 + 3);
        assert_eq!(counter_growth(10, [5, 40], 14, [3, 8]), 11);
    }

    #[test]
    fn window_rates_follow_a_change_within_seconds() {
        let mut st = FeedState::default();
        let base = 600_000 * 60; // a minute boundary, in ms
        // 60/min admitted for 10 s (1 per second)...
        for i in 0..=10 {
            let f = figures(
                base / 60_000 + i / 60,
                [0, 0],
                [i as u64, 0],
                base + i * 1000,
            );
            st.rates(&f);
        }
        let (_, adm) = st.rates(&figures(base / 60_000, [0, 0], [11, 0], base + 11_000));
        assert!((adm - 60.0).abs() < 1.0, "{adm}");
        // ...then 600/min (10 per second): within 5 s the rate is well above 300.
        let mut admitted = 11;
        let mut last = 0.0;
        for i in 12..=16 {
            admitted += 10;
            last = st
                .rates(&figures(
                    base / 60_000,
                    [0, 0],
                    [admitted, 0],
                    base + i * 1000,
                ))
                .1;
        }
        assert!(last > 300.0, "{last}");
    }

    #[test]
    fn a_young_feed_uses_the_sliding_minute() {
        let mut st = FeedState::default();
        // 30 s into a minute: all of this minute plus half of the previous one.
        let (arr, _) = st.rates(&figures(100, [10, 40], [0, 0], (100 * 60 + 30) * 1000));
        assert!((arr - 30.0).abs() < 0.01, "{arr}");
    }

    #[test]
    fn changes_are_summarised_field_by_field() {
        let before = json!({"mode": "on", "rate_per_minute": 120, "max_active": 50});
        let after = json!({"mode": "paused", "rate_per_minute": 600, "max_active": 50});
        assert_eq!(
            summarise("admission.update", Some(&before), Some(&after)),
            "mode on → paused, rate 120 → 600/min"
        );
        assert_eq!(
            summarise("event.create", None, Some(&after)),
            "event create"
        );
    }
}
