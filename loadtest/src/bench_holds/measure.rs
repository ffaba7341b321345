//! Measuring a case: the clients' tally, the machine's CPU over the run, and what the
//! database says afterwards, which must agree with what the clients were told.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use sqlx::PgPool;
use uuid::Uuid;

use super::Measurement;

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Machine-wide CPU use over a window, and the load average at its start.
pub(super) struct CpuWindow {
    start: Option<(u64, u64)>,
    load: f64,
}

impl CpuWindow {
    pub(super) fn start() -> Self {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            start: cpu_ticks(),
            load,
        }
    }

    /// (busy %, load average before).
    pub(super) fn finish(self) -> (f64, f64) {
        let busy = match (self.start, cpu_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                round2(100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => 0.0,
        };
        (busy, self.load)
    }
}

/// (busy, total) jiffies over all CPUs; idle and iowait count as not busy.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

pub(super) async fn db_now(pool: &PgPool) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?)
}

/// Holds per second of the run, bucketed by `created_at` (the batch's transaction start).
pub(super) async fn timeline(
    pool: &PgPool,
    tier: Uuid,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT floor(extract(epoch FROM created_at - $2))::int8 AS s, count(*)
         FROM holds WHERE tier_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 1",
    )
    .bind(tier)
    .bind(since)
    .fetch_all(pool)
    .await
    .context("reading the timeline")?;
    let len = rows.last().map_or(0, |(s, _)| *s as usize + 1);
    let mut out = vec![0; len];
    for (s, n) in rows {
        out[s as usize] = n;
    }
    Ok(out)
}

/// Latencies (µs) → (p50, p99) in ms.
fn percentiles(latencies: &mut [u32]) -> (Option<f64>, Option<f64>) {
    if latencies.is_empty() {
        return (None, None);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        round2(f64::from(latencies[i]) / 1000.0)
    };
    (Some(at(0.50)), Some(at(0.99)))
}

/// What the database says after a case, checked against what the clients were told.
pub(super) struct Ledger {
    held: i64,
    holds: i64,
    audit: i64,
    pub(super) batches: i64,
}

pub(super) async fn ledger(pool: &PgPool, tier: Uuid) -> anyhow::Result<Ledger> {
    let (held, holds, audit, batches): (i32, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT held FROM tiers WHERE id = $1),
                (SELECT count(*) FROM holds WHERE tier_id = $1),
                (SELECT count(*) FROM order_events WHERE action = 'hold.create'),
                (SELECT count(DISTINCT xmin::text) FROM holds WHERE tier_id = $1)",
    )
    .bind(tier)
    .fetch_one(pool)
    .await
    .context("reading the ledger")?;
    Ok(Ledger {
        held: i64::from(held),
        holds,
        audit,
        batches,
    })
}

pub(super) fn check_ledger(case: &str, l: &Ledger, expected: u64) -> anyhow::Result<()> {
    let expected = expected as i64;
    ensure!(
        l.held == expected && l.holds == expected && l.audit == expected,
        "({case}) the clients were told of {expected} holds but tiers.held = {}, \
         hold rows = {}, hold.create audit rows = {}",
        l.held,
        l.holds,
        l.audit
    );
    Ok(())
}

#[derive(Default)]
pub(super) struct ClientTally {
    pub(super) ok: u64,
    failed: u64,
    pub(super) latencies: Vec<u32>,
    errors: BTreeMap<String, u64>,
    pub(super) signed_inline: u64,
}

impl ClientTally {
    pub(super) fn merge(&mut self, other: ClientTally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.signed_inline += other.signed_inline;
    }

    pub(super) fn error(&mut self, what: String) {
        self.failed += 1;
        *self.errors.entry(what).or_default() += 1;
    }
}

pub(super) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

pub(super) fn measurement(
    (case, description): (&'static str, &'static str),
    tally: ClientTally,
    (elapsed, (machine_cpu_busy_pct, load_avg_before)): (Duration, (f64, f64)),
    batches: u64,
    mut notes: Vec<String>,
    timeline: Vec<i64>,
) -> Measurement {
    let mut latencies = tally.latencies;
    let avg = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(|&l| f64::from(l)).sum::<f64>() / latencies.len() as f64 / 1000.0
    };
    let (p50, p99) = percentiles(&mut latencies);
    for (e, n) in &tally.errors {
        notes.push(format!("{n} × {e}"));
    }
    let secs = elapsed.as_secs_f64();
    Measurement {
        case,
        description,
        per_second: round2(tally.ok as f64 / secs),
        committed: tally.ok,
        failed: tally.failed,
        elapsed_seconds: round2(secs),
        latency_avg_ms: round2(avg),
        latency_p50_ms: p50,
        latency_p99_ms: p99,
        batches: Some(batches),
        avg_batch: (batches > 0).then(|| round2(tally.ok as f64 / batches as f64)),
        batch_ms: (batches > 0).then(|| round2(secs * 1000.0 / batches as f64)),
        timeline: Some(timeline),
        machine_cpu_busy_pct,
        load_avg_before,
        notes,
    }
}
