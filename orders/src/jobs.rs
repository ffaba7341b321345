//! Work that happens after the request: refunds to send, holds to expire, charges to
//! reconcile. Jobs live in Postgres and are claimed with `FOR UPDATE SKIP LOCKED`, so
//! every replica can run the workers and each job is done by one of them; a failed job
//! is retried with exponential backoff and its last error kept for the console.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Error;
use crate::app::AppState;
use crate::payments::{Cancelled, Intent};
use crate::settlement::{self, Settled, Source};
use crate::{admissions, holds};
use contract::states::RefundStatus;

pub const REFUND: &str = "refund";

pub async fn schedule_refund(conn: &mut PgConnection, refund_id: Uuid) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO jobs (id, kind, payload) VALUES ($1, $2, $3)",
        Uuid::now_v7(),
        REFUND,
        serde_json::json!({ "refund_id": refund_id }),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub const CANCEL_INTENT: &str = "cancel_intent";

/// Queues the cancellation of an order's payment intent (the order was cancelled
/// unpaid). A job, not a call: the provider may be down, and the page must close anyway.
pub async fn schedule_intent_cancel(conn: &mut PgConnection, order_id: Uuid) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO jobs (id, kind, payload) VALUES ($1, $2, $3)",
        Uuid::now_v7(),
        CANCEL_INTENT,
        serde_json::json!({ "order_id": order_id }),
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn backoff(attempts: i32) -> chrono::Duration {
    chrono::Duration::seconds(2i64.saturating_pow(attempts.clamp(0, 10) as u32).min(600))
}

