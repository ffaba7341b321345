//! `loadtest poll-load`: status polls per second reaching the gateway as a function of
//! the number of people waiting, with the real `retry_after_ms` schedule (issue 7:
//! "requests/s at 100,000 waiting ≤ 1.3× that at 10,000").
//!
//! For each queue length N (10,000 then 100,000 by default), against a running stack:
//!
//! 1. an event of its own through the console API (`onsale::create_event`), queue on at
//!    0 admissions/min, `max_active` at its maximum so the rate alone meters the line;
//! 2. N buyers join through `POST /queue/{event}/join`, each keeping its queue cookie;
//! 3. the admission rate is set; from then on one new buyer joins for every one
//!    admitted, so N stay waiting (a line in steady state: arrivals = admissions), and
//!    the run waits until the admitter's observed rate, which drives the ETA and so the
//!    schedule, has reached the configured one;
//! 4. every waiting buyer polls `GET /queue/{event}/status` with its cookie the way the
//!    waiting page does: a first poll (its page load) at a random moment of a short
//!    spread, the next at a uniformly random moment inside the interval that answer
//!    gave, then each exactly `retry_after_ms` after the previous answer. The random
//!    phase puts the crowd in steady state at once, as a crowd that arrived over time
//!    would be, even where the interval is many minutes;
//! 5. after a warm-up, status requests are counted by the second they were sent, over
//!    the window, by the crowd and by the gateway's own metrics (on its metrics
//!    listener, `--gateway-metrics`).
//!
//! It prints polls/s per size and their ratio, with what the waiting room's schedule
//! predicts for the same line, and writes them as JSON. The exit status reports errors
//! (failed requests, a crowd that could not keep its schedule), never a missed target.
//! Everything stays on 127.0.0.1; the events are closed afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use waitroom::queue::Snapshot;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::onsale;

/// The largest `max_active` the waiting room accepts: admissions are never held back
/// by it, so the configured rate is the rate (nobody here ever finishes a checkout).
const MAX_ACTIVE: u32 = 1_000_000;
/// The per-second counters cover this much of a run.
const MAX_RUN_SECONDS: usize = 3 * 3600;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Queue lengths to measure, one after the other, each on an event of its own.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub sizes: Vec<u64>,
    /// Admissions per minute, the same for every size.
    #[arg(long, default_value_t = 1200)]
    pub rate: u32,
    /// Seconds an admission (and an unclaimed slot) stays valid; the schedule never
    /// makes anyone wait longer than a share of it.
    #[arg(long, default_value_t = 900)]
    pub admission_ttl: u32,
    /// Seconds over which the buyers' first polls (their page loads) are spread
    /// (default: one second per 3,000 buyers, at least 10).
    #[arg(long)]
    pub spread: Option<u64>,
    /// Seconds of polling between the last first poll and the window.
    #[arg(long, default_value_t = 30)]
    pub warmup: u64,
    /// Seconds of counting.
    #[arg(long, default_value_t = 60)]
    pub window: u64,
    /// Requests in flight at most (the crowd's sockets).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// How long to wait for the admitter's observed rate to reach the configured one (s).
    #[arg(long, default_value_t = 180)]
    pub settle_timeout: u64,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Gateway base URL (loopback only).
    #[arg(
        long,
        env = "FLOODGATE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[command(flatten)]
    pub gateway_metrics: onsale::edge::GatewayMetrics,
    /// File holding the operator token (default: FLOODGATE_OPERATOR_TOKEN, else the
    /// stack's `operator-token`, as `loadtest onsale` finds it).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/loadtest/poll-load.json")]
    pub out: PathBuf,
    /// Only print what this build's schedule predicts for the sizes at the rate (no
    /// stack needed).
    #[arg(long)]
    pub predict: bool,
}

/// `onsale::Args` with its defaults and environment, for the functions shared with it.
#[derive(Parser)]
struct OnsaleArgs {
    #[command(flatten)]
    args: onsale::Args,
}

