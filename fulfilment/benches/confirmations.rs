//! Confirmations per second to the local SMTP sink, through the real path: paid orders
//! (the orders crate's hold and settlement code, so each payment writes its outbox row)
//! → outbox relay → JetStream → the fulfilment consumer → the sender → SMTP. Real
//! Postgres (a database of its own), real NATS (a stream of its own), the dev SMTP sink
//! in-process on port 0.
//!
//!   cargo bench -p fulfilment --bench confirmations            # 2,000 tickets
//!   BENCH_TICKETS=500 cargo bench -p fulfilment --bench confirmations
//!
//! Three measurements in one run:
//! 1. **On-sale**: `BENCH_TICKETS` one-ticket orders paid by 16 concurrent payers while
//!    the whole pipeline runs; payment → email p50/p99/max. Asserts that every one was
//!    emailed exactly once and within 60 s of its payment.
//! 2. **Backlog**: as many orders again paid while the relay is held, then released at
//!    once: confirmations per second the pipeline can sustain (not bounded by how fast
//!    the payers pay).
//! 3. **Baseline**: lettre alone sending the same raw message as many times to the same
//!    sink, same pool configuration, same concurrency as the sender's batch (32): the
//!    ceiling the SMTP side sets, so the ratio shows fulfilment's own overhead.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use support::TestFulfilment;
use uuid::Uuid;

