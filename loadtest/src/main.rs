//! `loadtest`: the on-sale simulator's command line: `onsale` (a crowd against the
//! running stack, judged by a verdict), `chaos` (the fault matrix), `bench` and
//! `bench-holds` (the performance baselines), and `lottery` (verifies a pre-queue
//! draw).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use waitroom::lottery::LotteryRecord;

// The simulator's own cost is inside every latency it records. With 20,000 buyers,
// each with its own HTTP client and connections as a browser would have, glibc malloc
// took half of its samples (`_int_malloc` walking fragmented free lists) and its
// tasks woke seconds late; mimalloc keeps the crowd's overhead out of the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admitter_failover;
mod bench;
mod bench_holds;
mod bench_mail;
mod chaos;
mod onsale;
mod poll_load;
mod search_bench;
mod settings_lag;

#[derive(Parser)]
#[command(about = "Floodgate on-sale simulator and verifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recompute an event's pre-queue draw from its revealed seed and compare it with
    /// the published order. Exits non-zero on any mismatch.
    Lottery {
        /// Gateway base URL.
        #[arg(
            long,
            env = "FLOODGATE_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// Event slug.
        #[arg(long)]
        event: String,
        /// Read the record from this JSON file instead of the gateway.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Holds committed per second on one hot tier, in one run: (a) pgbench's bare
    /// single-row UPDATE, (b) pgbench's UPDATE + INSERT per hold, (c) the orders
    /// HoldDesk in-process, (d) the orders HTTP API in-process. Uses scratch databases
    /// on 127.0.0.1 (dropped afterwards); writes the results as JSON.
    BenchHolds {
        /// Duration of each of the four cases.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients in every case.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// pgbench worker threads (`--jobs`).
        #[arg(long, default_value_t = 2)]
        pgbench_threads: usize,
        /// Postgres server (the database part is ignored: scratch databases are made).
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
        /// Redis for the orders service's waiting-room handle (its own prefix, purged).
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// pgbench binary (default: the newest /usr/lib/postgresql/*/bin/pgbench).
        #[arg(long)]
        pgbench: Option<PathBuf>,
        /// Where the JSON results go (pgbench scripts are written next to it).
        #[arg(long, default_value = "target/loadtest/bench-holds.json")]
        out: PathBuf,
    },
    /// Replays an on-sale against the running stack (`infra/stack up`): creates an
    /// event, lets a crowd of simulated buyers queue, hold, check out and pay, then
    /// checks every invariant and writes target/loadtest/report.json and report.html.
    /// Exits non-zero unless the verdict holds.
    Onsale(Box<onsale::Args>),
    /// The fault matrix (issue 8): one on-sale per fault — a process killed, Redis,
    /// NATS or PostgreSQL restarted, SMTP refusing, the provider misbehaving — each
    /// judged by the on-sale verdict. Run through `infra/chaos run`, which owns the
    /// processes and services it breaks.
    Chaos(Box<chaos::Args>),
    /// Every performance baseline in one run, as ratios against the targets: the edge
    /// (infra/bench/edge: gateway vs nginx and raw Redis) and holds (bench-holds:
    /// orders vs a bare UPDATE). Needs a release build; takes about five minutes.
    Bench(Box<bench::Args>),
    /// Confirmations per second through the whole delivery path (a resend for every
    /// paid order of an event) against a plain SMTP client to the same server.
    BenchMail(Box<bench_mail::Args>),
    /// The console's search box over 100,000 orders seeded in SQL into a scratch
    /// database: p50/p95/p99 per kind of query against a primary-key lookup.
    BenchSearch(Box<search_bench::Args>),
    /// Status polls per second reaching the gateway with 10,000 and with 100,000
    /// waiting at one admission rate, and their ratio (issue 7's target: at most 1.3x).
    PollLoad(Box<poll_load::Args>),
    /// How long a pause or resume through the console takes to reach every gateway
    /// (issue 17), over `--trials` rounds; the worst case and every change as JSON.
    SettingsLag(Box<settings_lag::Args>),
    /// The longest gap in admissions when the admitter holding an event's lease is
    /// killed, over `--trials` kills on `infra/cluster` (issue 17).
    AdmitterFailover(Box<admitter_failover::Args>),
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lottery { url, event, file } => {
            let record: LotteryRecord = match file {
                Some(path) => serde_json::from_slice(&std::fs::read(path)?)?,
                None => {
                    let r = reqwest::get(format!("{url}/queue/{event}/lottery")).await?;
                    anyhow::ensure!(r.status().is_success(), "gateway answered {}", r.status());
                    r.json().await?
                }
            };
            record.verify()?;
            println!(
                "lottery for {} verified: {} entrants, seed {} matches commitment {}",
                record.event,
                record.entrants.len(),
                record.seed.as_deref().unwrap_or("-"),
                record.commitment
            );
            Ok(())
        }
        Command::BenchHolds {
            seconds,
            clients,
            pgbench_threads,
            database_url,
            redis_url,
            pgbench,
            out,
        } => {
            let opts = bench_holds::Options {
                seconds,
                clients,
                pgbench_threads,
                database_url,
                redis_url,
                pgbench,
                out: out.clone(),
            };
            // Ctrl-C drops the bench, whose guards drop the scratch databases.
            let report = tokio::select! {
                r = bench_holds::run(opts) => r?,
                _ = tokio::signal::ctrl_c() => {
                    // Let the Redis purge spawned by a guard run before the runtime ends.
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    anyhow::bail!("interrupted; scratch state cleaned up");
                }
            };
            println!("{}", bench_holds::render(&report));
            std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
            println!("results written to {}", out.display());
            Ok(())
        }
        Command::Onsale(args) => onsale::run(*args).await,
        Command::Chaos(args) => chaos::run(*args).await,
        Command::Bench(args) => bench::run(*args).await,
        Command::BenchMail(args) => bench_mail::run(*args).await,
        Command::BenchSearch(args) => search_bench::run(*args).await,
        Command::PollLoad(args) => poll_load::run(*args).await,
        Command::SettingsLag(args) => settings_lag::run(*args).await,
        Command::AdmitterFailover(args) => admitter_failover::run(*args).await,
    }
}
