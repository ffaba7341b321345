//! `loadtest bench-holds`: holds committed per second on one hot tier, against the
//! bare single-row update that caps a transaction-per-hold design, in one run.
//!
//! Four measurements, one after the other, each with the same clients and duration:
//! - (a) pgbench: `UPDATE bench_tier SET sold = sold + 1 WHERE id = 1 AND sold < capacity`
//!   in autocommit, against a scratch table in a scratch database;
//! - (b) pgbench: that UPDATE and an INSERT of a hold row, one transaction per hold;
//! - (c) `orders::holds::HoldDesk` in this process (group commit, its default writers
//!   per tier), on a fresh migrated database with one event and one tier of huge
//!   capacity; (c2) the same with two writers taking turns, to show what a second buys;
//! - (d) the orders router served on 127.0.0.1:0 in this process, clients POSTing
//!   `/api/events/{slug}/holds` with distinct signed admission tokens.
//!
//! (c) and (d) are checked afterwards: the tier's `held`, the hold rows and the audit
//! rows must all equal the holds the clients were told about, or the bench fails. The
//! number of distinct inserting transactions (`xmin`) of the hold rows gives the number
//! of group commits, hence the average batch size. Scratch databases are dropped and
//! the Redis prefix purged on the way out, also on error and on Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use orders::buyers::{BuyerName, Email};
use orders::config::{OrdersConfig, PaymentsConfig};
use orders::holds::{HoldDesk, HoldRequest};
use platform::env::Secret;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;
use waitroom::tokens::{
    AdmissionClaims, TokenKind, TokenSigner, TokenVerifier, audience, generate_keypair,
};

/// What `bench-holds` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub seconds: u64,
    pub clients: usize,
    pub pgbench_threads: usize,
    pub database_url: String,
    pub redis_url: String,
    pub pgbench: Option<PathBuf>,
    pub out: PathBuf,
}

/// The issue's bar: holds per second at least this many times the bare UPDATE.
const GOAL: f64 = 5.0;

const UPDATE_SQL: &str =
    "UPDATE bench_tier SET sold = sold + 1 WHERE id = 1 AND sold < capacity;\n";
const UPDATE_INSERT_SQL: &str = "BEGIN;
UPDATE bench_tier SET sold = sold + 1 WHERE id = 1 AND sold < capacity;
INSERT INTO bench_hold (tier_id, quantity, admission_jti, buyer_email, buyer_name, expires_at)
    VALUES (1, 1, gen_random_uuid()::text, 'ada@example.org', 'Ada Lovelace', now() + interval '10 minutes');
END;
";
const SCRATCH_SCHEMA: &str = "
CREATE TABLE bench_tier (
    id       integer PRIMARY KEY,
    capacity integer NOT NULL,
    sold     integer NOT NULL DEFAULT 0,
    CHECK (sold <= capacity)
);
INSERT INTO bench_tier (id, capacity) VALUES (1, 2000000000);
CREATE TABLE bench_hold (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tier_id       integer NOT NULL REFERENCES bench_tier (id),
    quantity      integer NOT NULL,
    admission_jti text NOT NULL,
    buyer_email   text NOT NULL,
    buyer_name    text NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX bench_hold_one_active ON bench_hold (admission_jti) WHERE status = 'active';
";

const NAME: &str = "Ada Lovelace";

/// Each benchmarked hold is a different buyer, as in an on-sale: one e-mail would meet
/// the per-buyer cap after a few holds.
fn buyer_email(seq: impl std::fmt::Display) -> String {
    format!("buyer-{seq}@example.org")
}
/// Capacity set on the benchmarked tier (the event API caps new tiers at a million).
const HUGE_CAPACITY: i32 = 2_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub case: &'static str,
    pub description: &'static str,
    /// Holds (or transactions) committed per second.
    pub per_second: f64,
    pub committed: u64,
    pub failed: u64,
    pub elapsed_seconds: f64,
    pub latency_avg_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
    /// Group commits (distinct inserting transactions of the hold rows), (c) and (d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_batch: Option<f64>,
    /// Mean wall time per group commit (elapsed / batches), (c) and (d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_ms: Option<f64>,
    /// The whole machine's CPU use during the case (this bench, Postgres and anything
    /// else running), from /proc/stat.
    pub machine_cpu_busy_pct: f64,
    /// The 1-minute load average just before the case.
    pub load_avg_before: f64,
    /// Holds committed in each second of the run, by their transaction's start, (c)
    /// and (d): shows whether the rate holds up as the event's holds pile up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<i64>>,
    /// Anything worth knowing about the run (errors seen, tokens signed inline, ...).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub date: String,
    pub command: String,
    pub seconds: u64,
    pub clients: usize,
    pub pgbench_threads: usize,
    pub cpus: usize,
    pub postgres: BTreeMap<String, String>,
    pub pgbench: String,
    pub results: Vec<Measurement>,
    pub ratios: BTreeMap<String, f64>,
    pub goal: f64,
    pub goal_met: BTreeMap<String, bool>,
}

