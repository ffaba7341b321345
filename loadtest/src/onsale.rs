//! `loadtest onsale`: an on-sale replayed against the running stack, with a verdict.
//!
//! It creates its own event (queue on), lets a crowd of simulated buyers arrive over a
//! curve (a burst at opening, Poisson, or a recorded arrival file) and walk the whole
//! journey — queue, hold, checkout, payment at the sandbox, order page — then checks
//! every invariant against Postgres, the SMTP sink and what the buyers saw:
//! sold ≤ capacity, no seat sold twice, every charge has tickets or a refund, every
//! paid buyer got exactly one confirmation, nobody admitted ahead of an earlier
//! arrival, no 5xx. Figures per step (HDR histograms), the queue's wait-time
//! distribution and payment → email times go to `target/loadtest/report.json`; the
//! same with plots to `report.html`. Exits non-zero unless every check passes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

mod crowd;
pub(crate) mod edge;
mod estimates;
mod lag;
mod report;
mod stats;
pub(crate) mod verdict;

use crowd::{Counters, CrowdShape, Ctx, TierSpec};
pub use report::Report;

/// What a fault run injects while the crowd is on: started with the run's clock and
/// handles, it returns when the system has recovered from it.
pub type Disruption = Box<
    dyn FnOnce(DisruptionCtx) -> futures::future::BoxFuture<'static, anyhow::Result<Disrupted>>
        + Send,
>;

/// The run's handles, for a [`Disruption`].
pub struct DisruptionCtx {
    pub start: Instant,
    pub slug: String,
    pub base: String,
    pub operator_token: String,
    pub sandbox: String,
    pub sink: String,
    pub http: reqwest::Client,
}

/// When a fault was injected and when the system had recovered, in ms since the start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disrupted {
    pub injected_ms: u64,
    pub recovered_ms: u64,
    /// Whether the fault makes requests fail while it is on (a process down) or not
    /// (faults the system must absorb without a visible error).
    pub errors_expected: bool,
    /// 5xx and unanswered requests inside the forgiven window (set by the verdict).
    pub forgiven_errors: u64,
    pub note: String,
}

/// How long after a fault's recovery errors are still put down to it: pools
/// reconnect, the gateway's health checks notice a backend is back, retries drain.
const AFTERMATH_MS: u64 = 10_000;

