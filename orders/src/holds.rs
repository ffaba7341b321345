//! Holding inventory: the on-sale's hot path.
//!
//! Every hold on a tier changes one row, and Postgres serialises writers of a row, so
//! one transaction per hold caps a popular tier at roughly a thousand holds a second
//! on this machine however many connections are thrown at it. Instead each tier has
//! its writer: requests queue on a channel, the writer takes everything waiting (up to
//! [`MAX_BATCH`]), and commits them in one transaction — a group commit. The batch is
//! one call of the `hold_batch` database function in autocommit, so it costs one round
//! trip and the tier row is locked only while Postgres works: the function locks the
//! row, hands out seats in arrival order, inserts the holds and their audit rows, and
//! moves `held` by what was inserted; the `sold + held <= capacity` CHECK still guards
//! the sum. One active hold per admission is the partial unique index's job, also when
//! two tiers' writers race for one admission; an admission that has bought (a
//! converted hold) holds nothing more, so a replayed token is refused. If a batch
//! fails as a whole all the same, it is retried hold by hold so one bad request
//! cannot fail its neighbours. Optionally more writers take turns on a tier (see
//! [`write_tier`]). No lock is held across a client round trip: the transaction only
//! ever waits on Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::buyers::{BuyerName, Email};
use crate::{Error, checkout};
use contract::states::HoldStatus;

/// The most holds committed in one transaction.
pub const MAX_BATCH: usize = 128;

#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub event_id: Uuid,
    pub tier_id: Uuid,
    pub quantity: i32,
    /// The admission this hold is made under (one active hold each).
    pub jti: String,
    pub seq: Option<i64>,
    pub email: Email,
    pub name: BuyerName,
    pub ttl_seconds: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoldCreated {
    pub hold_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub amount_cents: i64,
    pub currency: String,
}

struct Pending {
    request: HoldRequest,
    respond: oneshot::Sender<Result<HoldCreated, Error>>,
}

/// Hands hold requests to their tier's writer.
#[derive(Clone)]
pub struct HoldDesk {
    db: PgPool,
    writers: Arc<Mutex<HashMap<Uuid, mpsc::Sender<Pending>>>>,
    writers_per_tier: usize,
    per_buyer: i32,
}

impl HoldDesk {
    pub fn new(db: PgPool) -> Self {
        Self::with_writers(db, DEFAULT_WRITERS_PER_TIER)
    }

    /// A desk with `writers_per_tier` writers taking turns on each tier (at least one);
    /// with more than one, the next batch waits on the tier row while one commits.
    pub fn with_writers(db: PgPool, writers_per_tier: usize) -> Self {
        Self {
            db,
            writers: Arc::default(),
            writers_per_tier: writers_per_tier.max(1),
            per_buyer: DEFAULT_HOLDS_PER_BUYER,
        }
    }

    /// How many active holds one buyer (by e-mail) may have in an event (at least one).
    pub fn per_buyer(mut self, holds: i32) -> Self {
        self.per_buyer = holds.max(1);
        self
    }

    pub async fn hold(&self, request: HoldRequest) -> Result<HoldCreated, Error> {
        let writer = self.writer(request.tier_id);
        let (respond, answer) = oneshot::channel();
        writer
            .send(Pending { request, respond })
            .await
            .map_err(|_| Error::Unavailable("hold writer stopped"))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("hold writer stopped"))?
    }

    fn writer(&self, tier_id: Uuid) -> mpsc::Sender<Pending> {
        let mut writers = self.writers.lock().expect("writers lock");
        writers
            .entry(tier_id)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                let policy = Policy {
                    per_buyer: self.per_buyer,
                };
                tokio::spawn(write_tier(
                    self.db.clone(),
                    rx,
                    self.writers_per_tier,
                    policy,
                ));
                tx
            })
            .clone()
    }
}

/// Writers per tier unless configured (`ORDERS_HOLD_WRITERS`). One: `bench-holds`
/// measured two writers taking turns at 0.64–0.74× one on this two-core machine
/// (0.85–0.93× before a batch became one call) — taking turns in order needs the row
/// lock as a round trip of its own, and a second writer halves the batches. The bench
/// compares both in every run.
pub const DEFAULT_WRITERS_PER_TIER: usize = 1;

