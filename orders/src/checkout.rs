//! From a hold to an order with a payment intent. Idempotent end to end: the order is
//! unique per hold, the intent is created with the order id as idempotency key, and
//! the order token is derived from the order id, so repeating checkout returns the same
//! order, intent and token.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Error;
use crate::app::AppState;
use crate::payments::NewIntent;
use contract::states::{EventStatus, HoldStatus, OrderStatus};
use platform::env::Secret;

#[derive(Debug, Serialize)]
pub struct CheckoutView {
    pub order_id: Uuid,
    pub order_token: String,
    pub payment: PaymentView,
}

#[derive(Debug, Serialize)]
pub struct PaymentView {
    pub provider: &'static str,
    pub intent_id: String,
    pub client_secret: Option<String>,
    pub pay_url: String,
}

/// The buyer's key to their order page: HMAC of the order id, so it needs no storage
/// and cannot be guessed from the id.
pub fn order_token(secret: &Secret, order_id: Uuid) -> String {
    contract::order_link::token(secret.expose().as_bytes(), order_id)
}

pub fn token_matches(secret: &Secret, order_id: Uuid, presented: &str) -> bool {
    contract::order_link::matches(secret.expose().as_bytes(), order_id, presented)
}

pub async fn checkout(
    s: &AppState,
    hold_id: Uuid,
    jti: Option<&str>,
) -> Result<CheckoutView, Error> {
    let mut tx = s.db.begin().await?;
    let hold = sqlx::query!(
        r#"SELECT h.id, h.event_id, h.tier_id, h.quantity, h.admission_jti, h.status AS "status: HoldStatus", h.expires_at,
                  h.buyer_email, h.buyer_name, t.price_cents, t.currency,
                  e.status AS "event_status: EventStatus"
           FROM holds h JOIN tiers t ON t.id = h.tier_id JOIN events e ON e.id = h.event_id
           WHERE h.id = $1 FOR UPDATE OF h"#,
        hold_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("hold"))?;
    crate::holds::answers_to(&hold.admission_jti, jti)?;
    if hold.event_status == EventStatus::Cancelled {
        return Err(Error::Conflict(
            "event_cancelled",
            "this event has been cancelled; nothing can be bought for it",
        ));
    }
    let existing = sqlx::query!(
        r#"SELECT id, amount_cents, currency, status AS "status: OrderStatus"
           FROM orders WHERE hold_id = $1"#,
        hold_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (order_id, amount_cents, currency) = match existing {
        Some(o) if o.status == OrderStatus::Cancelled => {
            return Err(Error::Conflict(
                "order_cancelled",
                "this checkout was cancelled when its seats were given up; hold seats again",
            ));
        }
        Some(o) => (o.id, o.amount_cents, o.currency),
        None => {
            if hold.status != HoldStatus::Active || hold.expires_at <= chrono::Utc::now() {
                return Err(Error::Conflict(
                    "hold_expired",
                    "the hold has expired; hold seats again",
                ));
            }
            let order_id = Uuid::now_v7();
            let amount = hold.price_cents * i64::from(hold.quantity);
            sqlx::query!(
                r#"INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency,
                        buyer_email, buyer_name, status, payment_provider, admission_jti)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending_payment', $10, $11)"#,
                order_id,
                hold.event_id,
                hold_id,
                hold.tier_id,
                hold.quantity,
                amount,
                hold.currency,
                hold.buyer_email,
                hold.buyer_name,
                s.provider.name(),
                hold.admission_jti,
            )
            .execute(&mut *tx)
            .await
            .map_err(one_live_order)?;
            sqlx::query!(
                r#"INSERT INTO order_events (order_id, hold_id, actor, action, after)
                   VALUES ($1, $2, 'buyer', 'order.create',
                           jsonb_build_object('status', 'pending_payment', 'amount_cents', $3::int8))"#,
                order_id,
                hold_id,
                amount
            )
            .execute(&mut *tx)
            .await?;
            (order_id, amount, hold.currency.clone())
        }
    };
    tx.commit().await?;

    let token = order_token(&s.config.order_token_secret, order_id);
    let return_url = format!(
        "{}/orders/{order_id}?order_token={token}",
        s.config.public_url
    );
    let intent = s
        .provider
        .create_intent(&NewIntent {
            order_id,
            amount_cents,
            currency: &currency,
            return_url: &return_url,
        })
        .await?;
    let status = sqlx::query_scalar!(
        r#"UPDATE orders SET payment_intent_id = COALESCE(payment_intent_id, $2),
               updated_at = CASE WHEN payment_intent_id IS NULL THEN now() ELSE updated_at END
           WHERE id = $1 RETURNING status AS "status: OrderStatus""#,
        order_id,
        intent.id
    )
    .fetch_one(&s.db)
    .await?;
    if status == OrderStatus::Cancelled {
        // The hold ended while the provider was asked: the cancellation found no
        // intent to cancel, so this one must be cancelled too before anyone pays it.
        let mut conn = s.db.acquire().await?;
        crate::jobs::schedule_intent_cancel(&mut conn, order_id).await?;
        return Err(Error::Conflict(
            "order_cancelled",
            "this checkout was cancelled when its seats were given up; hold seats again",
        ));
    }
    Ok(CheckoutView {
        order_id,
        order_token: token,
        payment: PaymentView {
            provider: s.provider.name(),
            pay_url: s.provider.pay_url(&intent.id),
            intent_id: intent.id.clone(),
            client_secret: intent.client_secret.clone(),
        },
    })
}

/// An admission has one live order: a second is refused by the unique index
/// `orders_one_live_per_admission`, whatever raced to make it.
fn one_live_order(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("orders_one_live_per_admission") => {
            Error::AdmissionUsed
        }
        _ => Error::Database(e),
    }
}

/// Cancels the unpaid orders of holds that just ended (released by the buyer, or
/// expired), in the caller's transaction, and queues the cancellation of their payment
/// intents at the provider, so a payment page left open takes no card. `why` is
/// `hold_released` or `hold_expired`. Returns the orders cancelled.
pub async fn cancel_unpaid(
    conn: &mut PgConnection,
    hold_ids: &[Uuid],
    actor: &str,
    why: &str,
) -> Result<Vec<Uuid>, Error> {
    let cancelled = sqlx::query_scalar!(
        r#"UPDATE orders SET status = 'cancelled', updated_at = now()
           WHERE hold_id = ANY($1) AND status = 'pending_payment'
           RETURNING id"#,
        hold_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    if cancelled.is_empty() {
        return Ok(cancelled);
    }
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           SELECT id, $2, 'order.cancel', '{"status":"pending_payment"}',
                  jsonb_build_object('status', 'cancelled', 'reason', $3::text)
           FROM UNNEST($1::uuid[]) AS t(id)"#,
        &cancelled,
        actor,
        why,
    )
    .execute(&mut *conn)
    .await?;
    for order_id in &cancelled {
        crate::jobs::schedule_intent_cancel(conn, *order_id).await?;
    }
    Ok(cancelled)
}
