//! The snapshot a feed publishes each second: the queue's figures, sales per tier, the
//! funnel, checkout's pace, and the operator's changes as chart markers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::figures::Figures;
use waitroom::settings::{AdmissionSettings, Mode};

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
    /// Admitted, never held a seat, and no longer can: admitted less those who held and
    /// those whose slot is still open without a hold (`waitroom`'s own figure, exported
    /// as a metric, counts only slots that lapsed unclaimed).
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
    /// Why nobody (or hardly anybody) is being let in while people wait, in words for
    /// the control room's banner; `None` while admission flows.
    pub blocked: Option<String>,
    /// Operator changes made since the previous snapshot.
    pub changes: Vec<Marker>,
}

/// Why admission is stopped or throttled while people wait, if it is.
fn blocked(settings: &AdmissionSettings, f: &Figures, admitted_per_min: f64) -> Option<String> {
    if f.waiting() == 0 {
        return None;
    }
    match settings.mode {
        Mode::Paused => {
            Some("Paused: nobody is being admitted. People in line keep their places.".into())
        }
        Mode::On if settings.rate_per_minute == 0 => {
            Some("0 admitted/min — the admission rate is 0.".into())
        }
        Mode::On if f.active >= u64::from(settings.max_active) => Some(format!(
            "{} admitted/min — all {} checkout slots in use: people get in only as checkouts finish.",
            admitted_per_min.round(),
            settings.max_active
        )),
        _ => None,
    }
}

/// What Postgres says, in one aggregate query.
#[derive(Clone, Debug, Default)]
pub(super) struct Sales {
    pub(super) event_id: Option<Uuid>,
    pub(super) tiers: Vec<TierFigures>,
    pub(super) orders_paid: u64,
    pub(super) paid_last_min: u64,
    pub(super) holds: u64,
    /// Admissions that made at least one hold.
    pub(super) held_admissions: u64,
    /// Admissions holding seats right now.
    pub(super) holding: u64,
    pub(super) payments_failed: u64,
    pub(super) payments_failed_last_min: u64,
    pub(super) deliveries_pending: u64,
    pub(super) deliveries_failed: u64,
    pub(super) delivered: u64,
    pub(super) changes: Vec<Change>,
}

/// An audit row as the aggregate query returns it (JSON).
#[derive(Clone, Debug, Deserialize)]
pub(super) struct Change {
    pub(super) id: i64,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) before: Option<Value>,
    pub(super) after: Option<Value>,
    pub(super) reason: Option<String>,
    pub(super) at: DateTime<Utc>,
}

pub(super) const AGGREGATE: &str = r#"
WITH ev AS (SELECT id FROM events WHERE slug = $1)
SELECT
  (SELECT id FROM ev) AS event_id,
  (SELECT coalesce(json_agg(json_build_object('code', t.code, 'name', t.name, 'sold', t.sold,
            'held', t.held, 'capacity', t.capacity) ORDER BY t.position), '[]'::json)
     FROM tiers t WHERE t.event_id = (SELECT id FROM ev)) AS tiers,
  o.paid, o.paid_last_min,
  hs.holds, hs.held_admissions, hs.holding,
  p.failed, p.failed_last_min,
  d.pending, d.failed AS deliveries_failed, d.delivered,
  (SELECT coalesce(json_agg(c ORDER BY c.id), '[]'::json) FROM (
     SELECT a.id, a.actor, a.action, a.before, a.after, a.reason, a.at
       FROM operator_audit a
      WHERE a.event_id = (SELECT id FROM ev) AND a.id > $2
        AND a.at > now() - interval '30 minutes'
        -- An export changes nothing on the sale: not a marker on the charts.
        AND a.action NOT LIKE '%.refused' AND a.action NOT LIKE 'export.%'
      ORDER BY a.id DESC LIMIT 50) c) AS changes
FROM
  (SELECT count(*) AS holds,
          count(DISTINCT h.admission_jti) FILTER (WHERE h.admission_seq IS NOT NULL)
            AS held_admissions,
          count(*) FILTER (WHERE h.status = 'active' AND h.admission_seq IS NOT NULL) AS holding
     FROM holds h
    WHERE h.tier_id IN (SELECT id FROM tiers WHERE event_id = (SELECT id FROM ev))) hs,
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

pub(super) fn count(row: &sqlx::postgres::PgRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
}

/// The one query a feed makes per second. `after_audit` is the newest audit row the
/// feed already has (`i64::MAX` for none at all).
pub(super) async fn read_sales(
    db: &PgPool,
    slug: &EventSlug,
    after_audit: i64,
) -> Result<Sales, sqlx::Error> {
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
        held_admissions: count(&row, "held_admissions")?,
        holding: count(&row, "holding")?,
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

pub(super) fn marker(c: &Change) -> Marker {
    Marker {
        id: c.id,
        at: c.at,
        actor: c.actor.clone(),
        action: c.action.clone(),
        summary: summarise(&c.action, c.before.as_ref(), c.after.as_ref()),
        // One feed is shared by every viewer of the event, hosts among them: an address
        // typed into a fix's reason is masked for all (a chart marker needs none).
        reason: c
            .reason
            .as_deref()
            .map(|r| crate::privacy::mask_in(r).into_owned()),
    }
}

/// A per-minute rate from the two newest minute buckets: all of this minute plus the
/// part of the previous minute that is still inside the last 60 s.
pub(super) fn sliding_minute(now: u64, previous: u64, at: DateTime<Utc>) -> f64 {
    let into = f64::from(at.timestamp().rem_euclid(60) as u32)
        + f64::from(at.timestamp_subsec_millis()) / 1000.0;
    now as f64 + previous as f64 * (1.0 - into / 60.0)
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(super) fn build_snapshot(
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
        no_shows: f
            .head
            .saturating_sub(s.held_admissions)
            .saturating_sub(f.active.saturating_sub(s.holding)),
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
        blocked: blocked(&settings, f, rates.1),
        settings,
        changes,
    }
}