/// One queue length's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub waiting: u64,
    pub event: String,
    /// Status requests per second sent by the crowd over the window.
    pub polls_per_s: f64,
    /// The same, as the gateway counted them (`floodgate_gateway_requests_total`,
    /// route `status`, every status class), when its metrics could be read.
    pub gateway_polls_per_s: Option<f64>,
    /// Why `gateway_polls_per_s` is missing: the gateway's metrics could not be read.
    pub gateway_unread: Option<String>,
    /// Least and most status requests sent in one second of the window.
    pub per_second_min: u64,
    pub per_second_max: u64,
    /// What the waiting room's schedule predicts for this line (same rate and TTL):
    /// buyers joining at the back of a line of `waiting` moving at the rate, i.e. the
    /// rate times the polls one buyer makes from the back to the front.
    pub expected_moving_line: f64,
    /// The schedule's rates summed over positions 1..=waiting (a line standing still).
    pub expected_static: f64,
    /// The admitter's observed rate during the window (admissions/min, mean of reads).
    pub observed_rate_per_min: f64,
    /// Waiting as the console counted it during the window (min, max).
    pub waiting_min: u64,
    pub waiting_max: u64,
    /// Polls of the window sent more than 1 s after the moment the schedule set.
    pub late_polls: u64,
    pub max_lag_ms: u64,
    /// Status answers in the window that were not 200 (or no answer at all).
    pub failed_polls: u64,
    pub admitted: u64,
    pub joins: u64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    rate_per_minute: u32,
    admission_ttl_seconds: u32,
    window_seconds: u64,
    warmup_seconds: u64,
    gateway: String,
    sizes: Vec<SizeResult>,
    /// Largest over smallest size's polls/s (the crowd's count).
    ratio: Option<f64>,
    peak_rss_mb: Option<f64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(!args.sizes.is_empty(), "--sizes needs at least one size");
    ensure!(
        args.sizes.iter().all(|&n| (1..=1_000_000).contains(&n)),
        "sizes are 1 to 1,000,000"
    );
    ensure!(args.rate > 0, "--rate must be positive");
    ensure!(args.window > 0, "--window must be positive");
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    if args.predict {
        let first = expected(args.sizes[0], args.rate, args.admission_ttl);
        for &n in &args.sizes {
            let (moving, still) = expected(n, args.rate, args.admission_ttl);
            println!(
                "{n:>7} waiting at {}/min, TTL {} s: {moving:.1} polls/s (moving line, {:.2}x), {still:.1}/s (static, {:.2}x)",
                args.rate,
                args.admission_ttl,
                moving / first.0,
                still / first.1
            );
        }
        return Ok(());
    }
    let ttl = args.admission_ttl.to_string();
    let shared = OnsaleArgs::try_parse_from([
        "poll-load",
        "--url",
        &args.url,
        "--rate",
        "0",
        "--max-active",
        &MAX_ACTIVE.to_string(),
        "--admission-ttl",
        &ttl,
        "--seats",
        "1",
    ])
    .context("onsale defaults")?
    .args;
    let base = onsale::loopback("gateway", &args.url)?;
    let metrics = onsale::loopback("gateway metrics", &args.gateway_metrics.url)?;
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned(),
        None => onsale::operator_token(&shared)?,
    };
    ensure!(!token.is_empty(), "the operator token is empty");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    onsale::healthy(&http, "gateway", &base).await?;

    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    println!(
        "poll-load: {} admissions/min, admission TTL {} s, sizes {:?}, window {} s after a {} s warm-up; seed {seed}",
        args.rate, args.admission_ttl, args.sizes, args.window, args.warmup
    );
    let mut sizes = Vec::new();
    for (i, &n) in args.sizes.iter().enumerate() {
        let gateway = Gateway {
            base: &base,
            metrics: &metrics,
        };
        let r = measure(&args, &shared, &http, &gateway, &token, n, seed ^ i as u64).await?;
        println!(
            "  {:>7} waiting: {:>7.1} polls/s (gateway {}), {}-{} per second; schedule predicts {:.1}/s (moving line), {:.1}/s (static); observed rate {:.0}/min; {} late, {} failed, {:.0} s",
            r.waiting,
            r.polls_per_s,
            r.gateway_polls_per_s
                .map_or_else(|| "-".to_owned(), |g| format!("{g:.1}")),
            r.per_second_min,
            r.per_second_max,
            r.expected_moving_line,
            r.expected_static,
            r.observed_rate_per_min,
            r.late_polls,
            r.failed_polls,
            r.seconds,
        );
        if let Some(why) = &r.gateway_unread {
            println!("    gateway's own count unknown: its metrics could not be read ({why})");
        }
        sizes.push(r);
    }
    let ratio = match (sizes.first(), sizes.last()) {
        (Some(a), Some(b)) if sizes.len() > 1 && a.polls_per_s > 0.0 => {
            Some(b.polls_per_s / a.polls_per_s)
        }
        _ => None,
    };
    if let (Some(ratio), Some(a), Some(b)) = (ratio, sizes.first(), sizes.last()) {
        let predicted = b.expected_moving_line / a.expected_moving_line;
        println!(
            "ratio {} / {} waiting: {ratio:.2}x (schedule predicts {predicted:.2}x; target <= 1.3x: {})",
            b.waiting,
            a.waiting,
            if ratio <= 1.3 { "met" } else { "missed" }
        );
    }
    let results = Results {
        rate_per_minute: args.rate,
        admission_ttl_seconds: args.admission_ttl,
        window_seconds: args.window,
        warmup_seconds: args.warmup,
        gateway: base,
        ratio,
        peak_rss_mb: peak_rss_mb(),
        sizes,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&results)?)?;
    println!(
        "results written to {} (peak RSS {})",
        args.out.display(),
        results
            .peak_rss_mb
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.0} MB"))
    );
    for r in &results.sizes {
        let polls = (r.polls_per_s * args.window as f64).round() as u64;
        ensure!(
            r.failed_polls * 100 <= polls,
            "{} waiting: {} of {polls} polls failed; the count is not the schedule's",
            r.waiting,
            r.failed_polls
        );
        ensure!(
            r.late_polls * 20 <= polls,
            "{} waiting: {} of {polls} polls were sent over 1 s late (max {} ms): the crowd could not keep its schedule",
            r.waiting,
            r.late_polls,
            r.max_lag_ms
        );
    }
    Ok(())
}