/// Active holds one buyer may have in one event unless configured
/// (`ORDERS_HOLDS_PER_BUYER`). With the queue off nothing else stops a script from
/// holding the whole house every hold TTL; a person buying for a group asks for more
/// seats in one hold, and a few holds leave room for two tiers and a changed mind.
pub const DEFAULT_HOLDS_PER_BUYER: i32 = 3;

/// The rules every batch of a desk is committed under.
#[derive(Clone, Copy, Debug)]
struct Policy {
    per_buyer: i32,
}

/// Runs a tier's writers. With one, each batch is a single call of `hold_batch`. With
/// several they take turns: each takes the next batch and locks the tier row while
/// holding the `turn`, passing it on only once the lock is granted, so batch n+1 is
/// gathered and queued on the row while batch n works and commits, yet batches lock
/// the row, and so get their seats, in the order they were taken. (Passing the turn
/// once the call is sent would not do: two writers' calls, once sent, may reach the
/// row in either order.) That costs the lock and the transaction's round trips again.
async fn write_tier(db: PgPool, rx: mpsc::Receiver<Pending>, writers: usize, policy: Policy) {
    let turn = Arc::new(tokio::sync::Mutex::new(rx));
    let take_turns = writers > 1;
    let writers: Vec<_> = (0..writers)
        .map(|_| tokio::spawn(write_batches(db.clone(), turn.clone(), take_turns, policy)))
        .collect();
    for w in writers {
        let _ = w.await;
    }
}

type Turn = Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>;

/// How long a lone writer keeps its connection with no hold request waiting.
const KEEP_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

async fn write_batches(db: PgPool, turn: Turn, take_turns: bool, policy: Policy) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A lone writer keeps its connection while requests keep coming: taking one from
    // the pool costs a round trip of its own (the pool pings a connection before
    // handing it out). Between two batches the queue is often empty for a moment (the
    // answered buyers have not asked again yet), so the connection goes back only
    // after [`KEEP_IDLE`] without a request: a quiet tier holds none.
    let mut kept: Option<PoolConnection<Postgres>> = None;
    loop {
        let mut rx = turn.lock().await;
        let received = if kept.is_some() {
            match tokio::time::timeout(KEEP_IDLE, rx.recv_many(&mut batch, MAX_BATCH)).await {
                Ok(n) => n,
                Err(_idle) => {
                    kept = None;
                    rx.recv_many(&mut batch, MAX_BATCH).await
                }
            }
        } else {
            rx.recv_many(&mut batch, MAX_BATCH).await
        };
        if received == 0 {
            return;
        }
        // The requests move out of the batch (no copy on the hot path); the answers
        // go back in the same order.
        let (requests, answers): (Vec<HoldRequest>, Vec<_>) =
            batch.drain(..).map(|p| (p.request, p.respond)).unzip();
        let outcome = if take_turns {
            commit_in_turn(&db, rx, &requests, policy).await
        } else {
            drop(rx);
            commit_on_kept(&db, &mut kept, &requests, policy).await
        };
        match outcome {
            Ok(results) => {
                for (answer, r) in answers.into_iter().zip(results) {
                    let _ = answer.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = requests.len(), "hold batch failed; retrying one by one");
                for (request, answer) in requests.iter().zip(answers) {
                    let r = match commit(&db, std::slice::from_ref(request), policy).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(Error::Unavailable("empty batch"))),
                        Err(e) => Err(map_single_failure(e)),
                    };
                    let _ = answer.send(r);
                }
            }
        }
    }
}

/// A lone hold that still fails on the unique index is a second hold for one admission.
fn map_single_failure(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("holds_one_live_per_admission") => {
            Error::HoldExists
        }
        sqlx::Error::Database(d) if d.constraint() == Some("tiers_no_oversell") => Error::SoldOut,
        _ => Error::Database(e),
    }
}

/// Commits a batch on the connection the writer kept, or on one from the pool; a
/// connection whose batch failed is given back rather than trusted again.
async fn commit_on_kept(
    db: &PgPool,
    kept: &mut Option<PoolConnection<Postgres>>,
    requests: &[HoldRequest],
    policy: Policy,
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let conn = match kept {
        Some(conn) => conn,
        None => kept.insert(db.acquire().await?),
    };
    let results = commit(&mut **conn, requests, policy).await;
    if results.is_err() {
        *kept = None;
    }
    results
}

