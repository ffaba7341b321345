//! Holding inventory: the on-sale's hot path.
//!
//! Every hold on a tier changes one row, and Postgres serialises writers of a row, so
//! one transaction per hold caps a popular tier at roughly a thousand holds a second
//! on this machine however many connections are thrown at it. Instead each tier has
//! its writer: requests queue on a channel, the writer takes everything waiting (up to
//! [`MAX_BATCH`]), and commits them in one transaction — a group commit. Optionally
//! more writers take turns (the next batch waits on the tier row while one commits),
//! handing the turn on only once the row is locked, so batches get their seats in the
//! order they were taken. The
//! tier row is locked once, seats are handed out in arrival order, `held` moves by
//! the batch's total, and the `sold + held <= capacity` CHECK still guards the sum. One
//! active hold per admission is the partial unique index's job, also when two tiers'
//! writers race for one admission; an admission that has bought (a converted hold)
//! holds nothing more, so a replayed token is refused. If a batch fails as a whole all the same, it is
//! retried hold by hold so one bad request cannot fail its neighbours.
//! No lock is held across a client round trip: the transaction only ever waits on
//! Postgres.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::Error;
use crate::buyers::{BuyerName, Email};

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
        }
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
                tokio::spawn(write_tier(self.db.clone(), rx, self.writers_per_tier));
                tx
            })
            .clone()
    }
}

/// Writers per tier unless configured (`ORDERS_HOLD_WRITERS`). One: `bench-holds`
/// measured two writers taking turns at 0.85–0.93× one on this two-core machine —
/// the group commit is CPU-bound here, and a second writer halves the batches
/// without adding CPU. Where round trips rather than CPU bound it, two may win; the
/// bench compares both in every run.
pub const DEFAULT_WRITERS_PER_TIER: usize = 1;

/// Runs a tier's writers. Each takes the next batch and asks for the tier row's lock
/// while holding the `turn`, and passes the turn on only once the lock is granted: so
/// batch n+1 is gathered and queued on the row while batch n inserts and commits
/// (the round trips and the commit's flush overlap the next batch's), yet batches
/// still lock the row, and so get their seats, in the order they were taken.
async fn write_tier(db: PgPool, rx: mpsc::Receiver<Pending>, writers: usize) {
    let turn = Arc::new(tokio::sync::Mutex::new(rx));
    let writers: Vec<_> = (0..writers)
        .map(|_| tokio::spawn(write_batches(db.clone(), turn.clone())))
        .collect();
    for w in writers {
        let _ = w.await;
    }
}

async fn write_batches(db: PgPool, turn: Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut rx = turn.lock().await;
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let requests: Vec<HoldRequest> = batch.iter().map(|p| p.request.clone()).collect();
        let locked = lock_tier(&db, &requests[0]).await;
        drop(rx);
        let outcome = match locked {
            Ok((tx, tier)) => commit(tx, tier, &requests).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(results) => {
                for (p, r) in batch.drain(..).zip(results) {
                    let _ = p.respond.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "hold batch failed; retrying one by one");
                for p in batch.drain(..) {
                    let one = std::slice::from_ref(&p.request);
                    let r = match lock_and_commit(&db, one).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(Error::Unavailable("empty batch"))),
                        Err(e) => Err(map_single_failure(e)),
                    };
                    let _ = p.respond.send(r);
                }
            }
        }
    }
}

/// A lone hold that still fails on the unique index is a second hold for one admission.
fn map_single_failure(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("holds_one_active_per_admission") => {
            Error::HoldExists
        }
        sqlx::Error::Database(d) if d.constraint() == Some("tiers_no_oversell") => Error::SoldOut,
        _ => Error::Database(e),
    }
}

/// The tier row as a batch finds it, locked until the batch's transaction ends.
struct LockedTier {
    capacity: i32,
    sold: i32,
    held: i32,
    price_cents: i64,
    currency: String,
}

