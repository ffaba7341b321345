//! Turning a successful charge into tickets, exactly once, whatever order the news
//! arrives in.
//!
//! Webhooks and the reconciliation poll both end here. Each provider event is recorded
//! under a unique key first, so a duplicate is a no-op; the order's hold and then the
//! order row are locked (the hold before the event is recorded), so two deliveries of
//! "succeeded" racing each other settle once, one after the other; and only a
//! `pending_payment` order can become paid, so a late "failed" after "succeeded" changes
//! nothing. A charge that lands after its hold expired takes a seat if one is free and
//! its admission has not held or bought since, and is otherwise refunded automatically;
//! a charge for seats the buyer gave up, or for a cancelled event, is refunded — never
//! oversold, never forgotten, one admission one purchase.

use rand::Rng;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::Error;
use crate::outbox;
use crate::webhooks::WebhookEvent;
use contract::states::{EventStatus, HoldStatus, OrderStatus};
use contract::{OrderPaid, OrderRefunded, TicketIssued};

/// What applying a payment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Settled {
    Paid {
        order_id: Uuid,
        tickets: usize,
    },
    /// The seats were gone after the hold expired: the money goes back.
    Refunding {
        order_id: Uuid,
        refund_id: Uuid,
    },
    /// Already paid, refunded or cancelled: nothing to do.
    AlreadySettled {
        order_id: Uuid,
    },
    /// The provider event was seen before.
    Duplicate,
    /// Recorded; no state change follows from it.
    Noted,
}

/// Who or what settled it, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Webhook,
    Reconciler,
}

impl Source {
    fn actor(self) -> &'static str {
        match self {
            Source::Webhook => "provider:webhook",
            Source::Reconciler => "system:reconciler",
        }
    }
}

/// Records a provider event once and applies it, in one transaction.
pub async fn apply_event(
    db: &PgPool,
    provider: &str,
    event: &WebhookEvent,
    source: Source,
) -> Result<Settled, Error> {
    let object = &event.data.object;
    let intent_id = object
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|_| event.kind.starts_with("payment_intent."))
        .or_else(|| object.get("payment_intent").and_then(|v| v.as_str()))
        .map(str::to_owned);
    let mut tx = db.begin().await?;
    let order_id = match &intent_id {
        Some(intent) => {
            sqlx::query_scalar!("SELECT id FROM orders WHERE payment_intent_id = $1", intent)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    }
    .or_else(|| {
        object
            .pointer("/metadata/order_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
    });
    // Every writer locks a hold before its order. The payment_events row below takes a
    // key-share lock on its order (the foreign key), so a settlement locks the hold
    // first, before that insert: two settlements of one payment at once (the webhook
    // and the reconciler, or the reconcilers of two orders replicas) then queue on the
    // hold instead of deadlocking on the order.
    let hold = match (event.kind.as_str(), order_id) {
        ("payment_intent.succeeded", Some(order_id)) => Some(lock_hold(&mut tx, order_id).await?),
        _ => None,
    };
    let payload = serde_json::to_value(object).expect("json");
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO payment_events (provider, provider_event_id, order_id, type, payload)
           VALUES ($1, $2, (SELECT id FROM orders WHERE id = $3), $4, $5)
           ON CONFLICT (provider, provider_event_id) DO NOTHING RETURNING id"#,
        provider,
        event.id,
        order_id,
        event.kind,
        payload,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        return Ok(Settled::Duplicate);
    }
    let outcome = match (event.kind.as_str(), order_id, hold) {
        ("payment_intent.succeeded", Some(order_id), Some(hold)) => {
            settle_locked(&mut tx, order_id, hold, intent_id.as_deref(), source).await?
        }
        ("payment_intent.payment_failed", Some(order_id), _) => {
            let reason = object
                .pointer("/last_payment_error/code")
                .and_then(|v| v.as_str())
                .unwrap_or("declined");
            sqlx::query!(
                r#"INSERT INTO order_events (order_id, actor, action, after)
                   VALUES ($1, $2, 'payment.failed', jsonb_build_object('reason', $3::text))"#,
                order_id,
                source.actor(),
                reason,
            )
            .execute(&mut *tx)
            .await?;
            Settled::Noted
        }
        ("charge.refunded", Some(order_id), _) => {
            sqlx::query!(
                r#"INSERT INTO order_events (order_id, actor, action, after)
                   VALUES ($1, $2, 'payment.refund_confirmed', $3)"#,
                order_id,
                source.actor(),
                serde_json::json!({"amount_refunded": object.get("amount_refunded")}),
            )
            .execute(&mut *tx)
            .await?;
            Settled::Noted
        }
        _ => Settled::Noted,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Ticket codes: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L),
/// grouped for reading aloud on a support call: `FG-7KQM-3XDA-PW`.
pub fn ticket_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    let c: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("FG-{}-{}-{}", &c[0..4], &c[4..8], &c[8..10])
}