/// Whether a request sent at `sent` and answered at `answered` (ms since the start)
/// overlapped the fault's window. A request is judged by its whole life, not its
/// start: one sent just before a crash and answered during it met the fault as
/// surely as one sent during it.
fn met_fault(window: Option<(u64, u64)>, sent: u64, answered: u64) -> bool {
    window.is_some_and(|(from, to)| answered >= from && sent <= to)
}
use report::Point;
use stats::{Folded, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Curve {
    /// Everyone arrives at a uniformly random moment of the window.
    Burst,
    /// Arrivals form a Poisson process at `buyers / window` per second.
    Poisson,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated buyers.
    #[arg(long, default_value_t = 2000)]
    pub buyers: usize,
    /// Seats on sale, split over the tiers.
    #[arg(long, default_value_t = 200)]
    pub seats: u32,
    /// Arrival window in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub window: f64,
    /// Arrival curve over the window.
    #[arg(long, value_enum, default_value_t = Curve::Burst)]
    pub curve: Curve,
    /// Recorded arrivals: one offset in seconds per line (overrides --curve and --buyers).
    #[arg(long)]
    pub arrivals_file: Option<PathBuf>,
    /// Tiers the seats are split over.
    #[arg(long, default_value_t = 1)]
    pub tiers: u32,
    /// Queue admission rate per minute.
    #[arg(long, default_value_t = 6000)]
    pub rate: u32,
    /// Queue max active (admitted and not yet finished).
    #[arg(long, default_value_t = 500)]
    pub max_active: u32,
    /// Seconds an admission stays valid.
    #[arg(long, default_value_t = 120)]
    pub admission_ttl: u32,
    /// Quantities and their weights, `qty:weight,...`.
    #[arg(long, default_value = "1:70,2:25,4:5")]
    pub quantity_mix: String,
    /// Share of buyers who leave the queue (after 0.5-15 s) if not admitted by then.
    #[arg(long, default_value_t = 0.0)]
    pub abandon_queue: f64,
    /// Share of buyers who release their hold instead of paying.
    #[arg(long, default_value_t = 0.0)]
    pub abandon_checkout: f64,
    /// Share of buyers whose first card is declined.
    #[arg(long, default_value_t = 0.0)]
    pub decline_rate: f64,
    /// Share of declined buyers who try again with a good card (the others release).
    #[arg(long, default_value_t = 0.5)]
    pub retry_declined: f64,
    /// Sandbox fault: share of confirms that take effect but answer 504 after a while
    /// (set for the run through `PUT /admin/faults`, restored afterwards).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// Share of buyers who reload the waiting page (join again with their queue token).
    #[arg(long, default_value_t = 0.0)]
    pub refreshers: f64,
    /// Upper bound on a buyer's think time before hold, and before paying (ms).
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// How many times longer buyers keep retrying failed requests (5xx, no answer)
    /// than the default few seconds: fault runs (`loadtest chaos`) raise it so a
    /// restarting process costs buyers a wait, not their purchase.
    #[arg(long, default_value_t = 1)]
    pub patience: u32,
    /// Cap on `retry_after_ms` between status polls, to keep runs short.
    #[arg(long, default_value_t = 2000)]
    pub max_poll_ms: u64,
    /// How long a charged buyer watches the order page for `paid` (s).
    #[arg(long, default_value_t = 60)]
    pub pay_timeout: u64,
    /// How long to wait for the confirmations at the SMTP sink (s).
    #[arg(long, default_value_t = 60)]
    pub email_timeout: u64,
    /// Hard limit on the crowd's run (s); buyers still going then are "unfinished".
    #[arg(long, default_value_t = 600)]
    pub max_duration: u64,
    /// Slack for the fairness check: the edge's snapshot refresh and clock skew (ms).
    #[arg(long, default_value_t = 500)]
    pub fairness_tolerance_ms: u64,
    /// Random seed (default: from the clock); the same seed draws the same crowd.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Leave the event's queue open afterwards (default: closed once judged).
    #[arg(long)]
    pub keep_open: bool,
    /// Gateway base URL.
    #[arg(
        long,
        env = "FLOODGATE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[command(flatten)]
    pub gateway_metrics: edge::GatewayMetrics,
    /// Postgres of the stack.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/floodgate"
    )]
    pub database_url: String,
    /// Operator API token (default: the stack's operator-token file).
    #[arg(long, env = "FLOODGATE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// The stack's state directory (holds `operator-token`).
    #[arg(long, env = "FLOODGATE_STACK_DIR")]
    pub stack_dir: Option<PathBuf>,
    /// Payment sandbox base URL.
    #[arg(
        long,
        env = "FLOODGATE_SANDBOX_URL",
        default_value = "http://127.0.0.1:8085"
    )]
    pub sandbox_url: String,
    /// The sandbox's API key.
    #[arg(
        long,
        env = "SANDBOX_API_KEY",
        default_value = "sk_test_floodgate",
        hide_env_values = true
    )]
    pub sandbox_key: String,
    /// The SMTP sink's HTTP API (host:port or URL).
    #[arg(long, env = "SMTP_SINK_HTTP", default_value = "127.0.0.1:2580")]
    pub smtp_sink: String,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "target/loadtest")]
    pub out_dir: PathBuf,
}

fn parse_mix(s: &str) -> anyhow::Result<Vec<(u32, u32)>> {
    let mix = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (q, w) = p
                .trim()
                .split_once(':')
                .with_context(|| format!("quantity mix entry {p:?} is not qty:weight"))?;
            let q: u32 = q.trim().parse().context("quantity")?;
            let w: u32 = w.trim().parse().context("weight")?;
            ensure!((1..=100).contains(&q), "quantities are 1 to 100, not {q}");
            Ok((q, w))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(
        mix.iter().any(|(_, w)| *w > 0),
        "the quantity mix needs a positive weight"
    );
    Ok(mix)
}

/// Refuses anything but loopback: the simulator only ever targets this machine.
pub(crate) fn loopback(what: &str, url: &str) -> anyhow::Result<String> {
    let url = if url.contains("://") {
        url.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    };
    let parsed = reqwest::Url::parse(&url).with_context(|| format!("{what}: {url:?}"))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ok = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    ensure!(ok, "{what} {url} is not a loopback address; refusing");
    Ok(url)
}