/// Opens a batch's transaction and locks its tier's row.
async fn lock_tier(
    db: &PgPool,
    first: &HoldRequest,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, LockedTier), sqlx::Error> {
    let mut tx = db.begin().await?;
    let tier = sqlx::query_as!(
        LockedTier,
        r#"SELECT capacity, sold, held, price_cents, currency FROM tiers
           WHERE id = $1 AND event_id = $2 FOR UPDATE"#,
        first.tier_id,
        first.event_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((tx, tier))
}

async fn lock_and_commit(
    db: &PgPool,
    requests: &[HoldRequest],
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let (tx, tier) = lock_tier(db, first).await?;
    commit(tx, tier, requests).await
}

/// Commits one batch for one tier, whose row `tx` has locked; per-request refusals
/// are in the returned vector.
///
/// Three round trips whatever the batch size: lock the tier row, one statement that
/// inserts the holds, moves `held` by what was inserted and writes the audit rows, and
/// the commit. A second hold for one admission is caught by the partial unique index
/// (`ON CONFLICT ... DO NOTHING`) rather than by a query of the event's active holds,
/// which Postgres can only answer by scanning them all and which slowed every batch
/// as an on-sale went on.
async fn commit(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    tier: LockedTier,
    requests: &[HoldRequest],
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let now = Utc::now();
    let mut remaining = tier.capacity - tier.sold - tier.held;
    let mut results: Vec<Option<Result<HoldCreated, Error>>> =
        requests.iter().map(|_| None).collect();
    // Seats go in arrival order. A request that turns out to duplicate an active hold
    // gives its seats back, and requests refused for want of them get another round.
    let mut waiting: Vec<usize> = (0..requests.len()).collect();
    let mut seen = HashSet::with_capacity(requests.len());
    loop {
        let mut round = Round::default();
        let mut refused = Vec::new();
        for i in waiting {
            let r = &requests[i];
            if !seen.insert(r.jti.as_str()) {
                results[i] = Some(Err(Error::HoldExists));
                continue;
            }
            if r.quantity > remaining {
                // Not taken yet: a later round may still give this admission its hold.
                seen.remove(r.jti.as_str());
                refused.push(i);
                continue;
            }
            remaining -= r.quantity;
            round.push(i, r, now);
        }
        if round.ids.is_empty() {
            for i in refused {
                results[i] = Some(Err(Error::SoldOut));
            }
            break;
        }
        let inserted: HashSet<Uuid> = round.insert(&mut tx, first).await?.into_iter().collect();
        // Rare: only a replayed or doubled admission is left out, so only then ask why.
        let used = if inserted.len() < round.ids.len() {
            round.used_admissions(&mut tx, first.event_id).await?
        } else {
            HashSet::new()
        };
        let mut freed = 0;
        for (k, &i) in round.index.iter().enumerate() {
            let r = &requests[i];
            results[i] = Some(if inserted.contains(&round.ids[k]) {
                Ok(HoldCreated {
                    hold_id: round.ids[k],
                    expires_at: round.expiries[k],
                    amount_cents: tier.price_cents * i64::from(r.quantity),
                    currency: tier.currency.clone(),
                })
            } else {
                freed += r.quantity;
                if used.contains(&r.jti) {
                    Err(Error::AdmissionUsed)
                } else {
                    Err(Error::HoldExists)
                }
            });
        }
        remaining += freed;
        if freed == 0 || refused.is_empty() {
            for i in refused {
                results[i] = Some(Err(Error::SoldOut));
            }
            break;
        }
        waiting = refused;
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(Error::Unavailable("hold not decided"))))
        .collect())
}

/// The holds one round of a batch tries to insert, as columns.
#[derive(Default)]
struct Round {
    index: Vec<usize>,
    ids: Vec<Uuid>,
    quantities: Vec<i32>,
    jtis: Vec<String>,
    seqs: Vec<Option<i64>>,
    emails: Vec<String>,
    names: Vec<String>,
    expiries: Vec<DateTime<Utc>>,
}

impl Round {
    fn push(&mut self, index: usize, r: &HoldRequest, now: DateTime<Utc>) {
        self.index.push(index);
        self.ids.push(Uuid::now_v7());
        self.quantities.push(r.quantity);
        self.jtis.push(r.jti.clone());
        self.seqs.push(r.seq);
        self.emails.push(r.email.as_str().to_owned());
        self.names.push(r.name.as_str().to_owned());
        self.expiries
            .push(now + Duration::seconds(i64::from(r.ttl_seconds)));
    }