/// Why a charge cannot have its order's seats, if it cannot; `None` means try.
fn refusal(
    event_status: EventStatus,
    hold_status: HoldStatus,
    order_cancelled: bool,
    admission_busy: bool,
) -> Option<&'static str> {
    if event_status == EventStatus::Cancelled {
        Some(REFUND_EVENT_CANCELLED)
    } else if hold_status == HoldStatus::Released
        || (order_cancelled && hold_status == HoldStatus::Active)
    {
        // The buyer gave these seats up (or an operator did) before the money came.
        Some(REFUND_CANCELLED_BEFORE_PAYMENT)
    } else if hold_status != HoldStatus::Active && admission_busy {
        // The hold lapsed and the same admission has held or bought since: those seats
        // are that hold's, and one admission buys once.
        Some(REFUND_ADMISSION_USED)
    } else {
        None
    }
}

/// Refund reasons settlement gives (the buyer's e-mail words each).
pub const REFUND_SEATS_GONE: &str = "seats_gone_after_hold_expired";
pub const REFUND_EVENT_CANCELLED: &str = "event_cancelled";
pub const REFUND_CANCELLED_BEFORE_PAYMENT: &str = "cancelled_before_payment";
pub const REFUND_ADMISSION_USED: &str = "admission_used_elsewhere";

/// An order's hold, locked (`FOR UPDATE`) in the settling transaction.
struct LockedHold {
    id: Uuid,
    status: HoldStatus,
    admission_jti: String,
}

/// Locks the hold of `order_id` inside `tx`: the first lock a settlement takes (every
/// writer locks a hold before its order; the sweeper and a release do too).
async fn lock_hold(tx: &mut PgConnection, order_id: Uuid) -> Result<LockedHold, Error> {
    // Which hold, without a lock; then the lock.
    let id = sqlx::query_scalar!("SELECT hold_id FROM orders WHERE id = $1", order_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound("order"))?;
    let hold = sqlx::query!(
        r#"SELECT status AS "status: HoldStatus", admission_jti FROM holds WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(LockedHold {
        id,
        status: hold.status,
        admission_jti: hold.admission_jti,
    })
}

/// Moves a pending order to paid (or to an automatic refund) inside `tx`. An order
/// cancelled unpaid (its hold ended) whose money comes anyway is settled here too: its
/// charge is refunded — unless its hold merely lapsed, its admission has not held or
/// bought since, and the seats are still free, in which case it is sold as a late
/// payment always was.
pub async fn settle_paid(
    tx: &mut PgConnection,
    order_id: Uuid,
    intent_id: Option<&str>,
    source: Source,
) -> Result<Settled, Error> {
    let hold = lock_hold(tx, order_id).await?;
    settle_locked(tx, order_id, hold, intent_id, source).await
}

