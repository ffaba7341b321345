//! (c) and (c2): the holds writer, `orders::holds::HoldDesk`, called in this process —
//! group commit without HTTP, JSON or token checks in the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use orders::buyers::{BuyerName, Email};
use orders::holds::{HoldDesk, HoldRequest};
use uuid::Uuid;

use super::measure::{
    ClientTally, CpuWindow, check_ledger, db_now, ledger, measurement, micros, timeline,
};
use super::setup::{NAME, ScratchDb, buyer_email, checkpoint, create_event};
use super::{Measurement, Options};

fn hold_request(event_id: Uuid, tier_id: Uuid, seq: i64) -> anyhow::Result<HoldRequest> {
    Ok(HoldRequest {
        event_id,
        tier_id,
        quantity: 1,
        jti: Uuid::new_v4().to_string(),
        seq: Some(seq),
        email: Email::parse(&buyer_email(seq))?,
        name: BuyerName::parse(NAME)?,
        ttl_seconds: 600,
    })
}

/// (c): the hold writer called directly, `clients` tasks in a loop, with its default
/// writers per tier; (c2) with two.
pub(super) async fn run(
    opts: &Options,
    server: &str,
    writers: usize,
) -> anyhow::Result<Measurement> {
    let case = if writers == orders::holds::DEFAULT_WRITERS_PER_TIER {
        "c"
    } else {
        "c2"
    };
    let scratch = ScratchDb::create(server, true, 8).await?;
    let pool = scratch.pool().clone();
    let (event_id, tier_id) = create_event(&pool, "bench-desk").await?;
    let desk = HoldDesk::with_writers(pool.clone(), writers);
    // One hold before the clock starts: the writer task and its connection exist.
    desk.hold(hold_request(event_id, tier_id, 0)?).await?;
    let warm = ledger(&pool, tier_id).await?;
    checkpoint(&pool).await;

    let seq = Arc::new(AtomicUsize::new(1));
    let db_start = db_now(&pool).await?;
    let cpu = CpuWindow::start();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let desk = desk.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed) as i64;
                let request = match hold_request(event_id, tier_id, n) {
                    Ok(r) => r,
                    Err(e) => {
                        tally.error(e.to_string());
                        break;
                    }
                };
                let t0 = Instant::now();
                match desk.hold(request).await {
                    Ok(_) => {
                        tally.ok += 1;
                        tally.latencies.push(micros(t0.elapsed()));
                    }
                    Err(e) => tally.error(e.to_string()),
                }
            }
            tally
        }));
    }
    let mut tally = ClientTally::default();
    for t in tasks {
        tally.merge(t.await.context("a client task panicked")?);
    }
    let elapsed = (start.elapsed(), cpu.finish());

    let after = ledger(&pool, tier_id).await?;
    check_ledger(case, &after, tally.ok + 1)?;
    let batches = u64::try_from(after.batches - warm.batches).unwrap_or(0);
    let timeline = timeline(&pool, tier_id, db_start).await?;
    let notes = vec![format!(
        "{} tokio tasks calling HoldDesk::hold; pool of 8; MAX_BATCH {}; {writers} writer(s) per tier",
        opts.clients,
        orders::holds::MAX_BATCH
    )];
    drop(desk);
    drop(pool);
    Ok(measurement(
        (
            case,
            if case == "c" {
                "orders HoldDesk in-process (group commit, default writers per tier)"
            } else {
                "orders HoldDesk in-process, two writers per tier taking turns"
            },
        ),
        tally,
        elapsed,
        batches,
        notes,
        timeline,
    ))
}
