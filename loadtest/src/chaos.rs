//! `loadtest chaos`: the fault matrix. One on-sale per fault, each judged by the
//! on-sale verdict: while the crowd is on, a Floodgate process is killed (SIGKILL)
//! and started again, Redis, NATS or PostgreSQL is killed and restarted, the SMTP
//! server refuses mail for a minute, or the payment provider times out and sends
//! webhooks twice and out of order. After recovery every invariant must hold (no
//! seat sold twice, every charge with tickets or a refund, one confirmation per paid
//! buyer, nobody admitted out of turn, every buyer finished); errors are forgiven
//! only while the fault is on and shortly after.
//!
//! On the cluster topology (`--cluster`, `infra/chaos run --cluster`) the matrix is
//! the distributed engines' faults instead: the Redis primary of the on-sale's event
//! killed or hung (its replica takes over), the JetStream stream's leader killed, the
//! Postgres primary killed and the synchronous standby promoted, and one of each
//! doubled service killed at once.
//!
//! Processes and services are driven through a control program (`infra/chaos`),
//! which knows how the stack and the private Redis/NATS/PostgreSQL were started; this
//! module only decides when, measures, and judges. Results: one report per fault
//! under `--out-dir/chaos/<fault>/`, and the matrix as `chaos.json` and `chaos.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use serde_json::json;

use crate::onsale::{self, Disrupted, Disruption, DisruptionCtx};