/// Commits a batch in a transaction whose first act is to lock the tier row, handing
/// the `turn` to the next writer once the lock is granted (see [`write_tier`]).
async fn commit_in_turn(
    db: &PgPool,
    turn: tokio::sync::MutexGuard<'_, mpsc::Receiver<Pending>>,
    requests: &[HoldRequest],
    policy: Policy,
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let mut tx = db.begin().await?;
    sqlx::query!(
        "SELECT 1 AS locked FROM tiers WHERE id = $1 AND event_id = $2 FOR UPDATE",
        first.tier_id,
        first.event_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    drop(turn);
    let results = commit(&mut *tx, requests, policy).await?;
    tx.commit().await?;
    Ok(results)
}

/// Commits one batch for one tier with one call of the `hold_batch` function
/// (migration `20261206000007_hold_batches.sql`): in autocommit the statement's own
/// transaction is the batch's, so a batch costs one round trip whatever its size, and
/// the tier row is locked only while Postgres works on it. The function locks the row,
/// hands out seats in arrival order, inserts the holds and their audit rows and moves
/// `held`; per-request refusals are in the returned vector.
async fn commit<'c>(
    db: impl sqlx::PgExecutor<'c>,
    requests: &[HoldRequest],
    policy: Policy,
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let batch = Columns::new(requests);
    let rows = sqlx::query!(
        r#"SELECT idx AS "idx!", outcome AS "outcome!", amount_cents, currency
           FROM hold_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"#,
        first.event_id,
        first.tier_id,
        &batch.ids,
        &batch.quantities,
        &batch.jtis,
        &batch.firsts,
        &batch.seqs as &[Option<i64>],
        &batch.emails,
        &batch.names,
        &batch.expiries,
        &batch.buyers,
        policy.per_buyer,
    )
    .fetch_all(db)
    .await?;
    let mut results: Vec<Result<HoldCreated, Error>> = requests
        .iter()
        .map(|_| Err(Error::Unavailable("hold not decided")))
        .collect();
    for row in rows {
        // One row per request, numbered from 1 as the arrays are.
        let i = usize::try_from(row.idx - 1).unwrap_or(usize::MAX);
        let Some(result) = results.get_mut(i) else {
            continue;
        };
        *result = match (row.outcome.as_str(), row.amount_cents, row.currency) {
            ("held", Some(amount_cents), Some(currency)) => Ok(HoldCreated {
                hold_id: batch.ids[i],
                expires_at: batch.expiries[i],
                amount_cents,
                currency,
            }),
            ("sold_out", ..) => Err(Error::SoldOut),
            ("hold_exists", ..) => Err(Error::HoldExists),
            ("admission_used", ..) => Err(Error::AdmissionUsed),
            ("order_pending", ..) => Err(Error::OrderPending),
            ("buyer_limit", ..) => Err(Error::BuyerLimit),
            _ => Err(Error::Unavailable("hold not decided")),
        };
    }
    Ok(results)
}

/// A batch as the columns `hold_batch` takes, in arrival order.
struct Columns {
    ids: Vec<Uuid>,
    quantities: Vec<i32>,
    jtis: Vec<String>,
    /// For each request, the 1-based index of the batch's first request for its
    /// admission: the function tells duplicates apart by number, cheaply.
    firsts: Vec<i32>,
    /// The same for buyers: the index of the batch's first request with the same
    /// e-mail, compared case-insensitively, for the per-buyer cap.
    buyers: Vec<i32>,
    seqs: Vec<Option<i64>>,
    emails: Vec<String>,
    names: Vec<String>,
    expiries: Vec<DateTime<Utc>>,
}