pub(crate) fn operator_token(args: &Args) -> anyhow::Result<String> {
    if let Some(t) = args
        .operator_token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(t.trim().to_owned());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = &args.stack_dir {
        candidates.push(dir.join("operator-token"));
    }
    candidates.push(PathBuf::from("target/stack/operator-token"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/stack/operator-token"));
    for c in &candidates {
        if let Ok(t) = std::fs::read_to_string(c)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
    }
    bail!(
        "no operator token: set FLOODGATE_OPERATOR_TOKEN or run `infra/stack up` (looked in {})",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn arrivals(args: &Args, rng: &mut impl Rng) -> anyhow::Result<Vec<u64>> {
    if let Some(path) = &args.arrivals_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut v = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let s: f64 = l.parse().with_context(|| format!("arrival {l:?}"))?;
                ensure!(s.is_finite() && s >= 0.0, "arrival {l:?} is not a time");
                Ok((s * 1000.0) as u64)
            })
            .collect::<anyhow::Result<Vec<u64>>>()?;
        ensure!(!v.is_empty(), "{} holds no arrivals", path.display());
        v.sort_unstable();
        return Ok(v);
    }
    let window_ms = args.window * 1000.0;
    let mut v: Vec<u64> = match args.curve {
        Curve::Burst => (0..args.buyers)
            .map(|_| rng.gen_range(0.0..window_ms) as u64)
            .collect(),
        Curve::Poisson => {
            let mean = window_ms / args.buyers as f64;
            let mut t = 0.0;
            (0..args.buyers)
                .map(|_| {
                    t += -mean * (1.0 - rng.r#gen::<f64>()).ln();
                    t as u64
                })
                .collect()
        }
    };
    v.sort_unstable();
    Ok(v)
}

/// Splits `seats` over `n` tiers (the first ones take the remainder).
pub(crate) fn tier_specs(seats: u32, n: u32) -> Vec<TierSpec> {
    (0..n)
        .map(|i| TierSpec {
            code: format!("t{}", i + 1),
            capacity: seats / n + u32::from(i < seats % n),
            price_cents: 1500 + 1000 * i64::from(i),
        })
        .collect()
}

pub(crate) async fn create_event(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    slug: &str,
    args: &Args,
    tiers: &[TierSpec],
    max_per_order: u32,
) -> anyhow::Result<Value> {
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    let body = json!({
        "slug": slug,
        "title": format!("On-sale simulation {slug}"),
        "starts_at": starts,
        "ends_at": starts + chrono::Duration::hours(2),
        "timezone": "UTC",
        "meeting": {"provider": "jitsi"},
        "refund_policy": {"refundable_until_hours_before": 48},
        "tiers": tiers.iter().enumerate().map(|(i, t)| json!({
            "code": t.code,
            "name": format!("Tier {}", i + 1),
            "price_cents": t.price_cents,
            "currency": "EUR",
            "capacity": t.capacity,
            "max_per_order": max_per_order,
        })).collect::<Vec<_>>(),
        "queue": {
            "mode": "on",
            "rate_per_minute": args.rate,
            "max_active": args.max_active,
            "admission_ttl_seconds": args.admission_ttl,
        },
    });
    let r = http
        .post(format!("{base}/console/api/events"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .context("creating the event")?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    ensure!(
        status.is_success(),
        "creating the event: HTTP {status}: {text}"
    );
    Ok(body)
}

/// Sets sandbox faults for the run; `restore` puts the previous values back.
struct Faults {
    sandbox: String,
    before: Option<Value>,
}

impl Faults {
    async fn set(http: &reqwest::Client, sandbox: &str, timeout_rate: f64) -> anyhow::Result<Self> {
        let mut f = Faults {
            sandbox: sandbox.to_owned(),
            before: None,
        };
        if timeout_rate > 0.0 {
            let before: Value = http
                .get(format!("{sandbox}/admin/faults"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            http.put(format!("{sandbox}/admin/faults"))
                .json(&json!({"timeout_rate": timeout_rate, "timeout_hold_ms": 1500}))
                .send()
                .await?
                .error_for_status()
                .context("setting sandbox faults")?;
            f.before = Some(before);
        }
        Ok(f)
    }

    async fn restore(&self, http: &reqwest::Client) {
        if let Some(before) = &self.before {
            let keys = ["timeout_rate", "timeout_hold_ms"];
            let body: serde_json::Map<String, Value> = keys
                .iter()
                .filter_map(|k| Some((k.to_string(), before.get(*k)?.clone())))
                .collect();
            if let Err(e) = http
                .put(format!("{}/admin/faults", self.sandbox))
                .json(&body)
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                eprintln!("warning: could not restore the sandbox faults: {e}");
            }
        }
    }
}

pub(crate) async fn healthy(http: &reqwest::Client, what: &str, url: &str) -> anyhow::Result<()> {
    let r = http
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("{what} at {url} is unreachable (is the stack up?)"))?;
    ensure!(
        r.status().is_success(),
        "{what} at {url}: /healthz answered {}",
        r.status()
    );
    Ok(())
}

/// Three progress bars (arrived, admitted, finished) redrawn in place on a terminal
/// by the sampler every 250 ms; nothing at all when stdout is not a terminal.
///
/// Drawn by hand with ANSI cursor movement rather than with `indicatif`: indicatif
/// depends on crates.io's `console`, whose name would make `cargo -p console` (our
/// console crate) ambiguous across the workspace.
#[derive(Clone)]
struct Progress {
    buyers: u64,
    tty: bool,
    drawn: Arc<AtomicBool>,
}

/// One bar: `  arrived [=========>          ]    512/2000   waiting 300`.
fn bar(name: &str, pos: u64, len: u64, msg: &str) -> String {
    const WIDTH: u64 = 40;
    let filled = (pos.min(len) * WIDTH).checked_div(len).unwrap_or(0) as usize;
    let mut b = "=".repeat(filled);
    if filled < WIDTH as usize {
        b.push(if pos > 0 { '>' } else { ' ' });
        b.push_str(&" ".repeat(WIDTH as usize - filled - 1));
    }
    format!("{name:>9} [{b}] {pos:>6}/{len:<6} {msg}")
}

impl Progress {
    fn new(buyers: u64) -> Self {
        Self {
            buyers,
            tty: std::io::stdout().is_terminal(),
            drawn: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lines(&self, c: &Counters) -> [String; 3] {
        let g = Counters::get;
        [
            bar(
                "arrived",
                g(&c.arrived),
                self.buyers,
                &format!("waiting {} watching {}", g(&c.waiting), g(&c.watching)),
            ),
            bar(
                "admitted",
                g(&c.admitted),
                self.buyers,
                &format!(
                    "buying {} held {} paid {}",
                    g(&c.in_flight),
                    g(&c.held),
                    g(&c.paid)
                ),
            ),
            bar(
                "finished",
                g(&c.finished),
                self.buyers,
                &format!("{} requests, {} 5xx", g(&c.requests), g(&c.server_errors)),
            ),
        ]
    }

    fn update(&self, c: &Counters) {
        if !self.tty {
            return;
        }
        let mut out = String::new();
        if self.drawn.swap(true, Ordering::Relaxed) {
            out.push_str("\x1b[3A");
        }
        for l in self.lines(c) {
            out.push_str("\r\x1b[2K");
            out.push_str(&l);
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }

    fn finish(&self) {
        if self.tty && self.drawn.swap(false, Ordering::Relaxed) {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(b"\x1b[3A\r\x1b[J");
            let _ = stdout.flush();
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let report = judge(args, None).await?;
    let failing: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name)
        .collect();
    ensure!(failing.is_empty(), "verdict FAIL: {}", failing.join("; "));
    Ok(())
}

/// Runs one on-sale, with `disruption` injected while the crowd is on, and judges it;
/// the report (also written to `--out-dir`) says whether it passed.
pub async fn judge(args: Args, disruption: Option<Disruption>) -> anyhow::Result<Report> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    for (name, v) in [
        ("--abandon-queue", args.abandon_queue),
        ("--abandon-checkout", args.abandon_checkout),
        ("--decline-rate", args.decline_rate),
        ("--retry-declined", args.retry_declined),
        ("--timeout-rate", args.timeout_rate),
        ("--refreshers", args.refreshers),
    ] {
        ensure!((0.0..=1.0).contains(&v), "{name} is a share in [0, 1]");
    }
    ensure!(
        args.buyers >= 1 || args.arrivals_file.is_some(),
        "--buyers must be at least 1"
    );
    ensure!(args.window > 0.0, "--window must be positive");
    ensure!(
        (1..=20).contains(&args.tiers) && args.seats >= args.tiers,
        "--tiers must be 1 to 20 and at most --seats"
    );
    let mix = parse_mix(&args.quantity_mix)?;
    let base = loopback("gateway", &args.url)?;
    let gateway_metrics = loopback("gateway metrics", &args.gateway_metrics.url)?;
    let sandbox = loopback("sandbox", &args.sandbox_url)?;
    let sink = loopback("SMTP sink", &args.smtp_sink)?;
    let token = operator_token(&args)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    healthy(&http, "gateway", &base).await?;
    healthy(&http, "payment sandbox", &sandbox).await?;
    healthy(&http, "SMTP sink", &sink).await?;
    let db = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(1)
        // A busy shared server may refuse connections for a while: wait rather than
        // give up on the verdict.
        .acquire_timeout(Duration::from_secs(60))
        .connect(&args.database_url)
        .await
        .context("connecting to DATABASE_URL")?;

    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let run_id = format!(
        "{}-{:04x}",
        started_at.timestamp(),
        rng.gen_range(0..=0xffffu32)
    );
    let slug = format!("onsale-{run_id}");
    let arrivals_ms = arrivals(&args, &mut rng)?;
    let buyers = arrivals_ms.len();
    let tiers = tier_specs(args.seats, args.tiers);
    let max_q = mix.iter().map(|(q, _)| *q).max().unwrap_or(1).max(10);
    let event_body = create_event(&http, &base, &token, &slug, &args, &tiers, max_q).await?;
    let faults = Faults::set(&http, &sandbox, args.timeout_rate).await?;
    let curve = match &args.arrivals_file {
        Some(f) => format!("arrivals from {}", f.display()),
        None => format!("{:?} over {:.1} s", args.curve, args.window).to_lowercase(),
    };
    println!(
        "onsale: event {slug}: {buyers} buyers ({curve}) for {} seats in {} tiers; rate {}/min, max active {}; seed {seed}",
        args.seats, args.tiers, args.rate, args.max_active
    );

    let plans = crowd::plans(&CrowdShape {
        arrivals_ms,
        quantity_mix: mix,
        tier_weights: tiers.iter().map(|t| t.capacity).collect(),
        abandon_queue: args.abandon_queue,
        abandon_checkout: args.abandon_checkout,
        decline_rate: args.decline_rate,
        retry_declined: args.retry_declined,
        refreshers: args.refreshers,
        think_ms: args.think_ms,
        seed: seed ^ 0xb0b,
    });
    // A small lead so the first arrivals are not late while tasks are spawned.
    let start = Instant::now() + Duration::from_millis(200);
    let start_wall = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let ctx = Arc::new(Ctx {
        base: base.clone(),
        sandbox: sandbox.clone(),
        sandbox_key: args.sandbox_key.clone(),
        slug: slug.clone(),
        run_id: run_id.clone(),
        tiers: tiers.clone(),
        max_poll: Duration::from_millis(args.max_poll_ms.max(50)),
        pay_timeout: Duration::from_secs(args.pay_timeout),
        patience: args.patience.max(1),
        start,
        deadline: start + Duration::from_secs(args.max_duration),
        counters: Counters::default(),
    });

    // The timeline and the progress bars, every 250 ms; the server's queue depth
    // from the console every 500 ms.
    let progress = Progress::new(buyers as u64);
    let stop = Arc::new(AtomicBool::new(false));
    // When (ms since start) the operator API answered 5xx.
    let operator_5xx = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let ctx = ctx.clone();
        let stop = stop.clone();
        let http = http.clone();
        let admission_url = format!("{base}/console/api/events/{slug}/admission");
        let token = token.clone();
        let operator_5xx = operator_5xx.clone();
        let progress = progress.clone();
        // The server's count of people waiting, read by its own task so a slow answer
        // does not stall the timeline (u64::MAX: not known).
        let server_waiting = Arc::new(AtomicU64::new(u64::MAX));
        {
            let stop = stop.clone();
            let ctx = ctx.clone();
            let server_waiting = server_waiting.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let next = Instant::now() + Duration::from_millis(500);
                    let read = match http
                        .get(&admission_url)
                        .bearer_auth(&token)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_server_error() => {
                            operator_5xx.lock().expect("operator 5xx").push(ctx.ms());
                            None
                        }
                        Ok(r) => r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|v| v["waiting"].as_u64()),
                        Err(_) => None,
                    };
                    server_waiting.store(read.unwrap_or(u64::MAX), Ordering::Relaxed);
                    tokio::time::sleep_until(next.into()).await;
                }
            });
        }
        tokio::spawn(async move {
            let mut timeline = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tokio::time::sleep_until(ctx.start.into()).await;
            loop {
                tick.tick().await;
                let server_waiting =
                    Some(server_waiting.load(Ordering::Relaxed)).filter(|w| *w != u64::MAX);
                let c = &ctx.counters;
                let g = Counters::get;
                timeline.push(Point {
                    t_ms: ctx.ms(),
                    arrived: g(&c.arrived),
                    waiting: g(&c.waiting),
                    server_waiting,
                    watching: g(&c.watching),
                    admitted: g(&c.admitted),
                    held: g(&c.held),
                    paid: g(&c.paid),
                    finished: g(&c.finished),
                    in_flight: g(&c.in_flight),
                });
                progress.update(c);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            timeline
        })
    };

    let disruption = disruption.map(|d| {
        tokio::spawn(d(DisruptionCtx {
            start,
            slug: slug.clone(),
            base: base.clone(),
            operator_token: token.clone(),
            sandbox: sandbox.clone(),
            sink: sink.clone(),
            http: http.clone(),
        }))
    });
    let edge_before = edge::read(&http, &gateway_metrics).await;
    if let Err(e) = &edge_before {
        eprintln!(
            "onsale: warning: the gateway's metrics could not be read ({e:#}); the report will have no edge figures"
        );
    }
    let lag = lag::LagProbe::start();
    let tcp_before = lag::TcpDrops::read();
    let handles: Vec<_> = plans
        .into_iter()
        .map(|plan| tokio::spawn(crowd::buyer(ctx.clone(), plan)))
        .collect();
    let crowd = futures::future::join_all(handles);
    let joined = tokio::select! {
        r = crowd => r,
        _ = tokio::signal::ctrl_c() => {
            progress.finish();
            faults.restore(&http).await;
            bail!("interrupted");
        }
    };
    let crowd_duration = ctx.start.elapsed();
    let simulator_lag = lag.finish().await;
    let tcp_drops = lag::TcpDrops::read().since(&tcp_before);
    let edge = edge::compare(&edge_before, &edge::read(&http, &gateway_metrics).await);
    // A fault still recovering when the crowd is done is waited for: the verdict is
    // about the system after recovery.
    let disrupted = match disruption {
        Some(d) => Some(
            d.await
                .context("the fault task panicked")?
                .context("injecting the fault")?,
        ),
        None => None,
    };
    stop.store(true, Ordering::Relaxed);
    let timeline = sampler.await.unwrap_or_default();
    progress.update(&ctx.counters);
    progress.finish();
    faults.restore(&http).await;
    let records: Vec<crowd::Record> = joined
        .into_iter()
        .collect::<Result<_, _>>()
        .context("a buyer task panicked")?;
    println!(
        "onsale: crowd done in {:.1} s; judging",
        crowd_duration.as_secs_f64()
    );

    // ---- fold the figures
    let mut folded = Folded::default();
    for r in &records {
        for s in &r.samples {
            folded.add(s);
        }
        if let (Some(j), Some(a)) = (r.joined_ms, r.admitted_ms) {
            folded.record(Step::QueueWait, a, a.saturating_sub(j) * 1000);
        }
        if let (Some(c), Some(p)) = (r.charged_ms, r.paid_seen_ms) {
            folded.record(Step::OrderPaid, c, p.saturating_sub(c) * 1000);
        }
    }
    let injected_timeouts: u64 = records.iter().map(|r| u64::from(r.injected_timeouts)).sum();

    // ---- the verdict
    let dbv = verdict::read_db(&db, &slug).await?;
    let mut checks = vec![
        verdict::crowd(&records),
        verdict::capacity(&dbv),
        verdict::no_double_sale(&dbv),
        verdict::charges_accounted(&dbv, &records),
    ];
    let (email_check, delays) =
        verdict::emails(&http, &sink, &dbv, Duration::from_secs(args.email_timeout)).await;
    checks.push(email_check);
    for (paid_at, d) in delays {
        let at_ms = (paid_at - start_wall).num_milliseconds().max(0) as u64;
        folded.record(Step::Email, at_ms, d * 1000);
    }
    let fault_on = disrupted
        .as_ref()
        .filter(|d| d.errors_expected)
        .map(|d| (d.injected_ms, d.recovered_ms));
    checks.push(verdict::fairness(
        &records,
        args.fairness_tolerance_ms,
        fault_on,
    ));
    checks.push(verdict::refreshers_keep_place(&records));
    // Errors while a fault is on (and shortly after) are what the fault costs; any
    // outside that window are failures like in a quiet run.
    let window = disrupted
        .as_ref()
        .filter(|d| d.errors_expected)
        .map(|d| (d.injected_ms, d.recovered_ms + AFTERMATH_MS));
    let outside = |at_ms: u64| !met_fault(window, at_ms, at_ms);
    let mut judged = Folded::default();
    let mut forgiven = 0;
    for r in &records {
        for s in &r.samples {
            if !met_fault(window, s.at_ms, s.at_ms + s.latency_us.div_ceil(1000)) {
                judged.add(s);
            } else if s.status == 0 || s.status >= 500 {
                forgiven += 1;
            }
        }
    }
    let disrupted = disrupted.map(|d| Disrupted {
        forgiven_errors: forgiven,
        ..d
    });
    let operator_5xx = operator_5xx
        .lock()
        .expect("operator 5xx")
        .iter()
        .filter(|at| outside(**at))
        .count() as u64;
    checks.extend(verdict::no_server_errors(
        &judged,
        injected_timeouts,
        operator_5xx,
    ));
    checks.push(verdict::liveness(&records, args.pay_timeout));

    if !args.keep_open {
        // Done with it: the admitter and gateways need not keep watching this queue.
        let _ = http
            .put(format!("{base}/console/api/events/{slug}/admission"))
            .bearer_auth(&token)
            .json(&json!({"mode": "closed", "reason": "loadtest onsale finished"}))
            .send()
            .await;
    }

    let mut outcomes = std::collections::BTreeMap::new();
    for r in &records {
        *outcomes.entry(r.outcome.key()).or_insert(0u64) += 1;
    }
    let passed = checks.iter().all(|c| c.pass);
    let report = Report {
        verdict: if passed { "PASS" } else { "FAIL" },
        run_id: run_id.clone(),
        started_at,
        settings: json!({
            "buyers": buyers, "seats": args.seats, "window_s": args.window,
            "curve": format!("{:?}", args.curve).to_lowercase(),
            "arrivals_file": args.arrivals_file, "tiers": args.tiers, "rate_per_minute": args.rate,
            "max_active": args.max_active, "admission_ttl_s": args.admission_ttl,
            "quantity_mix": args.quantity_mix, "abandon_queue": args.abandon_queue,
            "abandon_checkout": args.abandon_checkout, "decline_rate": args.decline_rate,
            "retry_declined": args.retry_declined, "timeout_rate": args.timeout_rate,
            "refreshers": args.refreshers, "think_ms": args.think_ms,
            "max_poll_ms": args.max_poll_ms, "pay_timeout_s": args.pay_timeout,
            "email_timeout_s": args.email_timeout, "fairness_tolerance_ms": args.fairness_tolerance_ms,
            "seed": seed, "gateway": base, "gateway_metrics": gateway_metrics,
            "sandbox": sandbox, "smtp_sink": sink,
            "patience": args.patience,
        }),
        disruption: disrupted.clone(),
        event: json!({
            "slug": slug,
            "request": event_body,
            "tiers_at_end": dbv.tiers,
        }),
        duration_s: 0.0,
        crowd_duration_s: crowd_duration.as_secs_f64(),
        outcomes,
        checks,
        steps: folded.figures(),
        statuses: folded.status_table(),
        simulator_lag: Some(simulator_lag),
        tcp_drops: Some(tcp_drops),
        edge_unread: edge.as_ref().err().cloned(),
        edge: edge.unwrap_or_default(),
        timeline,
        eta_at_join: estimates::accuracy(&records),
        notable_buyers: records
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    crowd::Outcome::Failed(_)
                        | crowd::Outcome::PayTimeout
                        | crowd::Outcome::Unfinished
                )
            })
            .take(50)
            .cloned()
            .collect(),
    };
    let report = Report {
        duration_s: started.elapsed().as_secs_f64(),
        ..report
    };

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let json_path = args.out_dir.join("report.json");
    let html_path = args.out_dir.join("report.html");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(&html_path, report::html(&report))?;
    // Keep a copy per run next to the latest.
    let runs = args.out_dir.join("runs");
    if std::fs::create_dir_all(&runs).is_ok() {
        let _ = std::fs::copy(&json_path, runs.join(format!("{run_id}.json")));
    }
    println!("{}", report::text(&report));
    println!(
        "reports: {} and {}",
        json_path.display(),
        html_path.display()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_with_progress() {
        let empty = bar("arrived", 0, 10, "");
        let half = bar("arrived", 5, 10, "x");
        let full = bar("arrived", 10, 10, "");
        assert!(empty.contains(&format!("[{}]", " ".repeat(40))), "{empty}");
        assert!(
            half.contains(&format!("[{}>{}]", "=".repeat(20), " ".repeat(19))),
            "{half}"
        );
        assert!(full.contains(&format!("[{}]", "=".repeat(40))), "{full}");
        assert!(bar("x", 3, 0, "").contains("3/0"));
    }

    #[test]
    fn requests_in_flight_when_the_fault_struck_met_it() {
        let w = Some((3_000, 14_700));
        assert!(met_fault(w, 2_900, 3_400), "sent before, answered during");
        assert!(met_fault(w, 5_000, 5_010), "wholly inside");
        assert!(met_fault(w, 14_700, 15_000), "sent at the window's end");
        assert!(!met_fault(w, 2_000, 2_999), "answered before the fault");
        assert!(!met_fault(w, 14_701, 14_800), "sent after the aftermath");
        assert!(!met_fault(None, 5_000, 5_010), "no fault, nothing forgiven");
    }

    #[test]
    fn seats_split_over_tiers() {
        let t = tier_specs(200, 3);
        assert_eq!(
            t.iter().map(|t| t.capacity).collect::<Vec<_>>(),
            vec![67, 67, 66]
        );
        assert_eq!(t[2].code, "t3");
    }

    #[test]
    fn quantity_mix_parses_and_refuses_nonsense() {
        assert_eq!(
            parse_mix("1:70,2:25,4:5").unwrap(),
            vec![(1, 70), (2, 25), (4, 5)]
        );
        assert!(parse_mix("0:1").is_err());
        assert!(parse_mix("1:0").is_err());
        assert!(parse_mix("abc").is_err());
    }

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback("x", "127.0.0.1:2580").unwrap(),
            "http://127.0.0.1:2580"
        );
        assert!(loopback("x", "http://localhost:8080/").is_ok());
        assert!(loopback("x", "http://[::1]:8080").is_ok());
        assert!(loopback("x", "http://10.0.0.1:8080").is_err());
        assert!(loopback("x", "https://example.org").is_err());
    }

    #[test]
    fn arrival_curves_stay_in_the_window() {
        let cli = <Cli as clap::Parser>::parse_from(["t", "--buyers", "1000", "--window", "5"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = arrivals(&cli.args, &mut rng).unwrap();
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|t| *t < 5000));
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        let cli = <Cli as clap::Parser>::parse_from([
            "t", "--buyers", "1000", "--window", "5", "--curve", "poisson",
        ]);
        let p = arrivals(&cli.args, &mut rng).unwrap();
        // The n-th arrival of a Poisson process at 200/s is near n/200 s.
        let last = *p.last().unwrap() as f64;
        assert!((4000.0..6000.0).contains(&last), "{last}");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }
}