    /// Inserts the round's holds, moves the tier's `held` by those inserted and audits
    /// them, in one statement; returns the ids actually inserted.
    async fn insert(
        &self,
        tx: &mut sqlx::PgConnection,
        first: &HoldRequest,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"WITH ins AS (
                   INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti,
                                      admission_seq, buyer_email, buyer_name, expires_at)
                   SELECT id, $2, $3, q, jti, seq, email, name, exp
                   FROM UNNEST($1::uuid[], $4::int4[], $5::text[], $6::int8[], $7::text[],
                               $8::text[], $9::timestamptz[])
                        AS t(id, q, jti, seq, email, name, exp)
                   WHERE NOT EXISTS (SELECT 1 FROM holds c
                                     WHERE c.event_id = $2 AND c.admission_jti = t.jti
                                       AND c.status = 'converted')
                   ON CONFLICT (event_id, admission_jti) WHERE status = 'active' DO NOTHING
                   RETURNING id, quantity, expires_at),
               moved AS (
                   UPDATE tiers SET held = held + (SELECT coalesce(sum(quantity), 0) FROM ins)
                   WHERE id = $3),
               audited AS (
                   INSERT INTO order_events (hold_id, actor, action, after)
                   SELECT id, 'buyer', 'hold.create',
                          jsonb_build_object('status', 'active', 'tier_id', $3::uuid,
                                             'quantity', quantity, 'expires_at', expires_at)
                   FROM ins)
               SELECT id AS "id!" FROM ins"#,
            &self.ids,
            first.event_id,
            first.tier_id,
            &self.quantities,
            &self.jtis,
            &self.seqs as &[Option<i64>],
            &self.emails,
            &self.names,
            &self.expiries,
        )
        .fetch_all(tx)
        .await
    }

    /// The round's admissions that have already bought: their tokens are spent.
    async fn used_admissions(
        &self,
        tx: &mut sqlx::PgConnection,
        event_id: Uuid,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let used = sqlx::query_scalar!(
            r#"SELECT DISTINCT admission_jti FROM holds
               WHERE event_id = $1 AND admission_jti = ANY($2) AND status = 'converted'"#,
            event_id,
            &self.jtis,
        )
        .fetch_all(tx)
        .await?;
        Ok(used.into_iter().collect())
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

/// Releases an active hold on the buyer's request; the seats return at once.
pub async fn release(db: &PgPool, hold_id: Uuid, jti: Option<&str>) -> Result<ClosedHold, Error> {
    let mut tx = db.begin().await?;
    let hold = sqlx::query!(
        r#"SELECT id, event_id, tier_id, quantity, admission_jti, admission_seq, status
           FROM holds WHERE id = $1 FOR UPDATE"#,
        hold_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("hold"))?;
    if let Some(jti) = jti
        && jti != hold.admission_jti
    {
        return Err(Error::Forbidden("this hold belongs to another admission"));
    }
    if hold.status != "active" {
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
    tx.commit().await?;
    Ok(ClosedHold {
        id: hold.id,
        event_id: hold.event_id,
        tier_id: hold.tier_id,
        quantity: hold.quantity,
        admission_seq: hold.admission_seq,
    })
}

/// Returns expired holds' seats, a bounded batch at a time; several sweepers (one per
/// replica) share the work without blocking each other (`SKIP LOCKED`).
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
    tx.commit().await?;
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{NewEventRequest, create};
    use crate::testing::TestDb;

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
        let desk = HoldDesk::with_writers(db.pool.clone(), 2);
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

    /// A batch whose first request duplicates an active hold must not keep that
    /// request's seats from the requests behind it, nor count them as held.
    #[tokio::test]
    async fn a_duplicate_in_a_batch_gives_its_seats_to_the_next_in_line() {
        let db = TestDb::new().await;
        let (event, tier) = one_tier(&db, "dup", 3).await;

        // "a" holds one seat; two are left.
        let first = lock_and_commit(&db.pool, &[request(event, tier, "a", 1)])
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
        let results = lock_and_commit(&db.pool, &batch).await.unwrap();
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
        let first = lock_and_commit(&db.pool, &[request(event, tier, "a", 1)])
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
        let results = lock_and_commit(&db.pool, &batch).await.unwrap();
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