/// [`settle_paid`] with the order's hold already locked by [`lock_hold`].
async fn settle_locked(
    tx: &mut PgConnection,
    order_id: Uuid,
    hold: LockedHold,
    intent_id: Option<&str>,
    source: Source,
) -> Result<Settled, Error> {
    let hold_id = hold.id;
    let order = sqlx::query!(
        r#"SELECT o.id, o.status AS "status: OrderStatus", o.hold_id, o.tier_id, o.quantity, o.amount_cents, o.currency,
                  o.buyer_email, o.buyer_name, o.event_id, o.paid_at, e.slug,
                  e.status AS "event_status: EventStatus",
                  t.code AS tier_code
           FROM orders o JOIN events e ON e.id = o.event_id JOIN tiers t ON t.id = o.tier_id
           WHERE o.id = $1 FOR UPDATE OF o"#,
        order_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let cancelled_unpaid = order.status == OrderStatus::Cancelled && order.paid_at.is_none();
    if order.status != OrderStatus::PendingPayment && !cancelled_unpaid {
        return Ok(Settled::AlreadySettled { order_id });
    }
    let hold_status = hold.status;
    let admission_busy = hold_status != HoldStatus::Active
        && sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM holds
                               WHERE event_id = $1 AND admission_jti = $2 AND id <> $3
                                 AND status IN ('active', 'converted'))
                   OR EXISTS (SELECT 1 FROM orders
                               WHERE event_id = $1 AND admission_jti = $2 AND id <> $4
                                 AND status IN ('pending_payment', 'paid', 'partially_refunded'))
               AS "busy!""#,
            order.event_id,
            hold.admission_jti,
            hold_id,
            order_id,
        )
        .fetch_one(&mut *tx)
        .await?;
    let refused = refusal(
        order.event_status,
        hold_status,
        cancelled_unpaid,
        admission_busy,
    );

    let seats_taken = match refused {
        Some(_) => false,
        None if hold_status == HoldStatus::Active => {
            sqlx::query!(
                "UPDATE tiers SET held = held - $2, sold = sold + $2 WHERE id = $1",
                order.tier_id,
                order.quantity
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE holds SET status = 'converted', closed_at = now() WHERE id = $1",
                order.hold_id
            )
            .execute(&mut *tx)
            .await?;
            true
        }
        // The hold lapsed before the money arrived: take seats only if free now.
        None => {
            sqlx::query!(
                r#"UPDATE tiers SET sold = sold + $2
                   WHERE id = $1 AND sold + held + $2 <= capacity"#,
                order.tier_id,
                order.quantity
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
    };

    if !seats_taken {
        let reason = refused.unwrap_or(REFUND_SEATS_GONE);
        if hold_status == HoldStatus::Active {
            // Still held (the event was cancelled under it): the seats go back.
            sqlx::query!(
                "UPDATE tiers SET held = held - $2 WHERE id = $1",
                order.tier_id,
                order.quantity
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE holds SET status = 'released', closed_at = now() WHERE id = $1",
                order.hold_id
            )
            .execute(&mut *tx)
            .await?;
        }
        let refund_id = Uuid::now_v7();
        sqlx::query!(
            r#"UPDATE orders SET status = 'refunded', refunded_cents = amount_cents,
                   payment_intent_id = COALESCE(payment_intent_id, $2), updated_at = now()
               WHERE id = $1"#,
            order_id,
            intent_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO refunds (id, order_id, amount_cents, reason, actor, status)
               VALUES ($1, $2, $3, $4, $5, 'pending')"#,
            refund_id,
            order_id,
            order.amount_cents,
            reason,
            source.actor()
        )
        .execute(&mut *tx)
        .await?;
        crate::jobs::schedule_refund(&mut *tx, refund_id).await?;
        let action = if reason == REFUND_SEATS_GONE {
            "order.refund_seats_gone"
        } else {
            "order.refund_late_payment"
        };
        sqlx::query!(
            r#"INSERT INTO order_events (order_id, actor, action, before, after)
               VALUES ($1, $2, $3, jsonb_build_object('status', $4::text),
                       jsonb_build_object('status', 'refunded', 'reason', $5::text))"#,
            order_id,
            source.actor(),
            action,
            order.status as OrderStatus,
            reason,
        )
        .execute(&mut *tx)
        .await?;
        outbox::enqueue(
            &mut *tx,
            &OrderRefunded {
                order_id,
                event_id: order.event_id,
                refund_id,
                amount_cents: order.amount_cents,
                currency: order.currency.clone(),
                reason: reason.into(),
                full: true,
                buyer_email: order.buyer_email.clone(),
                buyer_name: order.buyer_name.clone(),
            },
        )
        .await?;
        return Ok(Settled::Refunding {
            order_id,
            refund_id,
        });
    }

    // A late payment revives an order cancelled unpaid; the unique index on live orders
    // per admission refuses it if anything raced past the check above.
    let paid_at = sqlx::query_scalar!(
        r#"UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now(),
               payment_intent_id = COALESCE(payment_intent_id, $2)
           WHERE id = $1 RETURNING paid_at AS "paid_at!""#,
        order_id,
        intent_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut tickets = Vec::with_capacity(order.quantity as usize);
    for seat in 1..=order.quantity {
        let ticket_id = Uuid::now_v7();
        let code = ticket_code();
        sqlx::query!(
            r#"INSERT INTO tickets (id, order_id, event_id, tier_id, seat_no, code, holder_email, holder_name)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
            ticket_id,
            order_id,
            order.event_id,
            order.tier_id,
            seat,
            code,
            order.buyer_email,
            order.buyer_name,
        )
        .execute(&mut *tx)
        .await?;
        tickets.push(TicketIssued {
            ticket_id,
            code,
            tier_code: order.tier_code.clone(),
            holder_email: order.buyer_email.clone(),
            holder_name: order.buyer_name.clone(),
        });
    }
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           VALUES ($1, $2, 'order.paid', jsonb_build_object('status', $5::text),
                   jsonb_build_object('status', 'paid', 'tickets', $3::int4, 'hold', $4::text))"#,
        order_id,
        source.actor(),
        order.quantity,
        hold_status as HoldStatus,
        order.status as OrderStatus,
    )
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut *tx,
        &OrderPaid {
            order_id,
            event_id: order.event_id,
            event_slug: order.slug.clone(),
            buyer_email: order.buyer_email.clone(),
            buyer_name: order.buyer_name.clone(),
            amount_cents: order.amount_cents,
            currency: order.currency.clone(),
            paid_at,
            tickets,
        },
    )
    .await?;
    Ok(Settled::Paid {
        order_id,
        tickets: order.quantity as usize,
    })
}
