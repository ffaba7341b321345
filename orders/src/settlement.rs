//! Turning a successful charge into tickets, exactly once, whatever order the news
//! arrives in.
//!
//! Webhooks and the reconciliation poll both end here. Each provider event is recorded
//! under a unique key first, so a duplicate is a no-op; the order row is locked, so two
//! deliveries of "succeeded" racing each other settle once; and only a
//! `pending_payment` order can become paid, so a late "failed" after "succeeded" changes
//! nothing. A charge that lands after its hold expired takes a seat if one is free and
//! is otherwise refunded automatically — never oversold, never forgotten.

use rand::Rng;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::Error;
use crate::messages::{self, OrderPaid, OrderRefunded, TicketIssued};
use crate::outbox;
use crate::webhooks::WebhookEvent;

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
    let outcome = match (event.kind.as_str(), order_id) {
        ("payment_intent.succeeded", Some(order_id)) => {
            settle_paid(&mut tx, order_id, intent_id.as_deref(), source).await?
        }
        ("payment_intent.payment_failed", Some(order_id)) => {
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
        ("charge.refunded", Some(order_id)) => {
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

/// Moves a pending order to paid (or to an automatic refund) inside `tx`.
pub async fn settle_paid(
    tx: &mut PgConnection,
    order_id: Uuid,
    intent_id: Option<&str>,
    source: Source,
) -> Result<Settled, Error> {
    let order = sqlx::query!(
        r#"SELECT o.id, o.status, o.hold_id, o.tier_id, o.quantity, o.amount_cents, o.currency,
                  o.buyer_email, o.buyer_name, o.event_id, e.slug, t.code AS tier_code
           FROM orders o JOIN events e ON e.id = o.event_id JOIN tiers t ON t.id = o.tier_id
           WHERE o.id = $1 FOR UPDATE OF o"#,
        order_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("order"))?;
    if order.status != "pending_payment" {
        return Ok(Settled::AlreadySettled { order_id });
    }
    let hold_status = sqlx::query_scalar!(
        "SELECT status FROM holds WHERE id = $1 FOR UPDATE",
        order.hold_id
    )
    .fetch_one(&mut *tx)
    .await?;

    let seats_taken = if hold_status == "active" {
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
    } else {
        // The hold lapsed before the money arrived: take seats only if free now.
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
    };

    if !seats_taken {
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
               VALUES ($1, $2, $3, 'seats_gone_after_hold_expired', $4, 'pending')"#,
            refund_id,
            order_id,
            order.amount_cents,
            source.actor()
        )
        .execute(&mut *tx)
        .await?;
        crate::jobs::schedule_refund(&mut *tx, refund_id).await?;
        sqlx::query!(
            r#"INSERT INTO order_events (order_id, actor, action, before, after)
               VALUES ($1, $2, 'order.refund_seats_gone', '{"status":"pending_payment"}',
                       '{"status":"refunded"}')"#,
            order_id,
            source.actor()
        )
        .execute(&mut *tx)
        .await?;
        outbox::enqueue(
            &mut *tx,
            messages::ORDER_REFUNDED,
            &OrderRefunded {
                order_id,
                event_id: order.event_id,
                refund_id,
                amount_cents: order.amount_cents,
                currency: order.currency.clone(),
                reason: "seats_gone_after_hold_expired".into(),
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
           VALUES ($1, $2, 'order.paid', '{"status":"pending_payment"}',
                   jsonb_build_object('status', 'paid', 'tickets', $3::int4, 'hold', $4::text))"#,
        order_id,
        source.actor(),
        order.quantity,
        hold_status,
    )
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut *tx,
        messages::ORDER_PAID,
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