/// Runs due jobs, a few at a time; returns how many were attempted.
pub async fn run_due(s: &AppState) -> Result<usize, Error> {
    let mut tx = s.db.begin().await?;
    let due = sqlx::query!(
        r#"SELECT id, kind, payload, attempts FROM jobs
           WHERE done_at IS NULL AND run_at <= now() AND kind = ANY($1)
           ORDER BY run_at LIMIT 10 FOR UPDATE SKIP LOCKED"#,
        // The jobs table is shared; each service claims only the kinds it runs.
        &[REFUND.to_owned(), CANCEL_INTENT.to_owned()] as &[String]
    )
    .fetch_all(&mut *tx)
    .await?;
    for job in &due {
        let result = match job.kind.as_str() {
            REFUND => send_refund(s, &mut tx, &job.payload).await,
            CANCEL_INTENT => cancel_intent(s, &mut tx, &job.payload).await,
            other => Err(Error::Invalid(format!("unknown job kind {other}"))),
        };
        match result {
            Ok(()) => {
                sqlx::query!(
                    "UPDATE jobs SET done_at = now(), attempts = attempts + 1 WHERE id = $1",
                    job.id
                )
                .execute(&mut *tx)
                .await?;
            }
            Err(e) => {
                tracing::warn!(job = %job.id, kind = %job.kind, error = %e, "job failed; will retry");
                sqlx::query!(
                    r#"UPDATE jobs SET attempts = attempts + 1, last_error = $2, run_at = $3
                       WHERE id = $1"#,
                    job.id,
                    e.to_string(),
                    Utc::now() + backoff(job.attempts + 1),
                )
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

async fn send_refund(
    s: &AppState,
    tx: &mut PgConnection,
    payload: &serde_json::Value,
) -> Result<(), Error> {
    let refund_id: Uuid = payload
        .get("refund_id")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Invalid("refund job without refund_id".into()))?;
    let r = sqlx::query!(
        r#"SELECT r.amount_cents, r.status AS "status: RefundStatus", o.payment_intent_id
           FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1 FOR UPDATE OF r"#,
        refund_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if r.status != RefundStatus::Pending {
        return Ok(());
    }
    let intent = r
        .payment_intent_id
        .ok_or_else(|| Error::Invalid("refund for an order without a payment".into()))?;
    // The refund id is the idempotency key: a retry after a lost answer refunds once.
    let done = s
        .provider
        .refund(&intent, r.amount_cents, &format!("refund-{refund_id}"))
        .await?;
    sqlx::query!(
        r#"UPDATE refunds SET status = 'succeeded', provider_refund_id = $2, updated_at = now()
           WHERE id = $1"#,
        refund_id,
        done.id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cancels a cancelled order's intent at the provider. If the buyer paid first, the
/// charge is settled here like a late webhook would be: settlement refunds it (the
/// order is gone) and tells the buyer, or, for a lapsed hold whose seats are still
/// free and whose admission bought nothing else, sells them.
async fn cancel_intent(
    s: &AppState,
    tx: &mut PgConnection,
    payload: &serde_json::Value,
) -> Result<(), Error> {
    let order_id: Uuid = payload
        .get("order_id")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Invalid("intent cancellation without order_id".into()))?;
    let intent = sqlx::query_scalar!(
        "SELECT payment_intent_id FROM orders WHERE id = $1",
        order_id
    )
    .fetch_one(&mut *tx)
    .await?;
    // No intent yet: checkout, when it gets one, finds the order cancelled and queues
    // this job again.
    let Some(intent) = intent else {
        return Ok(());
    };
    match s.provider.cancel_intent(&intent).await? {
        Cancelled::Cancelled => {
            sqlx::query!(
                r#"INSERT INTO order_events (order_id, actor, action, after)
                   VALUES ($1, 'system', 'payment.intent_cancelled',
                           jsonb_build_object('intent', $2::text))"#,
                order_id,
                intent,
            )
            .execute(&mut *tx)
            .await?;
        }
        Cancelled::AlreadyPaid(paid) => settle_succeeded(s, &paid, "cancel").await?,
    }
    Ok(())
}

/// Settles an intent the provider says succeeded, as its webhook would, under the
/// event id `{via}:{intent}` (recorded once, like any provider event).
async fn settle_succeeded(s: &AppState, intent: &Intent, via: &str) -> Result<(), Error> {
    let event = crate::webhooks::WebhookEvent {
        id: format!("{via}:{}", intent.id),
        kind: "payment_intent.succeeded".into(),
        data: crate::webhooks::WebhookData {
            object: serde_json::json!({"id": intent.id, "metadata": intent.metadata}),
        },
    };
    let outcome =
        settlement::apply_event(&s.db, s.provider.name(), &event, Source::Reconciler).await?;
    after_settlement(s, &outcome).await;
    Ok(())
}

/// Finds orders whose payment may have succeeded without our hearing of it (a timed-out
/// page, a lost webhook) and asks the provider.
pub async fn reconcile_pending(s: &AppState) -> Result<usize, Error> {
    let stale = sqlx::query!(
        r#"SELECT id, payment_intent_id AS "intent!" FROM orders
           WHERE status = 'pending_payment' AND payment_intent_id IS NOT NULL
             AND updated_at < now() - make_interval(secs => $1)
           ORDER BY updated_at LIMIT 50"#,
        s.config.reconcile_after.as_secs_f64()
    )
    .fetch_all(&s.db)
    .await?;
    let mut settled = 0;
    for order in stale {
        let intent = match s.provider.intent(&order.intent).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(order = %order.id, error = %e, "reconciliation: provider unreachable");
                continue;
            }
        };
        if intent.succeeded() {
            settle_succeeded(s, &intent, "reconcile").await?;
            settled += 1;
        } else {
            // Not paid yet: look again later rather than every round.
            sqlx::query!(
                "UPDATE orders SET updated_at = now() WHERE id = $1",
                order.id
            )
            .execute(&s.db)
            .await?;
        }
    }
    Ok(settled)
}

/// What follows a settlement outside the transaction: a paid order's admission ends,
/// and the queue learns whether seats are left. (A refunded charge bought nothing: its
/// admission, if still valid, may be holding elsewhere, and lapses by its deadline.)
pub async fn after_settlement(s: &AppState, outcome: &Settled) {
    let Settled::Paid { order_id, .. } = outcome else {
        return;
    };
    if let Err(e) = admissions::order_paid(s, *order_id).await {
        tracing::warn!(order = %order_id, error = %e, "could not update the queue after settlement");
    }
}

/// Runs the background workers until `shutdown` stops; a step under way finishes first.
pub async fn run_workers(s: AppState, shutdown: platform::shutdown::Shutdown) {
    let mut sweep = tokio::time::interval(Duration::from_millis(500));
    let mut reconcile = tokio::time::interval(Duration::from_secs(2));
    let mut jobs = tokio::time::interval(Duration::from_millis(500));
    let stopped = shutdown.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = sweep.tick() => match holds::sweep_expired(&s.db, 500).await {
                Ok(closed) => {
                    for hold in &closed {
                        if let Err(e) = admissions::hold_closed(&s, hold).await {
                            tracing::warn!(error = %e, "could not update the queue after expiry");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "hold sweep failed"),
            },
            _ = reconcile.tick() => if let Err(e) = reconcile_pending(&s).await {
                tracing::warn!(error = %e, "reconciliation failed");
            },
            _ = jobs.tick() => if let Err(e) = run_due(&s).await {
                tracing::warn!(error = %e, "job run failed");
            },
        }
    }
}