/// Everything the crowd's tasks share.
struct Crowd {
    http: reqwest::Client,
    status_url: String,
    join_url: String,
    metrics_url: String,
    cookie_name: String,
    in_flight: Semaphore,
    start: Instant,
    /// Status requests by the second (since `start`) they were sent.
    sent: Vec<AtomicU64>,
    /// Of those, the ones sent over 1 s late, and the ones that failed.
    late: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    /// Largest lag (ms) by second.
    lag_max: Vec<AtomicU64>,
    admitted: AtomicU64,
    joins: AtomicU64,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Crowd {
    fn second(&self, at: Instant) -> usize {
        (at.saturating_duration_since(self.start).as_secs() as usize).min(MAX_RUN_SECONDS - 1)
    }

    fn spawn(self: &Arc<Self>, token: String, first: Instant, phase: Option<f64>) {
        let handle = tokio::spawn(buyer(self.clone(), token, first, phase));
        self.tasks.lock().expect("tasks").push(handle);
    }

    /// Takes a place in line: `(queue token, retry_after_ms)`.
    async fn join(&self) -> anyhow::Result<(String, u64)> {
        let mut wait = Duration::from_millis(200);
        let mut last = String::new();
        for _ in 0..6 {
            let answer = {
                let _permit = self.in_flight.acquire().await?;
                self.http.post(&self.join_url).send().await
            };
            match answer {
                Ok(r) if r.status().is_success() => {
                    let a: Answer = r.json().await.context("join answer")?;
                    self.joins.fetch_add(1, Ordering::Relaxed);
                    ensure!(
                        a.state == "waiting",
                        "join: state {:?}, not waiting",
                        a.state
                    );
                    let token = a.queue_token.context("join answer without a queue token")?;
                    return Ok((token, a.retry_after_ms.unwrap_or(1_000)));
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(r) => bail!("join: HTTP {}: {}", r.status(), r.text().await?),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        bail!("join failed six times, last: {last}")
    }

    fn stop(&self) {
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    state: String,
    retry_after_ms: Option<u64>,
    queue_token: Option<String>,
}

/// One waiting buyer: polls when the schedule says, until admitted (or out of line).
/// `phase`: the share of its first answer's interval to wait before the second poll.
async fn buyer(crowd: Arc<Crowd>, mut token: String, mut due: Instant, mut phase: Option<f64>) {
    loop {
        tokio::time::sleep_until(due.into()).await;
        let answer = {
            let Ok(_permit) = crowd.in_flight.acquire().await else {
                return;
            };
            let sent = Instant::now();
            let s = crowd.second(sent);
            crowd.sent[s].fetch_add(1, Ordering::Relaxed);
            let lag = sent.saturating_duration_since(due).as_millis() as u64;
            crowd.lag_max[s].fetch_max(lag, Ordering::Relaxed);
            if lag > 1_000 {
                crowd.late[s].fetch_add(1, Ordering::Relaxed);
            }
            let answer = match crowd
                .http
                .get(&crowd.status_url)
                .header(
                    reqwest::header::COOKIE,
                    format!("{}={token}", crowd.cookie_name),
                )
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json::<Answer>().await.ok(),
                _ => None,
            };
            if answer.is_none() {
                crowd.failed[s].fetch_add(1, Ordering::Relaxed);
            }
            answer
        };
        let Some(a) = answer else {
            due = Instant::now() + Duration::from_secs(1);
            continue;
        };
        if let Some(t) = a.queue_token {
            token = t;
        }
        match a.state.as_str() {
            "waiting" | "paused" => {
                let interval = Duration::from_millis(a.retry_after_ms.unwrap_or(1_000));
                due = Instant::now() + interval.mul_f64(phase.take().unwrap_or(1.0));
            }
            "admitted" => {
                crowd.admitted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        }
    }
}

#[derive(Deserialize)]
struct AdmissionView {
    waiting: u64,
    observed_admissions_per_minute: f64,
}

async fn admission(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<AdmissionView> {
    let r = http.get(url).bearer_auth(token).send().await?;
    ensure!(r.status().is_success(), "{url}: HTTP {}", r.status());
    Ok(r.json().await?)
}

pub(crate) async fn set_admission(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    change: serde_json::Value,
) -> anyhow::Result<()> {
    let r = http
        .put(url)
        .bearer_auth(token)
        .json(&change)
        .send()
        .await?;
    let status = r.status();
    ensure!(
        status.is_success(),
        "{url}: HTTP {status}: {}",
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

/// The gateway a run talks to: its buyer port, and the listener of its own where it
/// serves its metrics.
struct Gateway<'a> {
    base: &'a str,
    metrics: &'a str,
}

/// One queue length, on an event of its own.
async fn measure(
    args: &Args,
    shared: &onsale::Args,
    http: &reqwest::Client,
    gateway: &Gateway<'_>,
    token: &str,
    n: u64,
    seed: u64,
) -> anyhow::Result<SizeResult> {
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let slug = format!(
        "pollload-{}-{:04x}",
        chrono::Utc::now().timestamp(),
        rng.gen_range(0..=0xffffu32)
    );
    onsale::create_event(
        http,
        gateway.base,
        token,
        &slug,
        shared,
        &onsale::tier_specs(1, 1),
        1,
    )
    .await?;
    let admission_url = format!("{}/console/api/events/{slug}/admission", gateway.base);
    let console = Console {
        http,
        token,
        admission_url: &admission_url,
    };
    let result = crowd_on(args, &console, gateway, &slug, n, rng).await;
    // Done with it either way: the admitter and gateways need not keep watching it.
    let closed = set_admission(
        http,
        &admission_url,
        token,
        json!({"mode": "closed", "reason": "loadtest poll-load finished"}),
    )
    .await;
    let mut r = result?;
    closed.context("closing the event's queue")?;
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

/// The operator API of one run's event.
struct Console<'a> {
    http: &'a reqwest::Client,
    token: &'a str,
    admission_url: &'a str,
}

async fn crowd_on(
    args: &Args,
    console: &Console<'_>,
    gateway: &Gateway<'_>,
    slug: &str,
    n: u64,
    mut rng: rand::rngs::StdRng,
) -> anyhow::Result<SizeResult> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let counters = || (0..MAX_RUN_SECONDS).map(|_| AtomicU64::new(0)).collect();
    let crowd = Arc::new(Crowd {
        http: client,
        status_url: format!("{}/queue/{slug}/status", gateway.base),
        join_url: format!("{}/queue/{slug}/join", gateway.base),
        metrics_url: gateway.metrics.to_owned(),
        cookie_name: format!("fg_q_{slug}"),
        in_flight: Semaphore::new(args.concurrency),
        start: Instant::now(),
        sent: counters(),
        late: counters(),
        failed: counters(),
        lag_max: counters(),
        admitted: AtomicU64::new(0),
        joins: AtomicU64::new(0),
        tasks: std::sync::Mutex::new(Vec::new()),
    });
    let outcome = steady_crowd(args, console, slug, n, &mut rng, &crowd).await;
    crowd.stop();
    outcome
}

async fn steady_crowd(
    args: &Args,
    console: &Console<'_>,
    slug: &str,
    n: u64,
    rng: &mut rand::rngs::StdRng,
    crowd: &Arc<Crowd>,
) -> anyhow::Result<SizeResult> {
    // ---- fill: N places, nobody admitted yet (rate 0).
    let t = Instant::now();
    let mut tokens = Vec::with_capacity(n as usize);
    let mut joins = futures::stream::iter(0..n)
        .map(|_| crowd.join())
        .buffer_unordered(args.concurrency.min(64));
    while let Some(j) = joins.next().await {
        tokens.push(j?.0);
    }
    drop(joins);
    let Console {
        http,
        token,
        admission_url,
    } = *console;
    let view = admission(http, admission_url, token).await?;
    ensure!(
        view.waiting == n,
        "{n} joined but the console counts {} waiting",
        view.waiting
    );
    println!(
        "  {slug}: {n} joined in {:.1} s; admitting {}/min",
        t.elapsed().as_secs_f64(),
        args.rate,
    );

    // ---- the rate, and a new arrival for every admission from now on.
    set_admission(
        http,
        admission_url,
        token,
        json!({"rate_per_minute": args.rate, "reason": "loadtest poll-load"}),
    )
    .await?;
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64, f64)>::new()));
    let topper = {
        let crowd = crowd.clone();
        let http = http.clone();
        let url = admission_url.to_owned();
        let token = token.to_owned();
        let samples = samples.clone();
        // At most a few seconds of admissions per step, so a misreading cannot flood.
        let most = u64::from(args.rate).div_ceil(60) * 5 + 50;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Ok(v) = admission(&http, &url, &token).await else {
                    continue;
                };
                samples.lock().expect("samples").push((
                    Instant::now(),
                    v.waiting,
                    v.observed_admissions_per_minute,
                ));
                let missing = n.saturating_sub(v.waiting).min(most);
                let mut joins = futures::stream::iter(0..missing)
                    .map(|_| crowd.join())
                    .buffer_unordered(32);
                while let Some(j) = joins.next().await {
                    match j {
                        Ok((t, retry_ms)) => {
                            // A real arrival: its page polls `retry_after_ms` after the join.
                            crowd.spawn(t, Instant::now() + Duration::from_millis(retry_ms), None)
                        }
                        Err(e) => eprintln!("warning: a replacement join failed: {e:#}"),
                    }
                }
            }
        })
    };
    crowd.tasks.lock().expect("tasks").push(topper);