#[derive(Debug, Clone, clap::Args)]
// clap names a derived group after its struct; onsale's is also `Args`.
#[group(id = "ChaosArgs")]
pub struct Args {
    #[command(flatten)]
    pub onsale: onsale::Args,
    /// Faults to inject, comma-separated (default: all; see `--list`).
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// The shorter matrix CI runs (used when --faults is not given).
    #[arg(long)]
    pub short: bool,
    /// The cluster topology's matrix (`infra/cluster`; used when --faults is not
    /// given).
    #[arg(long)]
    pub cluster: bool,
    /// Seconds a hung (SIGSTOPped) node stays stopped.
    #[arg(long, default_value_t = 4.0)]
    pub hang: f64,
    /// Print the faults and exit.
    #[arg(long)]
    pub list: bool,
    /// Seconds after the crowd starts arriving that the fault strikes.
    #[arg(long, default_value_t = 3.0)]
    pub at: f64,
    /// Seconds a killed process stays down before it is started again.
    #[arg(long, default_value_t = 2.0)]
    pub down: f64,
    /// Seconds the SMTP server refuses mail.
    #[arg(long, default_value_t = 60)]
    pub smtp_refuse: u64,
    /// The control program (`infra/chaos`): `kill|start NAME`, `restart SERVICE`,
    /// `status`.
    #[arg(long)]
    pub ctl: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL a Floodgate process, start it again after `--down` seconds.
    Kill(&'static str),
    /// Kill a backing service hard and start it again.
    Restart(&'static str),
    /// The SMTP server answers 451 to every message for `--smtp-refuse` seconds.
    SmtpRefuses,
    /// The whole run: 10 % of confirms time out after taking effect, every webhook
    /// is delivered twice and out of order.
    ProviderFaults,
    /// Cluster: SIGKILL the Redis primary serving the event's slot; its replica is
    /// promoted; the node is started again after `--down` s and rejoins as a replica.
    RedisPrimaryKilled,
    /// Cluster: SIGSTOP that primary for `--hang` s (the port accepts, nothing
    /// answers; the replica is promoted), then SIGCONT.
    RedisPrimaryHung,
    /// Cluster: SIGKILL the leader of the JetStream stream; started after `--down` s.
    NatsLeaderKilled,
    /// Cluster: SIGKILL the Postgres primary, promote the synchronous standby
    /// (pgbouncer repointed), then rebuild the old primary as the new standby.
    PostgresFailover,
    /// Cluster: SIGKILL one of each doubled service at once (`DOUBLED`), start them
    /// again after `--down` s.
    OneOfEachKilled,
}

/// The services `infra/cluster` runs two of; `OneOfEachKilled` strikes the first.
const DOUBLED: [&str; 5] = [
    "gateway-1",
    "admitter-1",
    "orders-1",
    "relay-1",
    "fulfilment-1",
];

/// The cluster topology's matrix.
const CLUSTER: [Fault; 5] = [
    Fault::RedisPrimaryKilled,
    Fault::RedisPrimaryHung,
    Fault::NatsLeaderKilled,
    Fault::PostgresFailover,
    Fault::OneOfEachKilled,
];

/// The cluster's short matrix: a node of each engine lost.
const CLUSTER_SHORT: [Fault; 3] = [
    Fault::RedisPrimaryKilled,
    Fault::NatsLeaderKilled,
    Fault::PostgresFailover,
];

const ALL: [Fault; 12] = [
    Fault::Kill("gateway"),
    Fault::Kill("admitter"),
    Fault::Kill("orders"),
    Fault::Kill("relay"),
    Fault::Kill("fulfilment"),
    Fault::Kill("console"),
    Fault::Kill("sandbox"),
    Fault::Restart("redis"),
    Fault::Restart("nats"),
    Fault::Restart("postgres"),
    Fault::SmtpRefuses,
    Fault::ProviderFaults,
];

/// What CI runs on every push: the faults on the money path (the service that takes
/// holds and payments, the outbox relay, the mailer, the database), the provider, and
/// the queue's state lost with Redis.
const SHORT: [Fault; 6] = [
    Fault::Restart("redis"),
    Fault::Kill("orders"),
    Fault::Kill("relay"),
    Fault::Kill("fulfilment"),
    Fault::Restart("postgres"),
    Fault::ProviderFaults,
];

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Kill(p) => format!("kill-{p}"),
            Fault::Restart(s) => format!("restart-{s}"),
            Fault::SmtpRefuses => "smtp-refuses".into(),
            Fault::ProviderFaults => "provider-faults".into(),
            Fault::RedisPrimaryKilled => "kill-redis-primary".into(),
            Fault::RedisPrimaryHung => "stop-redis-primary".into(),
            Fault::NatsLeaderKilled => "kill-nats-leader".into(),
            Fault::PostgresFailover => "failover-postgres".into(),
            Fault::OneOfEachKilled => "kill-one-of-each".into(),
        }
    }

    fn describe(self, a: &Args) -> String {
        match self {
            Fault::Kill(p) => format!("`kill -9` {p}, started again after {} s", a.down),
            Fault::Restart("redis") => {
                "Redis killed and restarted without persistence (queue state lost)".into()
            }
            Fault::Restart("postgres") => {
                "PostgreSQL stopped `-m immediate` (a crash) and started".into()
            }
            Fault::Restart(s) => format!("{s} killed (SIGKILL) and restarted"),
            Fault::SmtpRefuses => format!("SMTP server answers 451 for {} s", a.smtp_refuse),
            Fault::ProviderFaults => {
                "sandbox: 10 % confirm timeouts, duplicate and out-of-order webhooks, whole run"
                    .into()
            }
            Fault::RedisPrimaryKilled => format!(
                "`kill -9` the event's Redis primary (replica promoted), back as a replica after {} s",
                a.down
            ),
            Fault::RedisPrimaryHung => format!(
                "SIGSTOP the event's Redis primary for {} s (replica promoted), then SIGCONT",
                a.hang
            ),
            Fault::NatsLeaderKilled => format!(
                "`kill -9` the JetStream stream's leader, started again after {} s",
                a.down
            ),
            Fault::PostgresFailover => {
                "`kill -9` the Postgres primary, sync standby promoted, old primary rebuilt as standby"
                    .into()
            }
            Fault::OneOfEachKilled => format!(
                "`kill -9` {} at once, started again after {} s",
                DOUBLED.join(", "),
                a.down
            ),
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        ALL.into_iter()
            .chain(CLUSTER)
            .find(|f| f.name() == s.trim())
            .with_context(|| {
                let names: Vec<String> = ALL.into_iter().chain(CLUSTER).map(Fault::name).collect();
                format!("unknown fault {s:?}; one of: {}", names.join(", "))
            })
    }
}

