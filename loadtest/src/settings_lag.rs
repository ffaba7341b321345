//! `loadtest settings-lag`: how long an operator's change to the admission settings
//! takes to reach every gateway (issue 17: "a rate change or pause is seen by both
//! gateways within 1 s, also while another shard is stopped").
//!
//! Against a running stack or cluster, on one event: the queue is set on at 0
//! admissions a minute (so the one visitor this run puts in line stays waiting), the
//! visitor joins, and then, `--trials` times, the event is paused and resumed through
//! the console's API (`--url`, normally the load balancer). After each change every
//! gateway in `--gateways` is asked for the visitor's status directly, every
//! `--poll-ms`, until it answers the new state (`paused`, then `waiting` again); the
//! lag of a change is the time from the console's answer to the last gateway's.
//! A rate change travels the same way (the settings are one hash, read whole by the
//! gateways' snapshot refresh), so a pause stands for both and is the one a visitor
//! can see. The settings found at the start are put back at the end.
//!
//! To measure while another shard is stopped, stop it around the run
//! (`infra/cluster stop redis-7002; loadtest settings-lag …; infra/cluster cont …`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::onsale::loopback;
use crate::poll_load::set_admission as change;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the console's API is reached (the load balancer on the cluster).
    #[arg(
        long,
        env = "FLOODGATE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Each gateway, asked directly (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub gateways: Vec<String>,
    /// The event whose queue is paused and resumed.
    #[arg(long, default_value = "demo")]
    pub event: String,
    /// Pause-and-resume rounds (each is two changes).
    #[arg(long, default_value_t = 20)]
    pub trials: u32,
    /// How often each gateway is asked while a change travels.
    #[arg(long, default_value_t = 10)]
    pub poll_ms: u64,
    /// A change not seen by every gateway within this long fails the run.
    #[arg(long, default_value_t = 10)]
    pub give_up_s: u64,
    /// The operator token.
    #[arg(long, env = "FLOODGATE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/loadtest/settings-lag.json")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Change {
    trial: u32,
    to: &'static str,
    /// From the console's answer to each gateway's first answer in the new state, ms.
    per_gateway_ms: Vec<f64>,
    worst_ms: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let base = loopback("console", &args.url)?;
    let gateways: Vec<String> = args
        .gateways
        .iter()
        .map(|g| loopback("gateway", g))
        .collect::<anyhow::Result<_>>()?;
    ensure!(!gateways.is_empty(), "no gateway to ask");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let admission = format!("{base}/console/api/events/{}/admission", args.event);
    let before: Value = http
        .get(&admission)
        .bearer_auth(&args.operator_token)
        .send()
        .await?
        .error_for_status()
        .context("reading the event's admission settings")?
        .json()
        .await?;
    let restore = json!({
        "mode": before["mode"],
        "rate_per_minute": before["rate_per_minute"],
        "reason": "loadtest settings-lag: settings put back",
    });

    let result = measure(&args, &http, &admission, &gateways).await;
    let put_back = change(&http, &admission, &args.operator_token, restore).await;
    let changes = result?;
    put_back.context("putting the settings back")?;

    let mut worst: Vec<f64> = changes.iter().map(|c| c.worst_ms).collect();
    worst.sort_by(f64::total_cmp);
    let max = worst.last().copied().unwrap_or(0.0);
    let median = worst.get(worst.len() / 2).copied().unwrap_or(0.0);
    println!(
        "settings-lag: {} changes seen by all {} gateways: median {median:.0} ms, worst {max:.0} ms",
        changes.len(),
        gateways.len()
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&json!({
            "event": args.event, "gateways": gateways, "poll_ms": args.poll_ms,
            "median_ms": median, "worst_ms": max, "changes": changes,
        }))?,
    )?;
    println!("settings-lag: written to {}", args.out.display());
    Ok(())
}

async fn measure(
    args: &Args,
    http: &reqwest::Client,
    admission: &str,
    gateways: &[String],
) -> anyhow::Result<Vec<Change>> {
    let token = &args.operator_token;
    let hold_still = json!({"mode": "on", "rate_per_minute": 0,
                            "reason": "loadtest settings-lag: one visitor waits"});
    change(http, admission, token, hold_still).await?;
    // Every gateway must see "on" before the visitor joins, or it might be refused.
    for g in gateways {
        let url = format!("{g}/queue/{}/join", args.event);
        until(args, || async {
            let r = http.post(&url).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["state"] == "waiting").then_some(())
        })
        .await
        .with_context(|| format!("{g} never took a place"))?;
    }
    let joined: Value = http
        .post(format!("{}/queue/{}/join", gateways[0], args.event))
        .send()
        .await?
        .json()
        .await?;
    let visitor = joined["queue_token"]
        .as_str()
        .context("the join answered no queue token")?
        .to_owned();

    let mut changes = Vec::new();
    for trial in 1..=args.trials {
        for (mode, state) in [("paused", "paused"), ("on", "waiting")] {
            let body = json!({"mode": mode, "reason": "loadtest settings-lag"});
            change(http, admission, token, body).await?;
            let changed = Instant::now();
            let mut per_gateway_ms = Vec::new();
            for g in gateways {
                let url = format!("{g}/queue/{}/status", args.event);
                until(args, || async {
                    let r = http.get(&url).bearer_auth(&visitor).send().await.ok()?;
                    let v: Value = r.json().await.ok()?;
                    (v["state"] == state).then_some(())
                })
                .await
                .with_context(|| format!("{g} never showed {state} (trial {trial})"))?;
                per_gateway_ms.push(changed.elapsed().as_secs_f64() * 1000.0);
            }
            let worst_ms = per_gateway_ms.iter().copied().fold(0.0, f64::max);
            changes.push(Change {
                trial,
                to: state,
                per_gateway_ms,
                worst_ms,
            });
        }
    }
    Ok(changes)
}

/// Asks `check` every `--poll-ms` until it says yes, for at most `--give-up-s`.
async fn until<F, Fut>(args: &Args, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(args.give_up_s);
    loop {
        if check().await.is_some() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "not within {} s", args.give_up_s);
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
}