    // ---- wait for the observed rate (it drives the ETA, hence the schedule).
    let t = Instant::now();
    let target = f64::from(args.rate);
    let mut close_reads = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let obs = samples.lock().expect("samples").last().map_or(0.0, |s| s.2);
        close_reads = if (obs - target).abs() <= target * 0.03 {
            close_reads + 1
        } else {
            0
        };
        if close_reads >= 3 {
            break;
        }
        if t.elapsed() >= Duration::from_secs(args.settle_timeout) {
            ensure!(
                obs >= target * 0.5,
                "the admitter's observed rate is {obs:.0}/min after {} s, configured {target}/min",
                args.settle_timeout
            );
            eprintln!(
                "warning: observed rate {obs:.0}/min after {} s, configured {target}/min; measuring anyway",
                args.settle_timeout
            );
            break;
        }
    }
    println!(
        "  observed rate {:.0}/min after {:.0} s",
        samples.lock().expect("samples").last().map_or(0.0, |s| s.2),
        t.elapsed().as_secs_f64()
    );

    // ---- the crowd: page loads spread over a few seconds, then the schedule.
    let spread = Duration::from_secs(args.spread.unwrap_or((n / 3_000).max(10)));
    let spread_from = Instant::now() + Duration::from_millis(500);
    for t in tokens {
        let first = spread_from + spread.mul_f64(rng.r#gen::<f64>());
        crowd.spawn(t, first, Some(rng.r#gen::<f64>()));
    }
    let window_from = spread_from + spread + Duration::from_secs(args.warmup);
    let window_to = window_from + Duration::from_secs(args.window);
    tokio::time::sleep_until(window_from.into()).await;
    let gw_from = gateway_status_count(http, &crowd.metrics_url).await;
    tokio::time::sleep_until(window_to.into()).await;
    let gw_to = gateway_status_count(http, &crowd.metrics_url).await;
    let gateway = match (gw_from, gw_to) {
        (Ok(a), Ok(b)) if b >= a => Ok((b - a) as f64 / (window_to - window_from).as_secs_f64()),
        (Ok(a), Ok(b)) => Err(format!(
            "its count went from {a} to {b} over the window (restarted?)"
        )),
        (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
    };

    // ---- figures of the window's whole seconds.
    let first = crowd.second(window_from) + 1;
    let last = crowd.second(window_to); // exclusive: the second under way is partial
    ensure!(last > first, "the window is too short");
    let secs = &crowd.sent[first..last];
    let per_second: Vec<u64> = secs.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let sum = |v: &[AtomicU64]| {
        v[first..last]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    };
    let span = (last - first) as f64;
    let in_window: Vec<(u64, f64)> = samples
        .lock()
        .expect("samples")
        .iter()
        .filter(|s| s.0 >= window_from && s.0 <= window_to)
        .map(|s| (s.1, s.2))
        .collect();
    ensure!(
        !in_window.is_empty(),
        "the console's admission view was never read during the window"
    );
    let (expected_moving_line, expected_static) = expected(n, args.rate, args.admission_ttl);
    Ok(SizeResult {
        waiting: n,
        event: slug.to_owned(),
        polls_per_s: per_second.iter().sum::<u64>() as f64 / span,
        gateway_polls_per_s: gateway.as_ref().ok().copied(),
        gateway_unread: gateway.err(),
        per_second_min: per_second.iter().copied().min().unwrap_or(0),
        per_second_max: per_second.iter().copied().max().unwrap_or(0),
        expected_moving_line,
        expected_static,
        observed_rate_per_min: in_window.iter().map(|s| s.1).sum::<f64>() / in_window.len() as f64,
        waiting_min: in_window.iter().map(|s| s.0).min().unwrap_or(0),
        waiting_max: in_window.iter().map(|s| s.0).max().unwrap_or(0),
        late_polls: sum(&crowd.late),
        max_lag_ms: crowd.lag_max[first..last]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        failed_polls: sum(&crowd.failed),
        admitted: crowd.admitted.load(Ordering::Relaxed),
        joins: crowd.joins.load(Ordering::Relaxed),
        seconds: 0.0,
    })
}

/// The gateway's count of status requests (every status class), from its metrics.
async fn gateway_status_count(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let text = onsale::edge::fetch(http, url).await?;
    let counts: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("floodgate_gateway_requests_total{") && l.contains("route=\"status\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    // Polls are under way when this is read: no count at all is not the gateway.
    ensure!(
        !counts.is_empty(),
        "{url} holds no floodgate_gateway_requests_total for route status (not the gateway's metrics?)"
    );
    Ok(counts.iter().sum::<f64>() as u64)
}

/// Polls per second the waiting room's schedule implies for a line of `n` at `rate` per
/// minute: `(moving line, static sum)`. The moving line is what the run measures: each
/// buyer joins at the back and polls on its way to the front, so the load is the rate
/// times the polls one buyer makes (averaged over the per-visitor jitter). The static
/// sum adds up every position's polling rate as if nobody moved.
pub fn expected(n: u64, rate: u32, admission_ttl: u32) -> (f64, f64) {
    let settings = AdmissionSettings {
        mode: Mode::On,
        rate_per_minute: rate,
        max_active: MAX_ACTIVE,
        admission_ttl_seconds: admission_ttl,
        opens_at: None,
    };
    let snapshot = Snapshot {
        observed_per_min: f64::from(rate),
        ..Snapshot::at_rest(settings, 0, n)
    };
    let per_s = f64::from(rate) / 60.0;
    let statics: f64 = (1..=n)
        .map(|p| 1_000.0 / snapshot.status_of(p).retry_after_ms as f64)
        .sum();
    // A buyer at `position` is `seq - head`; sequence numbers only pick the jitter.
    const BUYERS: u64 = 200;
    let polls: u64 = (0..BUYERS)
        .map(|b| {
            let seq = n + 1 + b * 7_919;
            let mut at = 0.0_f64; // seconds since this buyer joined
            let mut polls = 0;
            loop {
                let admitted = (at * per_s).floor() as u64;
                if admitted >= n {
                    return polls;
                }
                let head = seq - n + admitted;
                let s = Snapshot {
                    head,
                    ..snapshot.clone()
                };
                at += s.status_of(seq).retry_after_ms as f64 / 1_000.0;
                polls += 1;
            }
        })
        .sum();
    (per_s * polls as f64 / BUYERS as f64, statics)
}

/// The process's peak resident memory, from `/proc/self/status`.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moving_line_makes_fewer_polls_than_the_standing_one_and_both_grow_with_it() {
        let (moving, still) = expected(2_000, 1_200, 900);
        assert!(moving > 0.0 && moving <= still * 1.05, "{moving} {still}");
        let (moving_long, _) = expected(20_000, 1_200, 900);
        assert!(moving_long > moving, "{moving_long} {moving}");
    }
}