/// Runs the whole bench; scratch state is cleaned up when this future ends or is
/// dropped (the scratch databases drop themselves, the Redis prefix is purged).
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    ensure!(opts.seconds >= 1, "--seconds must be at least 1");
    ensure!(opts.clients >= 1, "--clients must be at least 1");
    only_loopback("database URL", &opts.database_url)?;
    only_loopback("Redis URL", &opts.redis_url)?;
    let server = server_url(&opts.database_url);
    let pgbench = match &opts.pgbench {
        Some(p) => p.clone(),
        None => find_pgbench()?,
    };
    let work_dir = opts
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;

    let postgres = server_settings(&server).await?;
    eprintln!(
        "bench-holds: {} clients, {} s per case, Postgres {}, pgbench {}",
        opts.clients,
        opts.seconds,
        postgres
            .get("server_version")
            .map(String::as_str)
            .unwrap_or("?"),
        pgbench.display()
    );

    let mut results = Vec::new();
    {
        let scratch = ScratchDb::create(&server, false, 2).await?;
        sqlx::raw_sql(SCRATCH_SCHEMA)
            .execute(scratch.pool())
            .await
            .context("creating the scratch tables")?;
        let a = pgbench_case(
            &opts,
            &pgbench,
            &scratch,
            &work_dir.join("bench-holds-update.sql"),
            UPDATE_SQL,
            ("a", "pgbench: bare UPDATE of the hot row (autocommit)"),
        )
        .await?;
        eprintln!("  (a) {:>9.1}/s", a.per_second);
        results.push(a);
        let b = pgbench_case(
            &opts,
            &pgbench,
            &scratch,
            &work_dir.join("bench-holds-update-insert.sql"),
            UPDATE_INSERT_SQL,
            (
                "b",
                "pgbench: UPDATE + INSERT hold row, one transaction per hold",
            ),
        )
        .await?;
        eprintln!("  (b) {:>9.1}/s", b.per_second);
        results.push(b);
    }

    let c2 = desk_case(&opts, &server, 2).await?;
    eprintln!(
        "  (c2) {:>8.1}/s (avg batch {:.1})",
        c2.per_second,
        c2.avg_batch.unwrap_or(0.0)
    );
    results.push(c2);
    let c = desk_case(&opts, &server, orders::holds::DEFAULT_WRITERS_PER_TIER).await?;
    eprintln!(
        "  (c) {:>9.1}/s (avg batch {:.1})",
        c.per_second,
        c.avg_batch.unwrap_or(0.0)
    );
    let c_rate = c.per_second;
    results.push(c);

    let d = http_case(&opts, &server, c_rate).await?;
    eprintln!(
        "  (d) {:>9.1}/s (avg batch {:.1})",
        d.per_second,
        d.avg_batch.unwrap_or(0.0)
    );
    results.push(d);

    let rate = |case: &str| {
        results
            .iter()
            .find(|m| m.case == case)
            .map_or(0.0, |m| m.per_second)
    };
    let mut ratios = BTreeMap::new();
    for (num, den) in [
        ("c", "a"),
        ("c2", "a"),
        ("d", "a"),
        ("c", "b"),
        ("d", "b"),
        ("c2", "c"),
    ] {
        let r = if rate(den) > 0.0 {
            rate(num) / rate(den)
        } else {
            0.0
        };
        ratios.insert(format!("{num}/{den}"), round2(r));
    }
    let goal_met = ratios
        .iter()
        .filter(|(k, _)| k.ends_with("/a") && *k != "c2/a")
        .map(|(k, v)| (k.clone(), *v >= GOAL))
        .collect();
    Ok(Report {
        bench: "bench-holds",
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: format!(
            "SQLX_OFFLINE=true cargo run --release -p loadtest -- bench-holds --seconds {} --clients {}",
            opts.seconds, opts.clients
        ),
        seconds: opts.seconds,
        clients: opts.clients,
        pgbench_threads: opts.pgbench_threads,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        postgres,
        pgbench: pgbench.display().to_string(),
        results,
        ratios,
        goal: GOAL,
        goal_met,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The bench only ever talks to this machine.
fn only_loopback(what: &str, url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{what} {url:?}"))?;
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        other => bail!("{what} must point at 127.0.0.1, not {other:?}"),
    }
}

/// `postgres://user@host:port/db` → `postgres://user@host:port`.
fn server_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.rsplit_once('/') {
        Some((server, _db)) if server.contains("//") && !server.ends_with('/') => server.to_owned(),
        _ => url.trim_end_matches('/').to_owned(),
    }
}