/// One row of the matrix.
#[derive(Debug, Serialize)]
struct Row {
    fault: String,
    what: String,
    injected_s: Option<f64>,
    recovery_s: Option<f64>,
    verdict: &'static str,
    failing: Vec<String>,
    note: String,
    /// 5xx and unanswered requests while the fault was on (forgiven).
    errors_during_fault: u64,
    /// Buyers who paid, and seats sold of the seats on sale.
    paid: u64,
    sold: u64,
    seats: u32,
    report: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        for f in ALL.into_iter().chain(CLUSTER) {
            println!("{:18} {}", f.name(), f.describe(&args));
        }
        return Ok(());
    }
    let faults: Vec<Fault> = if !args.faults.is_empty() {
        args.faults
            .iter()
            .map(|f| Fault::parse(f))
            .collect::<anyhow::Result<_>>()?
    } else {
        match (args.cluster, args.short) {
            (true, true) => CLUSTER_SHORT.to_vec(),
            (true, false) => CLUSTER.to_vec(),
            (false, true) => SHORT.to_vec(),
            (false, false) => ALL.to_vec(),
        }
    };
    // A matrix of no faults would print a table of nothing and pass.
    ensure!(!faults.is_empty(), "no fault to inject");
    ensure!(
        args.at >= 0.0 && args.down >= 0.0 && args.hang >= 0.0,
        "--at, --down and --hang are seconds"
    );
    let ctl = Ctl(args.ctl.clone());
    ctl.healthy(Duration::from_secs(30))
        .await
        .context("the stack is not healthy before the first fault")?;
    let out = args.onsale.out_dir.join("chaos");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut rows = Vec::new();
    for fault in faults {
        println!("chaos: ---- {}: {}", fault.name(), fault.describe(&args));
        let mut o = args.onsale.clone();
        o.out_dir = out.join(fault.name());
        // Buyers facing a restart keep trying for tens of seconds, as people do;
        // mail held back by a refusing server gets time to drain.
        o.patience = o.patience.max(10);
        o.pay_timeout = o.pay_timeout.max(120);
        o.email_timeout = o.email_timeout.max(args.smtp_refuse + 90);
        if fault == Fault::ProviderFaults {
            o.timeout_rate = o.timeout_rate.max(0.1);
        }
        let started = Instant::now();
        let result = onsale::judge(o.clone(), Some(disruption(fault, &args, ctl.clone()))).await;
        if fault == Fault::ProviderFaults {
            let _ = set_webhook_faults(&reqwest::Client::new(), &o.sandbox_url, false).await;
        }
        let row = match result {
            Ok(report) => {
                let d = report.disruption.clone();
                let errors = d.as_ref().map_or(0, |d| d.forgiven_errors);
                Row {
                    fault: fault.name(),
                    what: fault.describe(&args),
                    injected_s: d.as_ref().map(|d| d.injected_ms as f64 / 1000.0),
                    recovery_s: d
                        .as_ref()
                        .map(|d| (d.recovered_ms - d.injected_ms) as f64 / 1000.0),
                    verdict: report.verdict,
                    failing: report
                        .checks
                        .iter()
                        .filter(|c| !c.pass)
                        .map(|c| format!("{}: {}", c.name, c.summary))
                        .collect(),
                    note: d.map(|d| d.note).unwrap_or_default(),
                    errors_during_fault: errors,
                    paid: report.outcomes.get("paid").copied().unwrap_or(0),
                    sold: report
                        .checks
                        .iter()
                        .find(|c| c.name == "sold within capacity")
                        .and_then(|c| c.numbers["sold"].as_u64())
                        .unwrap_or(0),
                    seats: o.seats,
                    report: o.out_dir.join("report.json"),
                }
            }
            Err(e) => Row {
                fault: fault.name(),
                what: fault.describe(&args),
                injected_s: None,
                recovery_s: None,
                verdict: "ERROR",
                failing: vec![format!("{e:#}")],
                note: String::new(),
                errors_during_fault: 0,
                paid: 0,
                sold: 0,
                seats: o.seats,
                report: o.out_dir.join("report.json"),
            },
        };
        println!(
            "chaos: {} {} in {:.0} s{}",
            row.fault,
            row.verdict,
            started.elapsed().as_secs_f64(),
            if row.failing.is_empty() {
                String::new()
            } else {
                format!(": {}", row.failing.join("; "))
            }
        );
        rows.push(row);
        // Whatever happened, the next fault starts from a whole stack.
        if ctl.healthy(Duration::from_secs(60)).await.is_err() {
            bail!("the stack did not come back healthy after {}", fault.name());
        }
    }

    let md = table(&rows, &args);
    std::fs::write(out.join("chaos.md"), &md)?;
    std::fs::write(
        out.join("chaos.json"),
        serde_json::to_vec_pretty(&json!({
            "at_s": args.at, "down_s": args.down, "smtp_refuse_s": args.smtp_refuse,
            "buyers": args.onsale.buyers, "seats": args.onsale.seats,
            "window_s": args.onsale.window, "rows": rows,
        }))?,
    )?;
    println!("{md}");
    println!(
        "chaos: matrix written to {}",
        out.join("chaos.md").display()
    );
    ensure!(!rows.is_empty(), "chaos: no case ran");
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict != "PASS")
        .map(|r| r.fault.as_str())
        .collect();
    ensure!(
        failed.is_empty(),
        "chaos: verdict failed under {}",
        failed.join(", ")
    );
    Ok(())
}

