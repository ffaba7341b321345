//! The fixes an operator makes after the on-sale, as domain operations: each one checks
//! the order's state, changes it, writes its `order_events` row and its outbox message in
//! the caller's transaction (the console adds its own audit row to the same one).

use chrono::Utc;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::buyers::Email;
use crate::{Error, jobs, outbox};
use contract::states::{EventStatus, OrderStatus, TicketStatus};
use contract::{EmailChanged, EventRescheduled, OrderRefunded, ResendRequested, TicketTransferred};

#[derive(Debug, Clone, Serialize)]
pub struct RefundDone {
    pub refund_id: Uuid,
    pub amount_cents: i64,
    pub status: OrderStatus,
    pub inside_policy: bool,
}

/// Who asks, and with what authority.
pub struct Authority<'a> {
    pub actor: &'a str,
    /// May refund outside the event's refund policy.
    pub may_override: bool,
}

pub async fn refund(
    conn: &mut PgConnection,
    order_id: Uuid,
    amount_cents: Option<i64>,
    reason: &str,
    override_policy: bool,
    who: &Authority<'_>,
) -> Result<RefundDone, Error> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::Invalid(
            "a refund needs a reason (up to 500 characters)".into(),
        ));
    }
    let o = sqlx::query!(
        r#"SELECT o.status AS "status: OrderStatus", o.amount_cents, o.refunded_cents, o.currency,
                  o.quantity, o.tier_id,
                  o.event_id, o.buyer_email, o.buyer_name, o.payment_intent_id,
                  e.starts_at, e.refund_policy
           FROM orders o JOIN events e ON e.id = o.event_id WHERE o.id = $1 FOR UPDATE OF o"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("order"))?;
    if !o.status.is_paid() {
        return Err(Error::Conflict(
            "not_refundable",
            "only paid orders can be refunded",
        ));
    }
    let remaining = o.amount_cents - o.refunded_cents;
    let amount = amount_cents.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        return Err(Error::Invalid(format!(
            "the refund must be between 1 and {remaining} cents"
        )));
    }
    let hours = o
        .refund_policy
        .get("refundable_until_hours_before")
        .and_then(|v| v.as_i64())
        .unwrap_or(48);
    let inside_policy = Utc::now() <= o.starts_at - chrono::Duration::hours(hours);
    if !inside_policy {
        if !override_policy {
            return Err(Error::Conflict(
                "outside_refund_policy",
                "this is outside the event's refund policy; an admin may override it with a reason",
            ));
        }
        if !who.may_override {
            return Err(Error::Forbidden(
                "only an admin may refund outside the policy",
            ));
        }
    }
    if o.payment_intent_id.is_none() {
        return Err(Error::Conflict(
            "not_refundable",
            "the order has no payment to refund",
        ));
    }
    let refund_id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO refunds (id, order_id, amount_cents, reason, actor, status)
           VALUES ($1, $2, $3, $4, $5, 'pending')"#,
        refund_id,
        order_id,
        amount,
        reason,
        who.actor
    )
    .execute(&mut *conn)
    .await?;
    jobs::schedule_refund(&mut *conn, refund_id).await?;
    let full = amount == remaining;
    let status = if full {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    sqlx::query!(
        r#"UPDATE orders SET refunded_cents = refunded_cents + $2, status = $3, updated_at = now()
           WHERE id = $1"#,
        order_id,
        amount,
        status as OrderStatus
    )
    .execute(&mut *conn)
    .await?;
    if full {
        // A fully refunded order holds no seats: its tickets stop working and the seats
        // return to the tier.
        let returned = sqlx::query!(
            "UPDATE tickets SET status = 'refunded' WHERE order_id = $1 AND status = 'valid'",
            order_id
        )
        .execute(&mut *conn)
        .await?
        .rows_affected() as i32;
        sqlx::query!(
            "UPDATE tiers SET sold = sold - $2 WHERE id = $1",
            o.tier_id,
            returned
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           VALUES ($1, $2, 'order.refund', jsonb_build_object('status', $3::text),
                   jsonb_build_object('status', $4::text, 'amount_cents', $5::int8,
                                      'reason', $6::text, 'inside_policy', $7::bool))"#,
        order_id,
        who.actor,
        o.status as OrderStatus,
        status as OrderStatus,
        amount,
        reason,
        inside_policy,
    )
    .execute(&mut *conn)
    .await?;
    outbox::enqueue(
        &mut *conn,
        &OrderRefunded {
            order_id,
            event_id: o.event_id,
            refund_id,
            amount_cents: amount,
            currency: o.currency.clone(),
            reason: if reason.starts_with("event cancelled") {
                "event_cancelled".into()
            } else if reason.starts_with(ORDER_CANCELLED_PREFIX) {
                "order_cancelled".into()
            } else {
                "operator_refund".into()
            },
            full,
            buyer_email: o.buyer_email.clone(),
            buyer_name: o.buyer_name.clone(),
        },
    )
    .await?;
    Ok(RefundDone {
        refund_id,
        amount_cents: amount,
        status,
        inside_policy,
    })
}

/// Corrects the buyer's address. Tickets still held by the buyer follow it (transferred
/// tickets keep their holder); fulfilment revokes the old links and mails new ones.
pub async fn change_email(
    conn: &mut PgConnection,
    order_id: Uuid,
    new_email: &Email,
    actor: &str,
) -> Result<bool, Error> {
    let old = sqlx::query_scalar!(
        "SELECT buyer_email FROM orders WHERE id = $1 FOR UPDATE",
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("order"))?;
    if old == new_email.as_str() {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE orders SET buyer_email = $2, updated_at = now() WHERE id = $1",
        order_id,
        new_email.as_str()
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"UPDATE tickets SET holder_email = $3
           WHERE order_id = $1 AND holder_email = $2 AND status = 'valid'"#,
        order_id,
        old,
        new_email.as_str()
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           VALUES ($1, $2, 'order.email_change', jsonb_build_object('email', $3::text),
                   jsonb_build_object('email', $4::text))"#,
        order_id,
        actor,
        old,
        new_email.as_str()
    )
    .execute(&mut *conn)
    .await?;
    outbox::enqueue(
        &mut *conn,
        &EmailChanged {
            order_id,
            change_id: Uuid::now_v7(),
            old_email: old,
            new_email: new_email.as_str().to_owned(),
        },
    )
    .await?;
    Ok(true)
}

/// Asks fulfilment to send the confirmation again with the current links.
pub async fn request_resend(
    conn: &mut PgConnection,
    order_id: Uuid,
    request_id: Uuid,
    actor: &str,
) -> Result<(), Error> {
    let status = sqlx::query_scalar!(
        r#"SELECT status AS "status: OrderStatus" FROM orders WHERE id = $1"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("order"))?;
    if !status.is_paid() {
        return Err(Error::Conflict(
            "not_paid",
            "only paid orders have a confirmation to resend",
        ));
    }
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, after)
           VALUES ($1, $2, 'order.resend', jsonb_build_object('request_id', $3::uuid))"#,
        order_id,
        actor,
        request_id
    )
    .execute(&mut *conn)
    .await?;
    outbox::enqueue(
        &mut *conn,
        &ResendRequested {
            order_id,
            request_id,
        },
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Transferred {
    pub new_ticket_id: Uuid,
    pub code: String,
}

/// Gives a ticket to someone else: the old ticket becomes `transferred` (its link stops),
/// a new ticket for the same seat goes to the new holder, and both people are told.
pub async fn transfer_ticket(
    conn: &mut PgConnection,
    ticket_id: Uuid,
    to_email: &Email,
    to_name: &crate::buyers::BuyerName,
    actor: &str,
) -> Result<Transferred, Error> {
    // The order first, as a refund or a cancellation locks it: a transfer racing a full
    // refund would otherwise leave a valid ticket on a refunded order (and `sold` one
    // short), and two transfers on one order would both take its next seat number.
    let order_id = sqlx::query_scalar!("SELECT order_id FROM tickets WHERE id = $1", ticket_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::NotFound("ticket"))?;
    let order_status = sqlx::query_scalar!(
        r#"SELECT status AS "status: OrderStatus" FROM orders WHERE id = $1 FOR UPDATE"#,
        order_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let t = sqlx::query!(
        r#"SELECT t.order_id, t.event_id, t.tier_id, t.status AS "status: TicketStatus", t.holder_email
           FROM tickets t WHERE t.id = $1 FOR UPDATE"#,
        ticket_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if !order_status.is_paid() {
        return Err(Error::Conflict(
            "not_transferable",
            "the order is no longer paid; its tickets cannot be transferred",
        ));
    }
    if t.status != TicketStatus::Valid {
        return Err(Error::Conflict(
            "not_transferable",
            "only a valid ticket can be transferred",
        ));
    }
    if t.holder_email == to_email.as_str() {
        return Err(Error::Invalid(
            "the ticket already belongs to that address".into(),
        ));
    }
    sqlx::query!(
        "UPDATE tickets SET status = 'transferred' WHERE id = $1",
        ticket_id
    )
    .execute(&mut *conn)
    .await?;
    let new_ticket_id = Uuid::now_v7();
    let code = crate::settlement::ticket_code();
    sqlx::query!(
        r#"INSERT INTO tickets (id, order_id, event_id, tier_id, seat_no, code, holder_email, holder_name)
           VALUES ($1, $2, $3, $4, (SELECT max(seat_no) + 1 FROM tickets WHERE order_id = $2), $5, $6, $7)"#,
        new_ticket_id,
        t.order_id,
        t.event_id,
        t.tier_id,
        code,
        to_email.as_str(),
        to_name.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           VALUES ($1, $2, 'ticket.transfer', jsonb_build_object('ticket', $3::uuid, 'holder', $4::text),
                   jsonb_build_object('ticket', $5::uuid, 'holder', $6::text))"#,
        t.order_id,
        actor,
        ticket_id,
        t.holder_email,
        new_ticket_id,
        to_email.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    outbox::enqueue(
        &mut *conn,
        &TicketTransferred {
            order_id: t.order_id,
            old_ticket_id: ticket_id,
            new_ticket_id,
            from_email: t.holder_email.clone(),
            to_email: to_email.as_str().to_owned(),
            to_name: to_name.as_str().to_owned(),
        },
    )
    .await?;
    Ok(Transferred {
        new_ticket_id,
        code,
    })
}

/// Moves an event; fulfilment re-sends invites and moves reminders.
pub async fn reschedule(
    conn: &mut PgConnection,
    event_id: Uuid,
    starts_at: chrono::DateTime<Utc>,
    ends_at: chrono::DateTime<Utc>,
    notify: bool,
    actor: &str,
) -> Result<bool, Error> {
    if ends_at <= starts_at {
        return Err(Error::Invalid("ends_at must be after starts_at".into()));
    }
    let old = sqlx::query!(
        r#"SELECT starts_at, ends_at, status AS "status: EventStatus" FROM events
           WHERE id = $1 FOR UPDATE"#,
        event_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("event"))?;
    if old.status != EventStatus::Scheduled {
        return Err(Error::Conflict(
            "not_scheduled",
            "a cancelled event cannot be moved",
        ));
    }
    if old.starts_at == starts_at && old.ends_at == ends_at {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE events SET starts_at = $2, ends_at = $3, updated_at = now() WHERE id = $1",
        event_id,
        starts_at,
        ends_at
    )
    .execute(&mut *conn)
    .await?;
    let _ = actor;
    if notify {
        outbox::enqueue(
            &mut *conn,
            &EventRescheduled {
                event_id,
                old_starts_at: old.starts_at,
                starts_at,
                ends_at,
            },
        )
        .await?;
    }
    Ok(true)
}

/// Marks an event cancelled (its links stop opening it). Idempotent.
pub async fn cancel_event(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, Error> {
    Ok(sqlx::query!(
        "UPDATE events SET status = 'cancelled', updated_at = now() WHERE id = $1 AND status <> 'cancelled'",
        event_id
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Ends what is still unpaid in a cancelled event: active holds are released (their
/// seats back, though nobody can buy them) and their unpaid orders cancelled, with
/// their payment intents queued for cancellation, so no payment page of the event
/// takes a card any more. A payment that lands all the same is refunded by settlement
/// ([`late_payments_refunded`] lists those). Returns the orders cancelled.
pub async fn close_unpaid(conn: &mut PgConnection, event_id: Uuid) -> Result<Vec<Uuid>, Error> {
    let closed = sqlx::query!(
        r#"WITH ended AS (
               UPDATE holds SET status = 'released', closed_at = now()
               WHERE event_id = $1 AND status = 'active'
               RETURNING id, tier_id, quantity),
           seats AS (
               UPDATE tiers t SET held = t.held - s.q
               FROM (SELECT tier_id, sum(quantity)::int4 AS q FROM ended GROUP BY tier_id) s
               WHERE t.id = s.tier_id)
           SELECT id AS "id!" FROM ended"#,
        event_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = closed.into_iter().map(|h| h.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query!(
        r#"INSERT INTO order_events (hold_id, actor, action, before, after)
           SELECT id, 'system', 'hold.release', '{"status":"active"}',
                  '{"status":"released","reason":"event_cancelled"}'
           FROM UNNEST($1::uuid[]) AS t(id)"#,
        &ids
    )
    .execute(&mut *conn)
    .await?;
    crate::checkout::cancel_unpaid(conn, &ids, "system", "event_cancelled").await
}

/// Orders of an event whose payment landed after it was cancelled and was refunded
/// for that reason (the cancellation run lists them for the operator).
pub async fn late_payments_refunded(db: &PgPool, event_id: Uuid) -> Result<Vec<Uuid>, Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT r.order_id FROM refunds r JOIN orders o ON o.id = r.order_id
           WHERE o.event_id = $1 AND r.reason = $2 ORDER BY r.created_at"#,
        event_id,
        crate::settlement::REFUND_EVENT_CANCELLED,
    )
    .fetch_all(db)
    .await?)
}

/// How a cancellation's refund reason starts (the buyer's email says "cancelled").
const ORDER_CANCELLED_PREFIX: &str = "order cancelled";

#[derive(Debug, Clone, Serialize)]
pub struct OrderCancelled {
    /// False when the order was already cancelled (nothing was done).
    pub cancelled: bool,
    /// The refund of what was still paid, if anything was.
    pub refund: Option<RefundDone>,
    /// Tickets that stopped working (their seats went back to the tier).
    pub tickets_revoked: i64,
}

/// Cancels a paid order: refunds what is still paid (the refund policy applies as for
/// any refund; the buyer gets the refund notice), stops every ticket and its link, and
/// returns the seats to the tier, as a full refund does. An unpaid order has nothing to
/// cancel: its hold expires by itself.
pub async fn cancel_order(
    conn: &mut PgConnection,
    order_id: Uuid,
    reason: &str,
    override_policy: bool,
    who: &Authority<'_>,
) -> Result<OrderCancelled, Error> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::Invalid(
            "a cancellation needs a reason (up to 500 characters)".into(),
        ));
    }
    let o = sqlx::query!(
        r#"SELECT status AS "status: OrderStatus", amount_cents, refunded_cents, tier_id,
                  payment_intent_id
           FROM orders WHERE id = $1 FOR UPDATE"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("order"))?;
    match o.status {
        OrderStatus::Cancelled => {
            return Ok(OrderCancelled {
                cancelled: false,
                refund: None,
                tickets_revoked: 0,
            });
        }
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {}
        OrderStatus::PendingPayment => {
            return Err(Error::Conflict(
                "not_cancellable",
                "an unpaid order has nothing to cancel; its reservation expires by itself",
            ));
        }
    }
    let remaining = o.amount_cents - o.refunded_cents;
    let refund = if remaining > 0 && o.payment_intent_id.is_some() {
        // A full refund of the rest also marks the tickets refunded and frees the seats.
        Some(
            refund(
                conn,
                order_id,
                None,
                &format!("{ORDER_CANCELLED_PREFIX}: {reason}"),
                override_policy,
                who,
            )
            .await?,
        )
    } else {
        None
    };
    // Whatever is still valid (nothing was paid, or nothing left to refund) stops too.
    let revoked = sqlx::query!(
        "UPDATE tickets SET status = 'revoked' WHERE order_id = $1 AND status = 'valid'",
        order_id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected() as i32;
    if revoked > 0 {
        sqlx::query!(
            "UPDATE tiers SET sold = sold - $2 WHERE id = $1",
            o.tier_id,
            revoked
        )
        .execute(&mut *conn)
        .await?;
    }
    let stopped = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tickets
           WHERE order_id = $1 AND status IN ('refunded', 'revoked')"#,
        order_id
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        r#"UPDATE access_links SET revoked_at = now(), revoked_reason = 'order_cancelled'
           WHERE revoked_at IS NULL AND ticket_id IN (SELECT id FROM tickets WHERE order_id = $1)"#,
        order_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = $1",
        order_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO order_events (order_id, actor, action, before, after)
           VALUES ($1, $2, 'order.cancel', jsonb_build_object('status', $3::text),
                   jsonb_build_object('status', 'cancelled', 'reason', $4::text))"#,
        order_id,
        who.actor,
        o.status as OrderStatus,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    Ok(OrderCancelled {
        cancelled: true,
        refund,
        tickets_revoked: stopped,
    })
}