impl Columns {
    fn new(requests: &[HoldRequest]) -> Self {
        let now = Utc::now();
        let mut first: HashMap<&str, i32> = HashMap::with_capacity(requests.len());
        let firsts = (1..)
            .zip(requests)
            .map(|(k, r)| *first.entry(r.jti.as_str()).or_insert(k))
            .collect();
        let mut buyer: HashMap<String, i32> = HashMap::with_capacity(requests.len());
        let buyers = (1..)
            .zip(requests)
            .map(|(k, r)| *buyer.entry(r.email.as_str().to_lowercase()).or_insert(k))
            .collect();
        Self {
            buyers,
            ids: requests.iter().map(|_| Uuid::now_v7()).collect(),
            quantities: requests.iter().map(|r| r.quantity).collect(),
            jtis: requests.iter().map(|r| r.jti.clone()).collect(),
            firsts,
            seqs: requests.iter().map(|r| r.seq).collect(),
            emails: requests
                .iter()
                .map(|r| r.email.as_str().to_owned())
                .collect(),
            names: requests
                .iter()
                .map(|r| r.name.as_str().to_owned())
                .collect(),
            expiries: requests
                .iter()
                .map(|r| now + Duration::seconds(i64::from(r.ttl_seconds)))
                .collect(),
        }
    }
}

/// A hold closed by the buyer, the sweeper or a payment.
#[derive(Debug, Clone)]
pub struct ClosedHold {
    pub id: Uuid,
    pub event_id: Uuid,
    pub tier_id: Uuid,
    pub quantity: i32,
    pub admission_seq: Option<i64>,
}

/// A hold answers only to the admission that made it (`admission_jti`): `jti` is the
/// caller's admission, `None` when no admission is asked for (an operator).
pub fn answers_to(admission_jti: &str, jti: Option<&str>) -> Result<(), Error> {
    match jti {
        Some(jti) if jti != admission_jti => {
            Err(Error::Forbidden("this hold belongs to another admission"))
        }
        _ => Ok(()),
    }
}

/// Releases an active hold on the buyer's request; the seats return at once, and an
/// order made from it (unpaid, or the hold would not be active) is cancelled with it.
pub async fn release(db: &PgPool, hold_id: Uuid, jti: Option<&str>) -> Result<ClosedHold, Error> {
    let mut tx = db.begin().await?;
    let hold = sqlx::query!(
        r#"SELECT id, event_id, tier_id, quantity, admission_jti, admission_seq,
                  status AS "status: HoldStatus"
           FROM holds WHERE id = $1 FOR UPDATE"#,
        hold_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("hold"))?;
    answers_to(&hold.admission_jti, jti)?;
    if hold.status != HoldStatus::Active {
        return Err(Error::Conflict(
            "hold_not_active",
            "the hold is no longer active",
        ));
    }
    sqlx::query!(
        "UPDATE holds SET status = 'released', closed_at = now() WHERE id = $1",
        hold_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE tiers SET held = held - $2 WHERE id = $1",
        hold.tier_id,
        hold.quantity
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"INSERT INTO order_events (hold_id, actor, action, before, after)
           VALUES ($1, 'buyer', 'hold.release', '{"status":"active"}', '{"status":"released"}')"#,
        hold_id
    )
    .execute(&mut *tx)
    .await?;
    // A checked-out hold is given up by cancelling its order: the seats come back only
    // with the order gone, so its payment page stops taking cards.
    checkout::cancel_unpaid(&mut tx, &[hold_id], "buyer", "hold_released").await?;
    tx.commit().await?;
    Ok(ClosedHold {
        id: hold.id,
        event_id: hold.event_id,
        tier_id: hold.tier_id,
        quantity: hold.quantity,
        admission_seq: hold.admission_seq,
    })
}