const PAYERS: usize = 16;
/// What the sender sends at once (`run_workers` drains in batches of 32).
const SENDER_BATCH: usize = 32;
const TARGET: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` (the test suite) runs
    // bench targets too, without it: there the bench only proves it compiles.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let tickets: usize = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut t = support::spawn().await;
    // The reconciler would otherwise queue confirmations behind the pipeline's back
    // after 200 ms (the tests' setting): only the JetStream path may deliver here.
    let mut config = (*t.state.config).clone();
    config.reconcile_after = Duration::from_secs(3600);
    t.state.config = Arc::new(config);

    let consumer = {
        let (s, js) = (t.state.clone(), t.js.clone());
        tokio::spawn(async move { fulfilment::consumer::run(s, js, std::future::pending()).await })
    };
    let (_workers_stop, workers_run) = platform::shutdown::Shutdown::new();
    let workers = tokio::spawn(fulfilment::app::run_workers(t.state.clone(), workers_run));

    // 1. On-sale: payments while everything runs.
    let relay = start_relay(&t).await;
    let onsale_event = event(&t, "bench-onsale", tickets).await;
    let started = Instant::now();
    let orders = pay(&t, onsale_event, tickets, "onsale").await;
    let paying = started.elapsed();
    let mails = wait_for(&t, tickets, TARGET + Duration::from_secs(30)).await;
    let onsale = judge(&t, &orders, &mails).await?;
    relay.abort();

    // 2. Backlog: payments with the relay held, then released.
    let backlog_event = event(&t, "bench-backlog", tickets).await;
    let held = pay(&t, backlog_event, tickets, "backlog").await;
    let released_at = Utc::now();
    let relay = start_relay(&t).await;
    let mails = wait_for(&t, 2 * tickets, Duration::from_secs(120)).await;
    judge(&t, &held, &mails).await?;
    relay.abort();
    let last = held.iter().map(|o| mails[&o.1][0]).max().expect("orders");
    let backlog_secs = (last - released_at).as_seconds_f64();
    let stages = stages(&t, &held, released_at).await?;

    // 3. Baseline: lettre alone, same message, same sink, same pool, same concurrency.
    let raw = t.sink.messages()[0].raw.clone();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&t.sink.url())?
        .pool_config(PoolConfig::new())
        .timeout(Some(Duration::from_secs(15)))
        .build();
    let baseline_started = Instant::now();
    let sent: Vec<_> = futures::stream::iter(0..tickets)
        .map(|i| {
            let transport = &transport;
            let raw = raw.as_bytes();
            async move {
                let envelope = Envelope::new(
                    Some("tickets@floodgate.test".parse()?),
                    vec![format!("baseline{i}@loadtest.invalid").parse()?],
                )?;
                transport.send_raw(&envelope, raw).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SENDER_BATCH)
        .collect()
        .await;
    let baseline_secs = baseline_started.elapsed().as_secs_f64();
    for r in sent {
        r?;
    }

    consumer.abort();
    workers.abort();
    t.cleanup().await;

    let backlog_rate = tickets as f64 / backlog_secs;
    let baseline_rate = tickets as f64 / baseline_secs;
    let report = json!({
        "tickets": tickets,
        "message_bytes": raw.len(),
        "onsale": {
            "payers": PAYERS,
            "paying_s": paying.as_secs_f64(),
            "payments_per_s": tickets as f64 / paying.as_secs_f64(),
            "confirmations_per_s": tickets as f64 / onsale.span_s,
            "paid_to_email_ms": {"p50": onsale.p50_ms, "p99": onsale.p99_ms, "max": onsale.max_ms},
        },
        "backlog": {
            "all_sent_s": backlog_secs,
            "confirmations_per_s": backlog_rate,
            "last_done_after_release_s": stages,
        },
        "baseline_lettre": {
            "sent_s": baseline_secs,
            "messages_per_s": baseline_rate,
            "concurrency": SENDER_BATCH,
        },
        "fulfilment_vs_baseline": backlog_rate / baseline_rate,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// When each stage finished its last order of the backlog, seconds after the release:
/// the stage that ends last, long after the one before it, is the bottleneck.
async fn stages(
    t: &TestFulfilment,
    orders: &[(Uuid, String)],
    released_at: DateTime<Utc>,
) -> anyhow::Result<serde_json::Value> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.0).collect();
    let (published, queued, sent): (DateTime<Utc>, i64, DateTime<Utc>) = sqlx::query_as(
        // A delivery's id is a UUIDv7: its first 48 bits are when the consumer queued it.
        r#"SELECT (SELECT max(published_at) FROM outbox
                   WHERE (payload->>'order_id')::uuid = ANY($1)),
                  max(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::int8),
                  max(sent_at)
           FROM deliveries WHERE order_id = ANY($1)"#,
    )
    .bind(&ids)
    .fetch_one(&t.db.pool)
    .await?;
    let since = |at: DateTime<Utc>| (at - released_at).as_seconds_f64();
    let queued = DateTime::from_timestamp_millis(queued).expect("a time");
    Ok(json!({
        "relay_published": since(published),
        "consumer_queued": since(queued),
        "sender_sent": since(sent),
    }))
}

async fn start_relay(t: &TestFulfilment) -> tokio::task::JoinHandle<()> {
    let relay = orders::outbox::Relay::connect(
        t.db.pool.clone(),
        "nats://127.0.0.1:4222",
        t.state.config.stream.clone(),
    )
    .await
    .expect("relay connects");
    tokio::spawn(async move { relay.run(std::future::pending()).await })
}

async fn event(t: &TestFulfilment, slug: &str, capacity: usize) -> Uuid {
    let starts_at = Utc::now() + chrono::Duration::days(3);
    let req: orders::events::NewEventRequest = serde_json::from_value(json!({
        "slug": slug, "title": "Rust & Friends <live>",
        "starts_at": starts_at, "ends_at": starts_at + chrono::Duration::hours(2),
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "tiers": [{"code": "ga", "name": "General", "price_cents": 2500, "currency": "EUR",
                   "capacity": capacity}],
        "queue": {"mode": "off"}
    }))
    .expect("event request");
    let mut tx = t.db.pool.begin().await.expect("tx");
    let e = orders::events::create(&mut tx, &req.parse().expect("valid event"))
        .await
        .expect("event created");
    tx.commit().await.expect("commit");
    e.id
}

/// `n` one-ticket orders paid by `PAYERS` concurrent payers: `(order, recipient)`.
async fn pay(t: &TestFulfilment, event: Uuid, n: usize, tag: &str) -> Vec<(Uuid, String)> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let email = format!("{tag}{i}@loadtest.invalid");
            (t.paid_order(event, &email, 1).await, email)
        })
        .buffer_unordered(PAYERS)
        .collect()
        .await
}

/// Waits until the sink holds `total` messages (or `limit` passes): recipient → times.
async fn wait_for(
    t: &TestFulfilment,
    total: usize,
    limit: Duration,
) -> HashMap<String, Vec<DateTime<Utc>>> {
    let until = Instant::now() + limit;
    while t.sink.messages().len() < total && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything sent twice would arrive right behind; give it the chance to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut by_recipient: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for m in t.sink.messages() {
        for to in m.to {
            by_recipient.entry(to).or_default().push(m.received_at);
        }
    }
    by_recipient
}

struct Judged {
    span_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Every order emailed exactly once, within the target of its payment.
async fn judge(
    t: &TestFulfilment,
    orders: &[(Uuid, String)],
    mails: &HashMap<String, Vec<DateTime<Utc>>>,
) -> anyhow::Result<Judged> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.0).collect();
    let paid: HashMap<Uuid, DateTime<Utc>> =
        sqlx::query_as("SELECT id, paid_at FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&t.db.pool)
            .await?
            .into_iter()
            .collect();
    let mut latencies = Vec::with_capacity(orders.len());
    let (mut first_paid, mut last_mail) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for (order, email) in orders {
        let times = mails.get(email).map(Vec::as_slice).unwrap_or_default();
        anyhow::ensure!(
            times.len() == 1,
            "order {order}: {} confirmations, expected exactly one",
            times.len()
        );
        let paid_at = paid[order];
        first_paid = Some(first_paid.map_or(paid_at, |f| f.min(paid_at)));
        last_mail = Some(last_mail.map_or(times[0], |l| l.max(times[0])));
        latencies.push((times[0] - paid_at).to_std().unwrap_or_default());
    }
    latencies.sort();
    let max = *latencies.last().expect("orders");
    anyhow::ensure!(
        max <= TARGET,
        "the slowest confirmation took {max:?} after payment (target {TARGET:?})"
    );
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE order_id = ANY($1) AND status = 'sent'",
    )
    .bind(&ids)
    .fetch_one(&t.db.pool)
    .await?;
    anyhow::ensure!(
        sent as usize == orders.len(),
        "{sent} deliveries recorded sent"
    );
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64()
            * 1000.0
    };
    Ok(Judged {
        span_s: (last_mail.expect("mail") - first_paid.expect("paid")).as_seconds_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: max.as_secs_f64() * 1000.0,
    })
}
