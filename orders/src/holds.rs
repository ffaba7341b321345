//! Holding inventory: the on-sale's hot path.
//!
//! Every hold on a tier changes one row, and Postgres serialises writers of a row, so
//! one transaction per hold caps a popular tier at roughly a thousand holds a second
//! on this machine however many connections are thrown at it. Instead each tier has
//! one writer task: requests queue on a channel, the writer takes everything waiting
//! (up to [`MAX_BATCH`]), and commits them in one transaction — a group commit. The
//! tier row is locked once, seats are handed out in arrival order, `held` moves by
//! the batch's total, and the `sold + held <= capacity` CHECK still guards the sum. If
//! a batch fails as a whole (say two tiers' writers raced on one admission's unique
//! hold), it is retried hold by hold so one bad request cannot fail its neighbours.
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
}

impl HoldDesk {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            writers: Arc::default(),
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
                tokio::spawn(write_tier(self.db.clone(), rx));
                tx
            })
            .clone()
    }
}

async fn write_tier(db: PgPool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests: Vec<HoldRequest> = batch.iter().map(|p| p.request.clone()).collect();
        match commit(&db, &requests).await {
            Ok(results) => {
                for (p, r) in batch.drain(..).zip(results) {
                    let _ = p.respond.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "hold batch failed; retrying one by one");
                for p in batch.drain(..) {
                    let r = match commit(&db, std::slice::from_ref(&p.request)).await {
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

/// Commits one batch for one tier; per-request refusals are in the returned vector.
async fn commit(
    db: &PgPool,
    requests: &[HoldRequest],
) -> Result<Vec<Result<HoldCreated, Error>>, sqlx::Error> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let mut tx = db.begin().await?;
    let tier = sqlx::query!(
        r#"SELECT capacity, sold, held, price_cents, currency FROM tiers
           WHERE id = $1 AND event_id = $2 FOR UPDATE"#,
        first.tier_id,
        first.event_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let jtis: Vec<String> = requests.iter().map(|r| r.jti.clone()).collect();
    let existing: HashSet<String> = sqlx::query_scalar!(
        r#"SELECT admission_jti FROM holds
           WHERE event_id = $1 AND status = 'active' AND admission_jti = ANY($2)"#,
        first.event_id,
        &jtis,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let now = Utc::now();
    let mut remaining = tier.capacity - tier.sold - tier.held;
    let mut taken = existing;
    let mut results = Vec::with_capacity(requests.len());
    let (mut ids, mut quantities, mut jti_col, mut seqs, mut emails, mut names, mut expiries) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut audit = vec![];
    for r in requests {
        if taken.contains(&r.jti) {
            results.push(Err(Error::HoldExists));
            continue;
        }
        if r.quantity > remaining {
            results.push(Err(Error::SoldOut));
            continue;
        }
        remaining -= r.quantity;
        taken.insert(r.jti.clone());
        let id = Uuid::now_v7();
        let expires_at = now + Duration::seconds(i64::from(r.ttl_seconds));
        ids.push(id);
        quantities.push(r.quantity);
        jti_col.push(r.jti.clone());
        seqs.push(r.seq);
        emails.push(r.email.as_str().to_owned());
        names.push(r.name.as_str().to_owned());
        expiries.push(expires_at);
        audit.push(serde_json::json!({
            "status": "active", "tier_id": r.tier_id, "quantity": r.quantity,
            "expires_at": expires_at,
        }));
        results.push(Ok(HoldCreated {
            hold_id: id,
            expires_at,
            amount_cents: tier.price_cents * i64::from(r.quantity),
            currency: tier.currency.clone(),
        }));
    }
    if !ids.is_empty() {
        let total: i32 = quantities.iter().sum();
        sqlx::query!(
            "UPDATE tiers SET held = held + $2 WHERE id = $1",
            first.tier_id,
            total
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti, admission_seq,
                    buyer_email, buyer_name, expires_at)
               SELECT id, $2, $3, q, jti, seq, email, name, exp
               FROM UNNEST($1::uuid[], $4::int4[], $5::text[], $6::int8[], $7::text[],
                           $8::text[], $9::timestamptz[])
                    AS t(id, q, jti, seq, email, name, exp)"#,
            &ids,
            first.event_id,
            first.tier_id,
            &quantities,
            &jti_col,
            &seqs as &[Option<i64>],
            &emails,
            &names,
            &expiries,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO order_events (hold_id, actor, action, after)
               SELECT id, 'buyer', 'hold.create', after
               FROM UNNEST($1::uuid[], $2::jsonb[]) AS t(id, after)"#,
            &ids,
            &audit,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(results)
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
