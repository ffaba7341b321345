//! (a) and (b): the bars the holds are measured against, driven by pgbench on scratch
//! tables: the bare conditional UPDATE of the hot row that caps a transaction-per-hold
//! design, and that design itself (the UPDATE and a hold row in one transaction).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};

use super::measure::{CpuWindow, round2};
use super::setup::{ScratchDb, checkpoint};
use super::{Measurement, Options};

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

/// (a) then (b), against one scratch database (dropped on the way out).
pub(super) async fn run(
    opts: &Options,
    pgbench: &Path,
    server: &str,
    work_dir: &Path,
) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let scratch = ScratchDb::create(server, false, 2).await?;
    sqlx::raw_sql(SCRATCH_SCHEMA)
        .execute(scratch.pool())
        .await
        .context("creating the scratch tables")?;
    let a = pgbench_case(
        opts,
        pgbench,
        &scratch,
        &work_dir.join("bench-holds-update.sql"),
        UPDATE_SQL,
        ("a", "pgbench: bare UPDATE of the hot row (autocommit)"),
    )
    .await?;
    eprintln!("  (a) {:>9.1}/s", a.per_second);
    results.push(a);
    let b = pgbench_case(
        opts,
        pgbench,
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
    Ok(results)
}

/// The newest `/usr/lib/postgresql/*/bin/pgbench`, else `pgbench` on the PATH.
pub(super) fn find_pgbench() -> anyhow::Result<PathBuf> {
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
}
