//! A feed's memory: the last 30 minutes as chart columns, the samples its rates are
//! measured over, and the backfill that fills them when a feed starts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::DateTime;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use waitroom::EventSlug;
use waitroom::figures::Figures;
use waitroom::queue::Waitroom;
use waitroom::settings::Mode;

use super::snapshot::{LiveSnapshot, Marker, Sales, sliding_minute};
use super::{RATE_MIN_SPAN_MS, RATE_WINDOW_MS, WINDOW_SECONDS};
use crate::ConsoleError;

/// One point of the charts. Points reconstructed from minute counters when a feed starts
/// know less than live ones; what they do not know is `None` (a gap on the chart).
#[derive(Clone, Debug, Default)]
pub(super) struct Point {
    pub(super) t: i64,
    pub(super) waiting: Option<u64>,
    pub(super) arrivals_per_min: Option<f64>,
    pub(super) admitted_per_min: Option<f64>,
    pub(super) rate_per_minute: Option<u32>,
    pub(super) active: Option<u64>,
    pub(super) max_active: Option<u32>,
    pub(super) converted_per_min: Option<u64>,
    pub(super) payments_failed_per_min: Option<u64>,
    pub(super) deliveries_pending: Option<u64>,
    pub(super) deliveries_failed: Option<u64>,
    pub(super) sold: HashMap<String, i64>,
}

impl Point {
    pub(super) fn live(s: &LiveSnapshot) -> Self {
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
pub(super) struct Sample {
    pub(super) at_ms: i64,
    pub(super) arrivals: u64,
    pub(super) admitted: u64,
}

#[derive(Default)]
pub(super) struct FeedState {
    pub(super) tiers: Vec<(String, String)>,
    pub(super) points: VecDeque<Point>,
    pub(super) markers: VecDeque<Marker>,
    pub(super) last_audit_id: i64,
    /// The previous reading of the minute counters: (minute, arrivals, admitted).
    pub(super) last_counters: Option<(i64, [u64; 2], [u64; 2])>,
    pub(super) cumulative: (u64, u64),
    pub(super) samples: VecDeque<Sample>,
    pub(super) latest: Option<Arc<str>>,
}

/// How much a pair of minute buckets grew between two readings a second or so apart.
pub(super) fn counter_growth(prev_minute: i64, prev: [u64; 2], minute: i64, now: [u64; 2]) -> u64 {
    match minute - prev_minute {
        0 => now[0].saturating_sub(prev[0]),
        1 => now[1].saturating_sub(prev[0]) + now[0],
        // A gap of minutes (a stalled feed): count what the buckets show.
        _ => now[0] + now[1],
    }
}

impl FeedState {
    /// Advances the cumulative counts and returns (arrivals, admitted) per minute.
    pub(super) fn rates(&mut self, f: &Figures) -> (f64, f64) {
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

    pub(super) fn push(&mut self, point: Point) {
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
    pub(super) fn history(&self) -> String {
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
pub(super) async fn backfill(
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