/// The newest `/usr/lib/postgresql/*/bin/pgbench`, else `pgbench` on the PATH.
fn find_pgbench() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin/pgbench");
            bin.is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbench"))
        .find(|p| p.is_file());
    on_path.context(
        "pgbench not found (install postgresql-client / postgresql-<version>, or pass --pgbench)",
    )
}

async fn server_settings(server: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let admin = admin_pool(server).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
           ('server_version', 'synchronous_commit', 'fsync', 'wal_sync_method',
            'commit_delay', 'shared_buffers', 'max_connections', 'full_page_writes')",
    )
    .fetch_all(&admin)
    .await
    .context("reading server settings")?;
    admin.close().await;
    Ok(rows.into_iter().collect())
}

async fn admin_pool(server: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connecting to {server}/postgres"))
}

/// A scratch database, dropped (with its connections) when this value is dropped —
/// on success, on error and on unwinding alike.
struct ScratchDb {
    pool: Option<PgPool>,
    name: String,
    url: String,
    server: String,
}

impl ScratchDb {
    async fn create(server: &str, migrate: bool, max_connections: u32) -> anyhow::Result<Self> {
        let name = format!("fg_bench_{}", Uuid::new_v4().simple());
        let admin = admin_pool(server).await?;
        // The name is ours (a uuid), not input: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .context("creating a scratch database")?;
        admin.close().await;
        // From here on the guard exists, so a failure below still drops the database.
        let mut db = Self {
            pool: None,
            url: format!("{server}/{name}"),
            name,
            server: server.to_owned(),
        };
        let pool = platform::db::connect(&db.url, max_connections)
            .await
            .context("connecting to the scratch database")?;
        if migrate {
            platform::db::migrate(&pool)
                .await
                .context("migrating the scratch database")?;
        }
        db.pool = Some(pool);
        Ok(db)
    }

    fn pool(&self) -> &PgPool {
        self.pool.as_ref().expect("pool is set once created")
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        let pool = self.pool.take();
        // Drop cannot await: a short-lived runtime on its own thread does the clean-up,
        // and FORCE ends whatever connections are left.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                drop(pool);
                match admin_pool(&server).await {
                    Ok(admin) => {
                        let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                        if let Err(e) = dropped {
                            eprintln!("warning: could not drop scratch database {name}: {e}");
                        }
                        admin.close().await;
                    }
                    Err(e) => eprintln!("warning: could not drop scratch database {name}: {e:#}"),
                }
            });
        })
        .join();
    }
}