/// Returns expired holds' seats, a bounded batch at a time, cancelling their unpaid
/// orders; several sweepers (one per replica) share the work without blocking each
/// other (`SKIP LOCKED`).
pub async fn sweep_expired(db: &PgPool, limit: i64) -> Result<Vec<ClosedHold>, Error> {
    let mut tx = db.begin().await?;
    let expired = sqlx::query_as!(
        ClosedHold,
        r#"WITH due AS (
               SELECT id FROM holds
               WHERE status = 'active' AND expires_at < now()
               ORDER BY expires_at LIMIT $1
               FOR UPDATE SKIP LOCKED)
           UPDATE holds h SET status = 'expired', closed_at = now()
           FROM due WHERE h.id = due.id
           RETURNING h.id, h.event_id, h.tier_id, h.quantity, h.admission_seq"#,
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    if expired.is_empty() {
        return Ok(expired);
    }
    let tiers: Vec<Uuid> = expired.iter().map(|h| h.tier_id).collect();
    let quantities: Vec<i32> = expired.iter().map(|h| h.quantity).collect();
    // Lock tiers in a stable order so concurrent sweepers cannot deadlock.
    sqlx::query!(
        r#"UPDATE tiers t SET held = t.held - s.q
           FROM (SELECT tier, sum(q)::int4 AS q FROM UNNEST($1::uuid[], $2::int4[]) AS u(tier, q)
                 GROUP BY tier ORDER BY tier) s
           WHERE t.id = s.tier"#,
        &tiers,
        &quantities,
    )
    .execute(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = expired.iter().map(|h| h.id).collect();
    sqlx::query!(
        r#"INSERT INTO order_events (hold_id, actor, action, before, after)
           SELECT id, 'system', 'hold.expire', '{"status":"active"}', '{"status":"expired"}'
           FROM UNNEST($1::uuid[]) AS t(id)"#,
        &ids
    )
    .execute(&mut *tx)
    .await?;
    checkout::cancel_unpaid(&mut tx, &ids, "system", "hold_expired").await?;
    tx.commit().await?;
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{NewEventRequest, create};
    use platform::testing::TestDb;

    /// These tests share one buyer e-mail; the per-buyer cap has its own tests.
    const ANY_BUYER: Policy = Policy { per_buyer: 10_000 };

    fn request(event_id: Uuid, tier_id: Uuid, jti: &str, quantity: i32) -> HoldRequest {
        HoldRequest {
            event_id,
            tier_id,
            quantity,
            jti: jti.to_owned(),
            seq: None,
            email: Email::parse("b@example.org").unwrap(),
            name: BuyerName::parse("B").unwrap(),
            ttl_seconds: 600,
        }
    }

    /// An event with one tier of `capacity` seats: (event id, tier id).
    async fn one_tier(db: &TestDb, slug: &str, capacity: i32) -> (Uuid, Uuid) {
        let new: NewEventRequest = serde_json::from_value(serde_json::json!({
            "slug": slug, "title": slug,
            "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
            "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
            "tiers": [{"code": "ga", "name": "GA", "price_cents": 100, "currency": "EUR",
                       "capacity": capacity, "max_per_order": 10}],
            "queue": {"mode": "on", "rate_per_minute": 600, "max_active": 100}
        }))
        .unwrap();
        let mut tx = db.pool.begin().await.unwrap();
        let event = create(&mut tx, &new.parse().unwrap()).await.unwrap();
        tx.commit().await.unwrap();
        let tier = sqlx::query_scalar("SELECT id FROM tiers WHERE event_id = $1")
            .bind(event.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (event.id, tier)
    }

    /// With two writers per tier taking turns, the seats still go to the earliest
    /// requests: of 900 one-seat requests queued in order for 300 seats (several
    /// batches, both writers busy), exactly the first 300 get one.
    #[tokio::test]
    async fn batches_get_their_seats_in_the_order_they_were_queued() {
        let db = TestDb::new().await;
        let (event, tier) = one_tier(&db, "order", 300).await;
        let desk = HoldDesk::with_writers(db.pool.clone(), 2).per_buyer(10_000);
        let writer = desk.writer(tier);
        let mut answers = Vec::new();
        for i in 0..900 {
            let (respond, answer) = oneshot::channel();
            let request = request(event, tier, &format!("j{i}"), 1);
            writer.send(Pending { request, respond }).await.unwrap();
            answers.push(answer);
        }
        let mut granted = Vec::new();
        for (i, answer) in answers.into_iter().enumerate() {
            match answer.await.unwrap() {
                Ok(_) => granted.push(i),
                Err(Error::SoldOut) => {}
                Err(e) => panic!("request {i}: {e}"),
            }
        }
        assert_eq!(granted, (0..300).collect::<Vec<_>>());
        let held: i32 = sqlx::query_scalar("SELECT held FROM tiers WHERE id = $1")
            .bind(tier)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(held, 300);
    }

    /// A lone writer keeps its connection between batches (no pool round trip per
    /// batch) and gives it back once its tier has been quiet for `KEEP_IDLE`.
    #[tokio::test]
    async fn a_lone_writer_keeps_its_connection_only_while_busy() {
        let db = TestDb::new().await;
        let (event, tier) = one_tier(&db, "keep", 10).await;
        let desk = HoldDesk::new(db.pool.clone());
        let in_use = || db.pool.size() as usize - db.pool.num_idle();
        desk.hold(request(event, tier, "a", 1)).await.unwrap();
        desk.hold(request(event, tier, "b", 1)).await.unwrap();
        assert_eq!(in_use(), 1, "the writer gave its connection back at once");
        let quiet = std::time::Instant::now();
        while in_use() > 0 {
            assert!(
                quiet.elapsed() < KEEP_IDLE * 10,
                "a quiet tier still holds a connection"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            quiet.elapsed() >= KEEP_IDLE / 2,
            "the connection went back before the tier was quiet for long"
        );
    }

    /// A batch whose first request duplicates an active hold must not keep that
    /// request's seats from the requests behind it, nor count them as held.
    #[tokio::test]
    async fn a_duplicate_in_a_batch_gives_its_seats_to_the_next_in_line() {
        let db = TestDb::new().await;
        let (event, tier) = one_tier(&db, "dup", 3).await;

        // "a" holds one seat; two are left.
        let first = commit(&db.pool, &[request(event, tier, "a", 1)], ANY_BUYER)
            .await
            .unwrap();
        assert!(first[0].is_ok());
        // "a" again asks for two (seats it cannot have), "b" for two: "b" must get them.
        let batch = [
            request(event, tier, "a", 2),
            request(event, tier, "b", 2),
            request(event, tier, "b", 1),
            request(event, tier, "c", 1),
        ];
        let results = commit(&db.pool, &batch, ANY_BUYER).await.unwrap();
        assert!(
            matches!(results[0], Err(Error::HoldExists)),
            "{:?}",
            results[0]
        );
        assert!(results[1].is_ok(), "{:?}", results[1]);
        assert!(
            matches!(results[2], Err(Error::HoldExists)),
            "{:?}",
            results[2]
        );
        assert!(
            matches!(results[3], Err(Error::SoldOut)),
            "{:?}",
            results[3]
        );
        let (held, rows): (i32, i64) = sqlx::query_as(
            "SELECT t.held, (SELECT sum(quantity) FROM holds WHERE tier_id = t.id AND status = 'active')
             FROM tiers t WHERE t.id = $1",
        )
        .bind(tier)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((held, rows), (3, 3));
        let audited: i64 =
            sqlx::query_scalar("SELECT count(*) FROM order_events WHERE action = 'hold.create'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(audited, 2);
    }

    /// An admission whose hold was paid for is spent: replaying its token in a batch
    /// is refused as used, and its seats go to the next request in line.
    #[tokio::test]
    async fn a_spent_admission_in_a_batch_is_refused_and_gives_way() {
        let db = TestDb::new().await;
        let (event, tier) = one_tier(&db, "spent", 2).await;
        let first = commit(&db.pool, &[request(event, tier, "a", 1)], ANY_BUYER)
            .await
            .unwrap();
        assert!(first[0].is_ok());
        // "a" pays: its hold is converted, the seat sold.
        sqlx::query("UPDATE holds SET status = 'converted' WHERE admission_jti = 'a'")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE tiers SET held = held - 1, sold = sold + 1 WHERE id = $1")
            .bind(tier)
            .execute(&db.pool)
            .await
            .unwrap();

        let batch = [request(event, tier, "a", 1), request(event, tier, "b", 1)];
        let results = commit(&db.pool, &batch, ANY_BUYER).await.unwrap();
        assert!(
            matches!(results[0], Err(Error::AdmissionUsed)),
            "{:?}",
            results[0]
        );
        assert!(results[1].is_ok(), "{:?}", results[1]);
        let (sold, held): (i32, i32) = sqlx::query_as("SELECT sold, held FROM tiers WHERE id = $1")
            .bind(tier)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!((sold, held), (1, 1));
    }
}
