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
//!
//! One file per case — [`baseline`] (a, b), [`writer`] (c, c2), [`http_api`] (d) — on
//! the shared [`setup`] (scratch databases, the event, the buyers) and [`measure`] (the
//! clients' tally, CPU, the ledger check); this file holds the options, the order of
//! the cases and the report.

mod baseline;
mod http_api;
mod measure;
mod setup;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde::Serialize;

use measure::round2;
use setup::{only_loopback, server_settings, server_url};

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

/// The bar: holds per second at least this many times the bare UPDATE.
const GOAL: f64 = 5.0;

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
        None => baseline::find_pgbench()?,
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

    let mut results = baseline::run(&opts, &pgbench, &server, &work_dir).await?;

    let c2 = writer::run(&opts, &server, 2).await?;
    eprintln!(
        "  (c2) {:>8.1}/s (avg batch {:.1})",
        c2.per_second,
        c2.avg_batch.unwrap_or(0.0)
    );
    results.push(c2);
    let c = writer::run(&opts, &server, orders::holds::DEFAULT_WRITERS_PER_TIER).await?;
    eprintln!(
        "  (c) {:>9.1}/s (avg batch {:.1})",
        c.per_second,
        c.avg_batch.unwrap_or(0.0)
    );
    let c_rate = c.per_second;
    results.push(c);

    let d = http_api::run(&opts, &server, c_rate).await?;
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
