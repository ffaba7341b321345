//! `loadtest bench-mail`: confirmations delivered per second to the SMTP server, through
//! the whole path (console resend → outbox → relay → JetStream → fulfilment → SMTP),
//! for every paid order of an event at once — and, in the same run, a plain SMTP client
//! sending as many messages of the same size to the same server over the same number
//! of connections, the baseline. Run it after an on-sale (which leaves the paid orders):
//!
//!   loadtest onsale --buyers 20000 --seats 2000 --window 30
//!   loadtest bench-mail --event <the on-sale's slug>
//!
//! Every resend is a real confirmation with the buyer's current link; the buyers are
//! the simulator's (`@loadtest.invalid`), so nobody is mailed twice for real.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lettre::message::header::ContentType;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::onsale::verdict::CONFIRMATION_SUBJECT;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The event whose paid orders get their confirmation again.
    #[arg(long)]
    pub event: String,
    /// At most this many orders (all paid ones by default).
    #[arg(long)]
    pub orders: Option<i64>,
    /// Concurrent resend requests, and SMTP connections of the baseline.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Gateway base URL (the console API behind it).
    #[arg(
        long,
        env = "FLOODGATE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[arg(long, env = "FLOODGATE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/floodgate"
    )]
    pub database_url: String,
    /// The SMTP server fulfilment sends to, for the baseline (host:port).
    #[arg(long, env = "SMTP_SINK_LISTEN", default_value = "127.0.0.1:2525")]
    pub smtp: String,
    /// The dev sink's HTTP listing (host:port), where arrivals are counted.
    #[arg(long, env = "SMTP_SINK_HTTP", default_value = "127.0.0.1:2580")]
    pub sink_http: String,
    /// Give up waiting for the confirmations after this long (s).
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

#[derive(Deserialize)]
struct Listed {
    to: Vec<String>,
    received_at: DateTime<Utc>,
    subject: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = sqlx::PgPool::connect(&args.database_url).await?;
    let orders: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT o.id, lower(o.buyer_email) FROM orders o JOIN events e ON e.id = o.event_id
         WHERE e.slug = $1 AND o.status = 'paid' ORDER BY o.paid_at LIMIT $2",
    )
    .bind(&args.event)
    .bind(args.orders.unwrap_or(i64::MAX))
    .fetch_all(&db)
    .await?;
    ensure!(
        !orders.is_empty(),
        "event {} has no paid orders",
        args.event
    );
    let n = orders.len();
    let http = reqwest::Client::new();
    let sink = format!("http://{}/messages", args.sink_http);

    // Baseline: the same number of messages of about a confirmation's size, straight
    // to the server over as many pooled connections as resends run at once.
    let sample_size = 12 * 1024;
    let (host, port) = args.smtp.rsplit_once(':').context("--smtp is host:port")?;
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port.parse()?)
        .pool_config(PoolConfig::new().max_size(args.concurrency as u32))
        .build();
    let body = "x".repeat(sample_size);
    let started = Instant::now();
    let sent = futures::stream::iter(0..n)
        .map(|i| {
            let smtp = smtp.clone();
            let body = body.clone();
            async move {
                let m = Message::builder()
                    .from("bench@floodgate.local".parse()?)
                    .to(format!("baseline-{i}@loadtest.invalid").parse()?)
                    .subject("bench-mail baseline")
                    .header(ContentType::TEXT_PLAIN)
                    .body(body)?;
                smtp.send(m).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    let baseline_s = started.elapsed().as_secs_f64();
    let failed = sent.iter().filter(|r| r.is_err()).count();
    ensure!(failed == 0, "baseline: {failed} of {n} sends failed");
    let baseline_rate = n as f64 / baseline_s;
    println!(
        "bench-mail: baseline {n} messages straight to SMTP in {baseline_s:.2} s = {baseline_rate:.0}/s"
    );

    // Through Floodgate: one resend per order, as fast as the console takes them.
    let since = Utc::now();
    let started = Instant::now();
    let posted: Vec<anyhow::Result<(String, DateTime<Utc>)>> = futures::stream::iter(orders)
        .map(|(id, email)| {
            let http = http.clone();
            let url = format!("{}/console/api/orders/{id}/resend", args.url);
            let token = args.operator_token.clone();
            async move {
                let at = Utc::now();
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .header(
                        "Idempotency-Key",
                        format!("bench-mail-{}-{id}", since.timestamp_millis()),
                    )
                    .send()
                    .await?;
                ensure!(r.status().is_success(), "resend of {id}: {}", r.status());
                Ok((email, at))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let posted_s = started.elapsed().as_secs_f64();
    let mut asked: HashMap<String, DateTime<Utc>> = HashMap::new();
    for p in posted {
        let (email, at) = p?;
        asked.insert(email, at);
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let arrived = loop {
        let listed: Vec<Listed> = http.get(&sink).send().await?.json().await?;
        let arrived: HashMap<String, DateTime<Utc>> = listed
            .into_iter()
            .filter(|m| {
                m.received_at >= since
                    && m.subject
                        .as_deref()
                        .is_some_and(|s| s.starts_with(CONFIRMATION_SUBJECT))
            })
            .flat_map(|m| {
                let at = m.received_at;
                m.to.into_iter().map(move |t| (t.to_ascii_lowercase(), at))
            })
            .filter(|(t, _)| asked.contains_key(t))
            .collect();
        if arrived.len() >= n || Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ensure!(
        arrived.len() == n,
        "only {} of {n} confirmations arrived within {} s",
        arrived.len(),
        args.timeout
    );
    let last = arrived.values().max().copied().unwrap_or(since);
    let through_s = (last - since).num_milliseconds() as f64 / 1000.0;
    let rate = n as f64 / through_s;
    let mut waits: Vec<i64> = arrived
        .iter()
        .map(|(t, at)| (*at - asked[t]).num_milliseconds())
        .collect();
    waits.sort_unstable();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    println!(
        "bench-mail: {n} confirmations resent through Floodgate (requests took {posted_s:.2} s); \
         the last arrived {through_s:.2} s after the first request = {rate:.0}/s"
    );
    println!(
        "bench-mail: request → email p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        waits.last().copied().unwrap_or(0)
    );
    println!(
        "bench-mail: confirmations/s through Floodgate / plain SMTP client: {:.2}×",
        rate / baseline_rate
    );
    Ok(())
}
