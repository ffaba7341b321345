//! From a hold to an order with a payment intent. Idempotent end to end: the order is
//! unique per hold, the intent is created with the order id as idempotency key, and
//! the order token is derived from the order id, so repeating checkout returns the same
//! order, intent and token.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::Error;
use crate::app::AppState;
use crate::config::Secret;
use crate::payments::NewIntent;

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
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key");
    mac.update(b"floodgate-order-v1:");
    mac.update(order_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}

pub fn token_matches(secret: &Secret, order_id: Uuid, presented: &str) -> bool {
    order_token(secret, order_id)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

pub async fn checkout(
    s: &AppState,
    hold_id: Uuid,
    jti: Option<&str>,
) -> Result<CheckoutView, Error> {
    let mut tx = s.db.begin().await?;
    let hold = sqlx::query!(
        r#"SELECT h.id, h.event_id, h.tier_id, h.quantity, h.admission_jti, h.status, h.expires_at,
                  h.buyer_email, h.buyer_name, t.price_cents, t.currency
           FROM holds h JOIN tiers t ON t.id = h.tier_id WHERE h.id = $1 FOR UPDATE OF h"#,
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
    let existing = sqlx::query!(
        "SELECT id, amount_cents, currency FROM orders WHERE hold_id = $1",
        hold_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (order_id, amount_cents, currency) = match existing {
        Some(o) => (o.id, o.amount_cents, o.currency),
        None => {
            if hold.status != "active" || hold.expires_at <= chrono::Utc::now() {
                return Err(Error::Conflict(
                    "hold_expired",
                    "the hold has expired; hold seats again",
                ));
            }
            let order_id = Uuid::now_v7();
            let amount = hold.price_cents * i64::from(hold.quantity);
            sqlx::query!(
                r#"INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency,
                        buyer_email, buyer_name, status, payment_provider)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending_payment', $10)"#,
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
            )
            .execute(&mut *tx)
            .await?;
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
    sqlx::query!(
        r#"UPDATE orders SET payment_intent_id = $2, updated_at = now()
           WHERE id = $1 AND payment_intent_id IS NULL"#,
        order_id,
        intent.id
    )
    .execute(&s.db)
    .await?;
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