/// What pgbench printed that we use.
#[derive(Debug, Default, PartialEq)]
struct PgbenchSummary {
    tps: f64,
    processed: u64,
    failed: u64,
    latency_avg_ms: f64,
}

fn parse_pgbench(stdout: &str) -> anyhow::Result<PgbenchSummary> {
    let mut s = PgbenchSummary::default();
    let mut tps = None;
    for line in stdout.lines().map(str::trim) {
        let number = |rest: &str| -> Option<f64> { rest.split_whitespace().next()?.parse().ok() };
        if let Some(rest) = line.strip_prefix("tps = ") {
            tps = number(rest);
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            s.processed = number(rest).unwrap_or(0.0) as u64;
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            s.failed = number(rest).unwrap_or(0.0) as u64;
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            s.latency_avg_ms = number(rest).unwrap_or(0.0);
        }
    }
    s.tps = tps.context("no \"tps = \" line in pgbench's output")?;
    Ok(s)
}

/// CHECKPOINT before each case so none of them pays for another's dirty pages.
async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        eprintln!("warning: CHECKPOINT failed ({e}); continuing");
    }
}

async fn pgbench_case(
    opts: &Options,
    pgbench: &Path,
    scratch: &ScratchDb,
    script_path: &Path,
    script: &str,
    (case, description): (&'static str, &'static str),
) -> anyhow::Result<Measurement> {
    std::fs::write(script_path, script)
        .with_context(|| format!("writing {}", script_path.display()))?;
    let sold_before: i32 = sqlx::query_scalar("SELECT sold FROM bench_tier WHERE id = 1")
        .fetch_one(scratch.pool())
        .await?;
    checkpoint(scratch.pool()).await;
    let cpu = CpuWindow::start();
    let threads = opts.pgbench_threads.clamp(1, opts.clients);
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &opts.clients.to_string()])
        .args(["--jobs", &threads.to_string()])
        .args(["--time", &opts.seconds.to_string()])
        .arg("--file")
        .arg(script_path)
        .arg(&scratch.url)
        .kill_on_drop(true);
    let bound = Duration::from_secs(opts.seconds + 60);
    let output = tokio::time::timeout(bound, cmd.output())
        .await
        .with_context(|| format!("pgbench did not finish within {bound:?}"))?
        .with_context(|| format!("running {}", pgbench.display()))?;
    let (machine_cpu_busy_pct, load_avg_before) = cpu.finish();
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = parse_pgbench(&stdout)?;
    let sold_after: i32 = sqlx::query_scalar("SELECT sold FROM bench_tier WHERE id = 1")
        .fetch_one(scratch.pool())
        .await?;
    let moved = u64::try_from(sold_after - sold_before).unwrap_or(0);
    ensure!(
        moved == summary.processed,
        "({case}) pgbench reports {} transactions but the row moved by {moved}",
        summary.processed
    );
    Ok(Measurement {
        case,
        description,
        per_second: round2(summary.tps),
        committed: summary.processed,
        failed: summary.failed,
        elapsed_seconds: opts.seconds as f64,
        latency_avg_ms: round2(summary.latency_avg_ms),
        latency_p50_ms: None,
        latency_p99_ms: None,
        batches: None,
        avg_batch: None,
        batch_ms: None,
        timeline: None,
        machine_cpu_busy_pct,
        load_avg_before,
        notes: vec![format!(
            "pgbench --protocol prepared --client {} --jobs {threads} --time {}; tps excludes connection time",
            opts.clients, opts.seconds
        )],
    })
}

