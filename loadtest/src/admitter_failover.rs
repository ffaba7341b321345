//! `loadtest admitter-failover`: the longest gap in admissions when the admitter
//! stepping an event is killed (issue 17: "≤ 2 s over 10 trials; `active` never above
//! `max_active`"). For `infra/cluster`, whose two admitters share each event's lease.
//!
//! On one event: a line of `--line` visitors is made at 0 admissions a minute, then the
//! rate is set to `--rate`. The console's figures (`admitted_total`, `active`) are read
//! every `--sample-ms` through `--url`. First a quiet baseline of `--watch` seconds;
//! then, `--trials` times, the admitter holding the event's lease is found and killed
//! (`ctl which admitter-lease EVENT`, `ctl kill NAME`), watched for `--watch` seconds,
//! and started again. A gap is the time between two reads that saw `admitted_total`
//! grow; a trial's gap is the longest one that spans its kill. The settings found at
//! the start are put back at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::onsale::loopback;
use crate::poll_load::set_admission;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The public address (the load balancer on the cluster).
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub url: String,
    /// The control program (`infra/chaos` with FLOODGATE_CHAOS_CLUSTER=1, or
    /// `infra/cluster`): `which admitter-lease EVENT`, `kill NAME`, `start NAME`.
    #[arg(long)]
    pub ctl: PathBuf,
    #[arg(long, default_value = "demo")]
    pub event: String,
    #[arg(long, default_value_t = 10)]
    pub trials: u32,
    /// Visitors put in line before admissions start.
    #[arg(long, default_value_t = 3000)]
    pub line: u32,
    /// Admissions a minute while measuring.
    #[arg(long, default_value_t = 1200)]
    pub rate: u32,
    /// The event's `max_active` while measuring (the default never holds admissions
    /// back, so a gap is the admitter's; set it low to check the cap under failover).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_active: u32,
    /// Seconds watched after each kill (and for the baseline).
    #[arg(long, default_value_t = 6.0)]
    pub watch: f64,
    #[arg(long, default_value_t = 50)]
    pub sample_ms: u64,
    #[arg(long, env = "FLOODGATE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: String,
    #[arg(long, default_value = "target/loadtest/admitter-failover.json")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Trial {
    killed: String,
    /// The longest time between two reads that saw admissions grow, spanning the kill.
    gap_ms: f64,
    /// The admitter that holds the lease afterwards.
    took_over: String,
    most_active: u64,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    admitted: u64,
    active: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let base = loopback("gateway", &args.url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let admission = format!("{base}/console/api/events/{}/admission", args.event);
    let token = &args.operator_token;
    let before = figures(&http, &admission, token).await?;
    let restore = json!({
        "mode": before["mode"], "rate_per_minute": before["rate_per_minute"],
        "max_active": before["max_active"],
        "reason": "loadtest admitter-failover: settings put back",
    });
    let result = measure(&args, &http, &base, &admission).await;
    let put_back = set_admission(&http, &admission, token, restore).await;
    let (baseline_ms, trials, active_at_start) = result?;
    put_back.context("putting the settings back")?;

    let worst = trials.iter().map(|t| t.gap_ms).fold(0.0, f64::max);
    let most_active = trials.iter().map(|t| t.most_active).max().unwrap_or(0);
    // Slots admitted before the cap was set may already exceed it (nobody here ever
    // finishes a checkout); what must never happen is a rise above both.
    let allowed = u64::from(args.max_active).max(active_at_start);
    println!(
        "admitter-failover: longest gap {worst:.0} ms over {} kills (quiet baseline {baseline_ms:.0} ms); \
         most active {most_active} of max_active {}",
        trials.len(),
        args.max_active
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&json!({
            "event": args.event, "rate_per_minute": args.rate, "max_active": args.max_active,
            "sample_ms": args.sample_ms, "baseline_gap_ms": baseline_ms, "worst_gap_ms": worst,
            "most_active": most_active, "active_at_start": active_at_start, "trials": trials,
        }))?,
    )?;
    ensure!(
        most_active <= allowed,
        "active reached {most_active}, above max_active {} (and the {active_at_start} active at the start)",
        args.max_active
    );
    Ok(())
}

async fn measure(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    admission: &str,
) -> anyhow::Result<(f64, Vec<Trial>, u64)> {
    let token = &args.operator_token;
    let active_at_start = figures(http, admission, token).await?["active"]
        .as_u64()
        .unwrap_or(0);
    let still = json!({"mode": "on", "rate_per_minute": 0, "max_active": args.max_active,
                       "reason": "loadtest admitter-failover: a line forms"});
    set_admission(http, admission, token, still).await?;
    let join = Arc::new(format!("{base}/queue/{}/join", args.event));
    let joined = futures::stream::iter(0..args.line)
        .map(|_| {
            let (http, join) = (http.clone(), join.clone());
            async move {
                http.post(join.as_str())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    ensure!(
        joined as u32 == args.line,
        "only {joined} of {} joined",
        args.line
    );
    let moving = json!({"rate_per_minute": args.rate, "reason": "loadtest admitter-failover"});
    set_admission(http, admission, token, moving).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let watch = Duration::from_secs_f64(args.watch);
    let baseline = longest_gap(&watch_for(args, http, admission, watch).await?, None);
    let ctl = crate::chaos::Ctl(args.ctl.clone());
    let mut trials = Vec::new();
    for _ in 0..args.trials {
        let killed = ctl.which(&["admitter-lease", &args.event]).await?;
        let watching = watch_for(args, http, admission, watch);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let at = Instant::now();
            ctl.call(&["kill", &killed]).await.map(|()| at)
        };
        let (samples, killed_at) = tokio::join!(watching, kill);
        let (samples, killed_at) = (samples?, killed_at?);
        let took_over = ctl
            .which(&["admitter-lease", &args.event])
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"));
        ctl.call(&["start", &killed]).await?;
        trials.push(Trial {
            gap_ms: longest_gap(&samples, Some(killed_at)),
            most_active: samples.iter().map(|s| s.active).max().unwrap_or(0),
            killed,
            took_over,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((baseline, trials, active_at_start))
}

async fn figures(http: &reqwest::Client, admission: &str, token: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(admission)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()
        .context("reading the event's admission figures")?
        .json()
        .await?)
}

/// Reads the event's figures every `--sample-ms` for `watch`; a read that fails is
/// skipped (the gap around it then counts from the reads either side).
async fn watch_for(
    args: &Args,
    http: &reqwest::Client,
    admission: &str,
    watch: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < watch {
        if let Ok(v) = figures(http, admission, &args.operator_token).await {
            samples.push(Sample {
                at: Instant::now(),
                admitted: v["admitted_total"].as_u64().unwrap_or(0),
                active: v["active"].as_u64().unwrap_or(0),
            });
        }
        tokio::time::sleep(Duration::from_millis(args.sample_ms)).await;
    }
    ensure!(samples.len() > 2, "the console answered almost no read");
    Ok(samples)
}

/// The longest time between two reads that saw admissions grow (the end of the
/// watch counts as one, so admissions that never resumed show as a gap to it); with
/// `spanning`, only gaps that contain that moment.
fn longest_gap(samples: &[Sample], spanning: Option<Instant>) -> f64 {
    let mut grew: Vec<Instant> = samples
        .windows(2)
        .filter(|w| w[1].admitted > w[0].admitted)
        .map(|w| w[1].at)
        .collect();
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        grew.insert(0, first.at);
        grew.push(last.at);
    }
    grew.windows(2)
        .filter(|w| spanning.is_none_or(|t| w[0] <= t && t <= w[1]))
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max)
}