fn table(rows: &[Row], args: &Args) -> String {
    let mut s = format!(
        "On-sales of {} buyers for {} seats over a {} s window; fault at {} s.\n\n\
         | fault | what | injected at | recovered after | verdict | errors during fault | buyers paid | seats sold | note |\n\
         | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |\n",
        args.onsale.buyers, args.onsale.seats, args.onsale.window, args.at
    );
    for r in rows {
        let secs = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1} s"));
        let verdict = if r.failing.is_empty() {
            r.verdict.to_owned()
        } else {
            format!("{} ({})", r.verdict, r.failing.join("; ").replace('|', "/"))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |\n",
            r.fault,
            r.what,
            secs(r.injected_s),
            secs(r.recovery_s),
            verdict,
            r.errors_during_fault,
            r.paid,
            r.sold,
            r.seats,
            r.note.replace('|', "/")
        ));
    }
    s
}

/// The control program.
#[derive(Clone)]
pub(crate) struct Ctl(pub(crate) PathBuf);

impl Ctl {
    pub(crate) async fn call(&self, args: &[&str]) -> anyhow::Result<()> {
        self.output(args).await.map(drop)
    }

    /// Runs the control program; its standard output, trimmed.
    async fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.0)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.0.display()))?;
        ensure!(
            out.status.success(),
            "{} {} failed: {}{}",
            self.0.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Polls `which` until another node than `was` holds `what`, for at most
    /// `within`: that node and the seconds it took.
    async fn moved_from(
        &self,
        what: &[&str],
        was: &str,
        within: Duration,
    ) -> Option<(String, f64)> {
        let since = Instant::now();
        while since.elapsed() < within {
            if let Ok(node) = self.which(what).await
                && node != was
            {
                return Some((node, since.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The node that holds `what` now (`which redis-primary KEY`, ...).
    pub(crate) async fn which(&self, what: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["which"];
        args.extend_from_slice(what);
        let node = self.output(&args).await?;
        let node = node.lines().last().unwrap_or_default().trim().to_owned();
        ensure!(!node.is_empty(), "`which {}` named no node", what.join(" "));
        Ok(node)
    }

    /// Waits until every process answers its health check.
    async fn healthy(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.call(&["status"]).await.is_ok() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "stack not healthy within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

fn disruption(fault: Fault, args: &Args, ctl: Ctl) -> Disruption {
    let at = Duration::from_secs_f64(args.at);
    let down = Duration::from_secs_f64(args.down);
    let refuse = Duration::from_secs(args.smtp_refuse);
    let hang = Duration::from_secs_f64(args.hang);
    Box::new(move |d: DisruptionCtx| {
        Box::pin(async move {
            if fault == Fault::ProviderFaults {
                // From the first buyer to the last: nothing to recover from but the
                // faults themselves, so no errors are forgiven.
                set_webhook_faults(&d.http, &d.sandbox, true).await?;
                return Ok(Disrupted {
                    injected_ms: 0,
                    recovered_ms: 0,
                    errors_expected: false,
                    forgiven_errors: 0,
                    note: "timeouts excluded from the 5xx count as injected".into(),
                });
            }
            tokio::time::sleep_until((d.start + at).into()).await;
            let injected_ms = since(d.start);
            let note = match fault {
                Fault::Kill(name) => {
                    ctl.call(&["kill", name]).await?;
                    tokio::time::sleep(down).await;
                    ctl.call(&["start", name]).await?;
                    String::new()
                }
                Fault::Restart(service) => {
                    ctl.call(&["restart", service]).await?;
                    ctl.healthy(Duration::from_secs(120)).await?;
                    if service == "redis" {
                        resume_after_redis_loss(&d).await?
                    } else {
                        String::new()
                    }
                }
                Fault::SmtpRefuses => {
                    refusing(&d, true).await?;
                    tokio::time::sleep(refuse).await;
                    refusing(&d, false).await?;
                    "confirmations queued and retried".into()
                }
                Fault::ProviderFaults => unreachable!("handled above"),
                Fault::RedisPrimaryKilled | Fault::RedisPrimaryHung => {
                    // The event's keys all carry `{slug}`: its slot is that tag's.
                    let tag = format!("{{{}}}", d.slug);
                    let node = ctl.which(&["redis-primary", &tag]).await?;
                    let (off, on, pause) = if fault == Fault::RedisPrimaryKilled {
                        ("kill", "start", down)
                    } else {
                        ("stop", "cont", hang)
                    };
                    ctl.call(&[off, &node]).await?;
                    let struck = Instant::now();
                    let asked = ["redis-primary", tag.as_str()];
                    let (took_over, joins) = tokio::join!(
                        ctl.moved_from(&asked, &node, pause),
                        joins_resume(&d, pause + Duration::from_secs(6)),
                    );
                    tokio::time::sleep(pause.saturating_sub(struck.elapsed())).await;
                    ctl.call(&[on, &node]).await?;
                    let took_over = match took_over {
                        Some((by, secs)) => format!("{by} primary for the slot after {secs:.1} s"),
                        None => format!(
                            "no other primary for the slot within {:.0} s",
                            pause.as_secs_f64()
                        ),
                    };
                    let joins = match joins {
                        Some(secs) => format!("a probe's joins answered again after {secs:.1} s"),
                        None => format!(
                            "a probe's joins were not answered within {:.0} s",
                            (pause + Duration::from_secs(6)).as_secs_f64()
                        ),
                    };
                    let what = if off == "kill" { "killed" } else { "stopped" };
                    format!("{node} {what}; {took_over}; {joins}")
                }
                Fault::NatsLeaderKilled => {
                    let node = ctl.which(&["nats-leader"]).await?;
                    ctl.call(&["kill", &node]).await?;
                    let struck = Instant::now();
                    // Down until another server leads (JetStream elects in seconds), or
                    // `--down`, whichever is longer.
                    let within = down.max(Duration::from_secs(15));
                    let took_over = ctl.moved_from(&["nats-leader"], &node, within).await;
                    tokio::time::sleep(down.saturating_sub(struck.elapsed())).await;
                    ctl.call(&["start", &node]).await?;
                    match took_over {
                        Some((by, secs)) => {
                            format!("leader {node} killed; {by} led after {secs:.1} s")
                        }
                        None => format!(
                            "leader {node} killed; no new leader within {:.0} s",
                            within.as_secs_f64()
                        ),
                    }
                }
                Fault::PostgresFailover => {
                    let node = ctl.which(&["pg-primary"]).await?;
                    ctl.call(&["kill", &node]).await?;
                    let promoting = Instant::now();
                    ctl.call(&["promote"]).await?;
                    let promoted = promoting.elapsed().as_secs_f64();
                    let primary = ctl.which(&["pg-primary"]).await?;
                    ctl.call(&["rebuild-standby", &node]).await?;
                    format!(
                        "{node} killed; {primary} promoted in {promoted:.1} s; {node} rebuilt as standby"
                    )
                }
                Fault::OneOfEachKilled => {
                    for name in DOUBLED {
                        ctl.call(&["kill", name]).await?;
                    }
                    tokio::time::sleep(down).await;
                    for name in DOUBLED {
                        ctl.call(&["start", name]).await?;
                    }
                    String::new()
                }
            };
            ctl.healthy(Duration::from_secs(120)).await?;
            Ok(Disrupted {
                injected_ms,
                recovered_ms: since(d.start),
                errors_expected: true,
                forgiven_errors: 0,
                note,
            })
        })
    })
}

/// A probe visitor joining the event every 100 ms from the moment a fault strikes:
/// the seconds until a join is answered 200 again after one was not (0 when none
/// failed), or `None` if none was within `within`.
async fn joins_resume(d: &DisruptionCtx, within: Duration) -> Option<f64> {
    let url = format!("{}/queue/{}/join", d.base, d.slug);
    let start = Instant::now();
    let mut failed = false;
    while start.elapsed() < within {
        let ok = d
            .http
            .post(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        match (ok, failed) {
            (true, true) => return Some(start.elapsed().as_secs_f64()),
            // Answered before the node was noticed gone: keep probing a little.
            (true, false) if start.elapsed() > Duration::from_secs(3) => return Some(0.0),
            (true, false) => {}
            (false, _) => failed = true,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The operator's part after Redis lost the queue: the console restores the event
/// paused; once it shows so, the operator resumes it.
async fn resume_after_redis_loss(d: &DisruptionCtx) -> anyhow::Result<String> {
    let url = format!("{}/console/api/events/{}/admission", d.base, d.slug);
    let seen = Instant::now();
    let deadline = seen + Duration::from_secs(60);
    let mode = loop {
        let r = d
            .http
            .get(&url)
            .bearer_auth(&d.operator_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            let mode = v["mode"].as_str().unwrap_or("").to_owned();
            if !mode.is_empty() {
                break mode;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the event's queue was not restored within 60 s of Redis coming back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ensure!(
        mode == "paused",
        "after the Redis loss the queue came back {mode:?}, not paused"
    );
    let restored_after = seen.elapsed().as_secs_f64();
    let r = d
        .http
        .put(&url)
        .bearer_auth(&d.operator_token)
        .json(&json!({"mode": "on", "reason": "chaos: resume after Redis loss"}))
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "resuming the queue answered {}",
        r.status()
    );
    Ok(format!(
        "queue restored paused {restored_after:.1} s after Redis was back; operator resumed it"
    ))
}

async fn refusing(d: &DisruptionCtx, on: bool) -> anyhow::Result<()> {
    let r = d
        .http
        .put(format!("{}/refusing", d.sink))
        .body(if on { "true" } else { "false" })
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "SMTP sink /refusing: {}",
        r.status()
    );
    Ok(())
}

async fn set_webhook_faults(http: &reqwest::Client, sandbox: &str, on: bool) -> anyhow::Result<()> {
    let r = http
        .put(format!("{}/admin/faults", sandbox.trim_end_matches('/')))
        .json(&json!({"duplicate_webhooks": on, "out_of_order_webhooks": on}))
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "sandbox /admin/faults: {}",
        r.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_named_once_and_parses_back() {
        let names: std::collections::BTreeSet<String> = ALL.map(|f| f.name()).into();
        assert_eq!(names.len(), ALL.len());
        for f in ALL {
            assert_eq!(Fault::parse(&f.name()).unwrap(), f);
        }
        assert!(Fault::parse("kill-everything").is_err());
        assert!(SHORT.iter().all(|f| ALL.contains(f)));
        let cluster: std::collections::BTreeSet<String> = CLUSTER.map(|f| f.name()).into();
        assert_eq!(cluster.len(), CLUSTER.len());
        assert!(cluster.is_disjoint(&names));
        for f in CLUSTER {
            assert_eq!(Fault::parse(&f.name()).unwrap(), f);
        }
        assert!(CLUSTER_SHORT.iter().all(|f| CLUSTER.contains(f)));
    }
}