/// One event (queue on) with one tier `ga` whose capacity is then made huge.
async fn create_event(pool: &PgPool, slug: &str) -> anyhow::Result<(Uuid, Uuid)> {
    let req: orders::events::NewEventRequest = serde_json::from_value(serde_json::json!({
        "slug": slug, "title": format!("Bench {slug}"),
        "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "tiers": [{"code": "ga", "name": "General admission", "price_cents": 2500,
                   "currency": "EUR", "capacity": 1_000_000, "max_per_order": 10}],
        "queue": {"mode": "on", "rate_per_minute": 600, "max_active": 5000}
    }))?;
    let new = req.parse()?;
    let mut tx = pool.begin().await?;
    let event = orders::events::create(&mut tx, &new).await?;
    tx.commit().await?;
    let tier: Uuid = sqlx::query_scalar(
        "UPDATE tiers SET capacity = $2 WHERE event_id = $1 AND code = 'ga' RETURNING id",
    )
    .bind(event.id)
    .bind(HUGE_CAPACITY)
    .fetch_one(pool)
    .await?;
    Ok((event.id, tier))
}

/// Machine-wide CPU use over a window, and the load average at its start.
struct CpuWindow {
    start: Option<(u64, u64)>,
    load: f64,
}

impl CpuWindow {
    fn start() -> Self {
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
    fn finish(self) -> (f64, f64) {
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

async fn db_now(pool: &PgPool) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?)
}

/// Holds per second of the run, bucketed by `created_at` (the batch's transaction start).
async fn timeline(
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
struct Ledger {
    held: i64,
    holds: i64,
    audit: i64,
    batches: i64,
}

async fn ledger(pool: &PgPool, tier: Uuid) -> anyhow::Result<Ledger> {
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

fn check_ledger(case: &str, l: &Ledger, expected: u64) -> anyhow::Result<()> {
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
struct ClientTally {
    ok: u64,
    failed: u64,
    latencies: Vec<u32>,
    errors: BTreeMap<String, u64>,
    signed_inline: u64,
}

impl ClientTally {
    fn merge(&mut self, other: ClientTally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.signed_inline += other.signed_inline;
    }

    fn error(&mut self, what: String) {
        self.failed += 1;
        *self.errors.entry(what).or_default() += 1;
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn measurement(
    (case, description): (&'static str, &'static str),
    tally: ClientTally,
    (elapsed, (machine_cpu_busy_pct, load_avg_before)): (Duration, (f64, f64)),
    batches: u64,
    mut notes: Vec<String>,
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
        timeline: None,
        machine_cpu_busy_pct,
        load_avg_before,
        notes,
    }
}

fn hold_request(event_id: Uuid, tier_id: Uuid, seq: i64) -> anyhow::Result<HoldRequest> {
    Ok(HoldRequest {
        event_id,
        tier_id,
        quantity: 1,
        jti: Uuid::new_v4().to_string(),
        seq: Some(seq),
        email: Email::parse(&buyer_email(seq))?,
        name: BuyerName::parse(NAME)?,
        ttl_seconds: 600,
    })
}

/// (c): the hold writer called directly, `clients` tasks in a loop, with its default
/// writers per tier; (c2) with two.
async fn desk_case(opts: &Options, server: &str, writers: usize) -> anyhow::Result<Measurement> {
    let case = if writers == orders::holds::DEFAULT_WRITERS_PER_TIER {
        "c"
    } else {
        "c2"
    };
    let scratch = ScratchDb::create(server, true, 8).await?;
    let pool = scratch.pool().clone();
    let (event_id, tier_id) = create_event(&pool, "bench-desk").await?;
    let desk = HoldDesk::with_writers(pool.clone(), writers);
    // One hold before the clock starts: the writer task and its connection exist.
    desk.hold(hold_request(event_id, tier_id, 0)?).await?;
    let warm = ledger(&pool, tier_id).await?;
    checkpoint(&pool).await;

    let seq = Arc::new(AtomicUsize::new(1));
    let db_start = db_now(&pool).await?;
    let cpu = CpuWindow::start();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let desk = desk.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed) as i64;
                let request = match hold_request(event_id, tier_id, n) {
                    Ok(r) => r,
                    Err(e) => {
                        tally.error(e.to_string());
                        break;
                    }
                };
                let t0 = Instant::now();
                match desk.hold(request).await {
                    Ok(_) => {
                        tally.ok += 1;
                        tally.latencies.push(micros(t0.elapsed()));
                    }
                    Err(e) => tally.error(e.to_string()),
                }
            }
            tally
        }));
    }
    let mut tally = ClientTally::default();
    for t in tasks {
        tally.merge(t.await.context("a client task panicked")?);
    }
    let elapsed = (start.elapsed(), cpu.finish());

    let after = ledger(&pool, tier_id).await?;
    check_ledger(case, &after, tally.ok + 1)?;
    let batches = u64::try_from(after.batches - warm.batches).unwrap_or(0);
    let timeline = timeline(&pool, tier_id, db_start).await?;
    let notes = vec![format!(
        "{} tokio tasks calling HoldDesk::hold; pool of 8; MAX_BATCH {}; {writers} writer(s) per tier",
        opts.clients,
        orders::holds::MAX_BATCH
    )];
    drop(desk);
    drop(pool);
    let mut m = measurement(
        (
            case,
            if case == "c" {
                "orders HoldDesk in-process (group commit, default writers per tier)"
            } else {
                "orders HoldDesk in-process, two writers per tier taking turns"
            },
        ),
        tally,
        elapsed,
        batches,
        notes,
    );
    m.timeline = Some(timeline);
    Ok(m)
}

/// (d): the orders router on 127.0.0.1:0, `clients` HTTP clients.
async fn http_case(
    opts: &Options,
    server: &str,
    expected_rate: f64,
) -> anyhow::Result<Measurement> {
    let scratch = ScratchDb::create(server, true, 20).await?;
    let pool = scratch.pool().clone();
    let slug_text = format!("bench-http-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let slug = EventSlug::parse(&slug_text)?;
    let (_, tier_id) = create_event(&pool, &slug_text).await?;
    let room = Waitroom::connect(&RedisConfig {
        url: opts.redis_url.clone(),
        prefix: format!("bench-{}", Uuid::new_v4().simple()),
    })
    .await
    .context("connecting to Redis")?;
    let purge = PurgeOnDrop(Some((room.clone(), slug.clone())));
    let result = http_case_inner(
        opts,
        (&pool, &scratch.url),
        tier_id,
        &room,
        &slug,
        expected_rate,
    )
    .await;
    purge.now().await;
    drop(pool);
    drop(scratch);
    result
}

/// Purges the event's Redis keys: `now()` on the way out, or from `Drop` on the error
/// path (or Ctrl-C), as a task on the runtime.
struct PurgeOnDrop(Option<(Waitroom, EventSlug)>);

impl PurgeOnDrop {
    async fn now(mut self) {
        if let Some((room, slug)) = self.0.take()
            && let Err(e) = room.purge(&slug).await
        {
            eprintln!("warning: could not purge Redis keys of {slug}: {e}");
        }
    }
}

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if let Some((room, slug)) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = room.purge(&slug).await;
            });
        }
    }
}

async fn http_case_inner(
    opts: &Options,
    (pool, database_url): (&PgPool, &str),
    tier_id: Uuid,
    room: &Waitroom,
    slug: &EventSlug,
    expected_rate: f64,
) -> anyhow::Result<Measurement> {
    let (sk, pk) = generate_keypair();
    let signer = TokenSigner::from_pem("bench", sk.as_bytes())?;
    let verifier = TokenVerifier::new().with_key("bench", pk.as_bytes())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Payments are never called by a hold; the base is a closed port on this host.
    let payments_base = "http://127.0.0.1:9";
    let config = OrdersConfig {
        database_url: database_url.to_owned(),
        listen: addr.to_string(),
        public_url: format!("http://{addr}"),
        redis: RedisConfig {
            url: opts.redis_url.clone(),
            prefix: room.prefix().to_owned(),
        },
        payments: PaymentsConfig {
            provider: "sandbox",
            api_base: payments_base.to_owned(),
            pay_base: payments_base.to_owned(),
            secret_key: Secret::new("sk_test_floodgate"),
            webhook_secret: Secret::new("whsec_bench"),
        },
        order_token_secret: Secret::new("bench-order-token-secret-0123456789abcdef"),
        reconcile_after: Duration::from_secs(60),
        workers: false,
        hold_writers_per_tier: 1,
        holds_per_buyer: orders::holds::DEFAULT_HOLDS_PER_BUYER,
    };
    // Built as the orders binary builds it (its own pool of the same size).
    let app = orders::startup::Application::on(listener, config, verifier).await?;
    let (server, shutdown) = platform::shutdown::Shutdown::new();
    app.spawn(shutdown);
    let url = format!("http://{addr}/api/events/{slug}/holds");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Tokens are signed before the clock starts (enough for 1.3× the desk's rate), so
    // the clients' signing does not compete with the server for the two cores.
    let wanted =
        ((expected_rate * opts.seconds as f64 * 1.3) as usize + 100 * opts.clients).min(2_000_000);
    let tokens = Arc::new(sign_tokens(&signer, slug, wanted).await?);

    // One hold before the clock starts: connections, catalog cache and writer exist.
    let warm = post_hold(&http, &url, &tokens[0], 0).await?;
    ensure!(
        warm.0 == reqwest::StatusCode::CREATED,
        "(d) warm-up hold answered {}: {}",
        warm.0,
        warm.1
    );
    let warm_ledger = ledger(pool, tier_id).await?;
    checkpoint(pool).await;

    let next = Arc::new(AtomicUsize::new(1));
    let db_start = db_now(pool).await?;
    let cpu = CpuWindow::start();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let (http, url, tokens, next) = (http.clone(), url.clone(), tokens.clone(), next.clone());
        let (signer, slug) = (signer.clone(), slug.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let inline;
                let token = match tokens.get(i) {
                    Some(t) => t.as_str(),
                    None => {
                        tally.signed_inline += 1;
                        inline = sign_token(&signer, &slug, i as u64);
                        inline.as_str()
                    }
                };
                let t0 = Instant::now();
                match post_hold(&http, &url, token, i as u64).await {
                    Ok((reqwest::StatusCode::CREATED, _)) => {
                        tally.ok += 1;
                        tally.latencies.push(micros(t0.elapsed()));
                    }
                    Ok((status, body)) => {
                        let body: String = body.chars().take(120).collect();
                        tally.error(format!("HTTP {status}: {body}"));
                    }
                    Err(e) => tally.error(format!("transport: {e}")),
                }
            }
            tally
        }));
    }
    let mut tally = ClientTally::default();
    for t in tasks {
        tally.merge(t.await.context("a client task panicked")?);
    }
    let elapsed = (start.elapsed(), cpu.finish());
    drop(server);

    let after = ledger(pool, tier_id).await?;
    check_ledger("d", &after, tally.ok + 1)?;
    let batches = u64::try_from(after.batches - warm_ledger.batches).unwrap_or(0);
    let mut notes = vec![format!(
        "{} reqwest clients (HTTP/1.1 keep-alive) → axum router with workers off, same process; \
         {} tokens pre-signed",
        opts.clients,
        tokens.len()
    )];
    if tally.signed_inline > 0 {
        notes.push(format!(
            "{} tokens signed inline during the run",
            tally.signed_inline
        ));
    }
    let timeline = timeline(pool, tier_id, db_start).await?;
    let mut m = measurement(
        (
            "d",
            "orders HTTP API POST /api/events/{slug}/holds, in-process server",
        ),
        tally,
        elapsed,
        batches,
        notes,
    );
    m.timeline = Some(timeline);
    Ok(m)
}

async fn post_hold(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    seq: u64,
) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let body = format!(
        r#"{{"tier":"ga","quantity":1,"email":"{}","name":"{NAME}"}}"#,
        buyer_email(seq)
    );
    let response = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    Ok((status, body))
}

fn sign_token(signer: &TokenSigner, slug: &EventSlug, seq: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    signer.sign(&AdmissionClaims {
        kind: TokenKind::Admission,
        aud: audience(slug),
        evt: slug.clone(),
        sub: format!("visitor-{seq}"),
        jti: Uuid::new_v4().to_string(),
        seq,
        iat: now,
        exp: now + 3600,
    })
}

/// Signs `n` admission tokens (seq 0..n) on blocking threads, one per core.
async fn sign_tokens(
    signer: &TokenSigner,
    slug: &EventSlug,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(workers).max(1);
    let mut jobs = Vec::new();
    for from in (0..n).step_by(chunk) {
        let to = (from + chunk).min(n);
        let (signer, slug) = (signer.clone(), slug.clone());
        jobs.push(tokio::task::spawn_blocking(move || {
            (from..to)
                .map(|i| sign_token(&signer, &slug, i as u64))
                .collect::<Vec<_>>()
        }));
    }
    let mut tokens = Vec::with_capacity(n);
    for j in jobs {
        tokens.extend(j.await?);
    }
    Ok(tokens)
}

/// The results as a table, with the ratios.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "holds on one hot tier: {} clients, {} s per case, {} cores, Postgres {} (synchronous_commit={})\n\n",
        report.clients,
        report.seconds,
        report.cpus,
        report
            .postgres
            .get("server_version")
            .map_or("?", String::as_str),
        report
            .postgres
            .get("synchronous_commit")
            .map_or("?", String::as_str),
    ));
    out.push_str(
        "| case | what | committed/s | committed | failed | avg ms | p50 ms | p99 ms | avg batch | ms/batch | CPU busy | load before |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let opt =
        |x: Option<f64>, prec: usize| x.map_or_else(|| "–".to_owned(), |v| format!("{v:.prec$}"));
    for m in &report.results {
        out.push_str(&format!(
            "| ({}) | {} | {:.0} | {} | {} | {:.2} | {} | {} | {} | {} | {:.0}% | {:.2} |\n",
            m.case,
            m.description,
            m.per_second,
            m.committed,
            m.failed,
            m.latency_avg_ms,
            opt(m.latency_p50_ms, 2),
            opt(m.latency_p99_ms, 2),
            opt(m.avg_batch, 1),
            opt(m.batch_ms, 2),
            m.machine_cpu_busy_pct,
            m.load_avg_before,
        ));
    }
    out.push('\n');
    for m in &report.results {
        if let Some(t) = &m.timeline {
            let list: Vec<String> = t.iter().map(i64::to_string).collect();
            out.push_str(&format!(
                "({}) holds per second of the run: {}\n",
                m.case,
                list.join(" ")
            ));
        }
        for n in m.notes.iter().filter(|n| n.starts_with("duplicate-check")) {
            out.push_str(&format!("({}) {n}\n", m.case));
        }
    }
    out.push('\n');
    for (k, v) in &report.ratios {
        let verdict = match report.goal_met.get(k) {
            Some(true) => format!("  (goal ≥ {:.0}×: met)", report.goal),
            Some(false) => format!("  (goal ≥ {:.0}×: NOT met)", report.goal),
            None => String::new(),
        };
        out.push_str(&format!("{k} = {v:.2}×{verdict}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_15_output() {
        let out = "pgbench (15.14 (Debian 15.14-0+deb12u1))
transaction type: /tmp/update.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 12345
number of failed transactions: 0 (0.000%)
latency average = 25.912 ms
initial connection time = 20.123 ms
tps = 1234.567890 (without initial connection time)
";
        assert_eq!(
            parse_pgbench(out).unwrap(),
            PgbenchSummary {
                tps: 1234.56789,
                processed: 12345,
                failed: 0,
                latency_avg_ms: 25.912,
            }
        );
        assert!(parse_pgbench("pgbench: error: connection failed").is_err());
    }

    #[test]
    fn server_url_drops_the_database() {
        assert_eq!(
            server_url("postgres://postgres@127.0.0.1:5432/floodgate"),
            "postgres://postgres@127.0.0.1:5432"
        );
        assert_eq!(
            server_url("postgres://postgres@127.0.0.1:5432"),
            "postgres://postgres@127.0.0.1:5432"
        );
    }

    #[test]
    fn only_this_machine() {
        assert!(only_loopback("db", "postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(only_loopback("redis", "redis://localhost:6379").is_ok());
        assert!(only_loopback("db", "postgres://postgres@db.example.org/x").is_err());
    }
}
