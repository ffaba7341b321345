//! Emails, queued once and sent until they arrive.
//!
//! Queueing is idempotent: each delivery is unique per (order, dedup key), so a message
//! redelivered by JetStream, the reconciler and a console resend can all ask for "the
//! confirmation of order X" and exactly one is queued. The sender claims due rows with
//! `FOR UPDATE SKIP LOCKED` (any number of fulfilment replicas), renders, sends, and
//! records the email as sent — with access-link tokens redacted, since only their hashes
//! may be stored. A failed send is retried with exponential backoff (capped), so an SMTP
//! outage of minutes delays mail and loses none.

use chrono::{DateTime, Utc};
use contract::states::OrderStatus;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Error;
use crate::app::AppState;
use crate::{links, reminders};
use contract::calendar::{self, Invite};

/// Give up (status `failed`, visible in the console) after this many attempts.
pub const MAX_ATTEMPTS: i32 = 12;

pub fn money(cents: i64, currency: &str) -> String {
    format!("{currency} {}.{:02}", cents / 100, cents % 100)
}

pub fn local_time(t: DateTime<Utc>, tz: &str) -> String {
    let zone: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    t.with_timezone(&zone)
        .format("%A %-d %B %Y, %H:%M")
        .to_string()
}

/// Queues the order's confirmation (issuing its tickets' links); `true` if it was new.
pub async fn queue_confirmation(s: &AppState, order_id: Uuid) -> Result<bool, Error> {
    let mut tx = s.db.begin().await?;
    let order = sqlx::query!(
        r#"SELECT status AS "status: OrderStatus", buyer_email, event_id FROM orders WHERE id = $1"#,
        order_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("order"))?;
    if !order.status.is_paid() {
        return Ok(false);
    }
    let tickets = sqlx::query_scalar!(
        "SELECT id FROM tickets WHERE order_id = $1 AND status = 'valid' ORDER BY seat_no",
        order_id
    )
    .fetch_all(&mut *tx)
    .await?;
    for t in &tickets {
        links::ensure(&mut tx, &s.config.link_secret, *t).await?;
    }
    let queued = sqlx::query_scalar!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient)
           VALUES ($1, $2, 'confirmation', 'confirmation', $3)
           ON CONFLICT (order_id, dedup_key) DO NOTHING RETURNING id"#,
        Uuid::now_v7(),
        order_id,
        order.buyer_email
    )
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    reminders::schedule(&mut tx, order.event_id).await?;
    tx.commit().await?;
    if queued {
        s.wake.notify_one();
    }
    Ok(queued)
}

/// `a***@example.org`: enough for the old address to recognise, not a disclosure.
fn email_hint(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "a new address".into(),
    }
}

/// The address was corrected: old links revoked, new ones mailed to the new address,
/// and the old address told. Idempotent per change.
pub async fn email_changed(s: &AppState, msg: &contract::EmailChanged) -> Result<(), Error> {
    let mut tx = s.db.begin().await?;
    let already = sqlx::query_scalar!(
        "SELECT 1 AS one FROM deliveries WHERE order_id = $1 AND dedup_key = $2",
        msg.order_id,
        format!("email_change:{}", msg.change_id)
    )
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if already {
        return Ok(());
    }
    let tickets = sqlx::query_scalar!(
        "SELECT id FROM tickets WHERE order_id = $1 AND status = 'valid' AND holder_email = $2",
        msg.order_id,
        msg.new_email
    )
    .fetch_all(&mut *tx)
    .await?;
    for t in &tickets {
        links::revoke(&mut tx, *t, "email_changed").await?;
        links::ensure(&mut tx, &s.config.link_secret, *t).await?;
    }
    sqlx::query!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient)
           VALUES ($1, $2, 'confirmation', $3, $4) ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
        Uuid::now_v7(),
        msg.order_id,
        format!("confirmation:email:{}", msg.change_id),
        msg.new_email
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
           VALUES ($1, $2, 'email_change', $3, $4, $5) ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
        Uuid::now_v7(),
        msg.order_id,
        format!("email_change:{}", msg.change_id),
        msg.old_email,
        serde_json::json!({"new_email_hint": email_hint(&msg.new_email)}),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    s.wake.notify_one();
    Ok(())
}

/// Sends the confirmation again, with the links that are live now.
pub async fn resend(s: &AppState, msg: &contract::ResendRequested) -> Result<bool, Error> {
    let queued = sqlx::query_scalar!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient)
           SELECT $1, id, 'confirmation', $3, buyer_email FROM orders WHERE id = $2
           ON CONFLICT (order_id, dedup_key) DO NOTHING RETURNING id"#,
        Uuid::now_v7(),
        msg.order_id,
        format!("confirmation:resend:{}", msg.request_id),
    )
    .fetch_optional(&s.db)
    .await?
    .is_some();
    if queued {
        s.wake.notify_one();
    }
    Ok(queued)
}

/// A ticket changed hands: its old link is revoked, the new holder's issued, and both
/// people told. Idempotent per new ticket.
pub async fn transferred(s: &AppState, msg: &contract::TicketTransferred) -> Result<(), Error> {
    let mut tx = s.db.begin().await?;
    links::revoke(&mut tx, msg.old_ticket_id, "transferred").await?;
    links::ensure(&mut tx, &s.config.link_secret, msg.new_ticket_id).await?;
    // Both notices name the ticket, and the new holder's names who gave it.
    let old = sqlx::query!(
        "SELECT code, holder_name FROM tickets WHERE id = $1",
        msg.old_ticket_id
    )
    .fetch_one(&mut *tx)
    .await?;
    for (recipient, key, context) in [
        (
            &msg.to_email,
            format!("transfer_to:{}", msg.new_ticket_id),
            serde_json::json!({"role": "to", "name": msg.to_name, "giver": old.holder_name}),
        ),
        (
            &msg.from_email,
            format!("transfer_from:{}", msg.new_ticket_id),
            serde_json::json!({"role": "from", "name": old.holder_name, "codes": [old.code]}),
        ),
    ] {
        sqlx::query!(
            r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
               VALUES ($1, $2, 'transfer_notice', $3, $4, $5) ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
            Uuid::now_v7(),
            msg.order_id,
            key,
            recipient,
            context,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    s.wake.notify_one();
    Ok(())
}

/// The event moved: every holder of a valid ticket gets the new time and an updated
/// invite (same UID, higher SEQUENCE), and reminders follow the new start.
pub async fn rescheduled(s: &AppState, msg: &contract::EventRescheduled) -> Result<u64, Error> {
    let mut tx = s.db.begin().await?;
    // The invite's SEQUENCE comes from when the event last changed (`calendar::sequence`).
    let queued = sqlx::query!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
           SELECT gen_random_uuid(), h.order_id, 'reschedule_notice', $2 || h.holder_email, h.holder_email,
                  jsonb_build_object('name', (SELECT holder_name FROM tickets x WHERE x.order_id = h.order_id
                                              AND x.holder_email = h.holder_email LIMIT 1))
           FROM (SELECT DISTINCT t.order_id, t.holder_email FROM tickets t JOIN orders o ON o.id = t.order_id
                 WHERE t.event_id = $1 AND t.status = 'valid'
                   AND o.status IN ('paid', 'partially_refunded')) h
           ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
        msg.event_id,
        format!("reschedule:{}:", msg.starts_at.timestamp()),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    reminders::schedule(&mut tx, msg.event_id).await?;
    tx.commit().await?;
    s.wake.notify_one();
    Ok(queued)
}

/// Queues the email telling a buyer about a refund, and, when the refund stops the
/// order's tickets, one to each person the buyer gave a ticket to: their link stops
/// too, and nobody else would tell them.
pub async fn queue_refund_notice(
    s: &AppState,
    msg: &contract::OrderRefunded,
) -> Result<bool, Error> {
    let mut tx = s.db.begin().await?;
    // The buyer's own tickets that stop with a full refund, named in the notice.
    let codes: Vec<String> = if msg.full {
        sqlx::query_scalar!(
            r#"SELECT t.code FROM tickets t JOIN orders o ON o.id = t.order_id
               WHERE t.order_id = $1 AND t.status = 'refunded'
                 AND lower(t.holder_email) = lower(o.buyer_email)
               ORDER BY t.seat_no"#,
            msg.order_id
        )
        .fetch_all(&mut *tx)
        .await?
    } else {
        Vec::new()
    };
    let queued = sqlx::query_scalar!(
        r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
           VALUES ($1, $2, 'refund_notice', $3, $4, $5)
           ON CONFLICT (order_id, dedup_key) DO NOTHING RETURNING id"#,
        Uuid::now_v7(),
        msg.order_id,
        format!("refund:{}", msg.refund_id),
        msg.buyer_email,
        serde_json::json!({"amount_cents": msg.amount_cents, "reason": msg.reason,
                           "full": msg.full, "codes": codes}),
    )
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if msg.full {
        sqlx::query!(
            r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
               SELECT gen_random_uuid(), $1, 'refund_notice', $2 || lower(t.holder_email),
                      min(t.holder_email),
                      jsonb_build_object('role', 'holder', 'name', min(t.holder_name),
                                         'giver', $3::text, 'reason', $4::text, 'full', true,
                                         'codes', jsonb_agg(t.code ORDER BY t.seat_no))
               FROM tickets t JOIN orders o ON o.id = t.order_id
               WHERE t.order_id = $1 AND t.status = 'refunded'
                 AND lower(t.holder_email) <> lower(o.buyer_email)
               GROUP BY lower(t.holder_email)
               ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
            msg.order_id,
            format!("refund:{}:holder:", msg.refund_id),
            msg.buyer_name,
            msg.reason,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    s.wake.notify_one();
    Ok(queued)
}

#[derive(Serialize)]
struct TicketCtx {
    code: String,
    tier: String,
    link: String,
}

#[derive(Serialize)]
struct MailCtx {
    /// The address this email goes to, named in it ("sent to …").
    recipient: String,
    organiser: String,
    organiser_email: String,
    /// The buyer's order page and receipt; only the buyer's own emails carry them.
    order_url: String,
    receipt_url: String,
    buyer_name: String,
    event_title: String,
    starts_local: String,
    timezone: String,
    order_id: Uuid,
    amount: String,
    window_text: String,
    tickets: Vec<TicketCtx>,
    refund_amount: String,
    reason_text: String,
    when_text: String,
    new_email_hint: String,
    role: String,
    /// The tickets a notice is about (a transfer's, a refund's).
    codes: Vec<String>,
    /// Who gave the ticket, for its new holder.
    giver: String,
    /// The refund stopped the order's tickets: their links no longer work.
    full: bool,
}

fn reason_text(reason: &str) -> String {
    match reason {
        "seats_gone_after_hold_expired" => "Your payment arrived after your seat reservation had ended, and the tier had sold out in the meantime. We're sorry — we never sell a seat twice, so your money goes back to you in full.".into(),
        "event_cancelled" => "The organiser has cancelled the event.".into(),
        "order_cancelled" => "The organiser has cancelled your order; its tickets no longer open the event.".into(),
        "cancelled_before_payment" => "Your payment arrived after those seats had been given up (you changed or released them, or the reservation was cancelled), so we did not take them. Your money goes back to you in full.".into(),
        "admission_used_elsewhere" => "Your payment arrived after your reservation had ended and your place in the queue had already been used for another reservation, so this one could not be honoured. Your money goes back to you in full.".into(),
        _ => "The organiser has issued a refund for your order.".into(),
    }
}

struct Rendered {
    mail: crate::mail::Composed,
    tokens: Vec<String>,
}

async fn render(s: &AppState, db: &PgPool, delivery_id: Uuid) -> Result<Rendered, Error> {
    let d = sqlx::query!(
        r#"SELECT d.kind, d.context, d.order_id, d.recipient, o.buyer_name, o.buyer_email,
                  o.amount_cents, o.currency, e.id AS event_id, e.title, e.starts_at, e.ends_at,
                  e.timezone, e.organiser, e.organiser_email, e.updated_at AS event_updated_at
           FROM deliveries d JOIN orders o ON o.id = d.order_id JOIN events e ON e.id = o.event_id
           WHERE d.id = $1"#,
        delivery_id
    )
    .fetch_one(db)
    .await?;
    let tickets = sqlx::query!(
        r#"SELECT t.id, t.code, tr.name AS tier, l.generation
           FROM tickets t JOIN tiers tr ON tr.id = t.tier_id
           JOIN access_links l ON l.ticket_id = t.id AND l.revoked_at IS NULL
           WHERE t.order_id = $1 AND t.status = 'valid' AND t.holder_email = $2
           ORDER BY t.seat_no"#,
        d.order_id,
        d.recipient
    )
    .fetch_all(db)
    .await?;
    let mut tokens = Vec::new();
    let ticket_ctx: Vec<TicketCtx> = tickets
        .iter()
        .map(|t| {
            let token = links::token(&s.config.link_secret, t.id, t.generation);
            let link = links::url(&s.config.public_url, &token);
            tokens.push(token);
            TicketCtx {
                code: t.code.clone(),
                tier: t.tier.clone(),
                link,
            }
        })
        .collect();
    let hours = s.config.window_before.as_secs() / 3600;
    // Someone given a ticket gets their link, not the buyer's order. The order token
    // is a key like an access link's: the stored copy (which operators and hosts read)
    // has it redacted too.
    let (order_url, receipt_url) = match &s.config.order_token_secret {
        Some(secret) if d.recipient == d.buyer_email => {
            let token = contract::order_link::token(secret.expose().as_bytes(), d.order_id);
            let page =
                |p| contract::order_link::page_url(&s.config.public_url, d.order_id, p, &token);
            let urls = (page(""), page("/receipt"));
            tokens.push(token);
            urls
        }
        _ => (String::new(), String::new()),
    };
    let ctx = MailCtx {
        recipient: d.recipient.clone(),
        organiser: d.organiser.clone(),
        organiser_email: d.organiser_email.clone().unwrap_or_default(),
        order_url,
        receipt_url,
        buyer_name: d
            .context
            .get("name")
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(&d.buyer_name)
            .to_owned(),
        role: d
            .context
            .get("role")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        event_title: d.title.clone(),
        starts_local: local_time(d.starts_at, &d.timezone),
        timezone: d.timezone.clone(),
        order_id: d.order_id,
        amount: money(d.amount_cents, &d.currency),
        window_text: if hours == 1 {
            "an hour".into()
        } else {
            format!("{hours} hours")
        },
        refund_amount: money(
            d.context
                .get("amount_cents")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            &d.currency,
        ),
        reason_text: reason_text(
            d.context
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or(""),
        ),
        when_text: d
            .context
            .get("when_text")
            .and_then(|v| v.as_str())
            .unwrap_or("soon")
            .to_owned(),
        new_email_hint: d
            .context
            .get("new_email_hint")
            .and_then(|v| v.as_str())
            .unwrap_or("a new address")
            .to_owned(),
        codes: d
            .context
            .get("codes")
            .and_then(|v| v.as_array())
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        giver: d
            .context
            .get("giver")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        full: d
            .context
            .get("full")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        tickets: ticket_ctx,
    };
    // One calendar entry per ticket, each with its own link, under the UID its `/join`
    // page serves too: adding both, or a later version, updates the entry.
    let ics = match d.kind.as_str() {
        "confirmation" | "reschedule_notice" | "transfer_notice" if !tickets.is_empty() => {
            let invites: Vec<Invite> = tickets
                .iter()
                .zip(&ctx.tickets)
                .map(|(t, c)| Invite {
                    uid: calendar::uid(t.id),
                    sequence: calendar::sequence(d.event_updated_at),
                    title: &d.title,
                    starts_at: d.starts_at,
                    ends_at: d.ends_at,
                    link: &c.link,
                    personal: true,
                })
                .collect();
            Some(calendar::calendar(&invites))
        }
        _ => None,
    };
    let mail = s.mailer.compose(&d.kind, &ctx, ics)?;
    Ok(Rendered { mail, tokens })
}

/// Sends what is due; returns how many were attempted.
pub async fn send_due(s: &AppState, limit: i64) -> Result<usize, Error> {
    let mut tx = s.db.begin().await?;
    let due = sqlx::query!(
        r#"SELECT id, recipient, attempts FROM deliveries
           WHERE status = 'queued' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    let sends = due.iter().map(|d| async move {
        let rendered = render(s, &s.db, d.id).await?;
        let message_id = s.mailer.message_id(d.id);
        s.mailer
            .send(&d.recipient, &rendered.mail, &message_id)
            .await?;
        Ok::<_, Error>((rendered, message_id))
    });
    let results = futures::future::join_all(sends).await;
    for (d, result) in due.iter().zip(results) {
        match result {
            Ok((r, message_id)) => {
                let redact = |text: &str| {
                    r.tokens
                        .iter()
                        .fold(text.to_owned(), |t, tok| links::redact(&t, tok))
                };
                sqlx::query!(
                    r#"UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = now(),
                           message_id = $2, subject = $3, body_text = $4, body_html = $5, ics = $6,
                           last_error = NULL
                       WHERE id = $1"#,
                    d.id,
                    message_id,
                    r.mail.subject,
                    redact(&r.mail.text),
                    redact(&r.mail.html),
                    r.mail.ics.as_deref().map(redact),
                )
                .execute(&mut *tx)
                .await?;
                s.metrics.sent.inc();
            }
            Err(Error::Rejected(reason)) => {
                // A permanent refusal is an answer, not an outage: no retry, and the
                // console shows the bounce with its fix (correct the address).
                // The server's words, without addresses (`Mailer::send` took them out).
                tracing::warn!(delivery = %d.id, %reason, "email refused permanently; bounced");
                sqlx::query!(
                    r#"UPDATE deliveries SET status = 'bounced', attempts = attempts + 1,
                           last_error = $2
                       WHERE id = $1"#,
                    d.id,
                    reason,
                )
                .execute(&mut *tx)
                .await?;
                s.metrics.bounced.inc();
            }
            Err(e) => {
                let attempts = d.attempts + 1;
                let backoff = std::time::Duration::from_secs(1u64 << attempts.clamp(0, 12) as u32)
                    .min(s.config.max_backoff);
                let status = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "queued"
                };
                tracing::warn!(delivery = %d.id, attempts, error = %e, "email not sent; will retry");
                sqlx::query!(
                    r#"UPDATE deliveries SET attempts = $2, last_error = $3, status = $4,
                           next_attempt_at = now() + make_interval(secs => $5)
                       WHERE id = $1"#,
                    d.id,
                    attempts,
                    e.to_string(),
                    status,
                    backoff.as_secs_f64(),
                )
                .execute(&mut *tx)
                .await?;
                s.metrics.failed.inc();
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

/// Paid orders without a confirmation after `reconcile_after` (their message was lost,
/// or the consumer was down): queue it now.
pub async fn reconcile(s: &AppState) -> Result<usize, Error> {
    let missing = sqlx::query_scalar!(
        r#"SELECT o.id FROM orders o
           WHERE o.status IN ('paid', 'partially_refunded')
             AND o.paid_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.order_id = o.id AND d.dedup_key = 'confirmation')
           LIMIT 200"#,
        s.config.reconcile_after.as_secs_f64()
    )
    .fetch_all(&s.db)
    .await?;
    let mut queued = 0;
    for order_id in missing {
        if queue_confirmation(s, order_id).await? {
            tracing::info!(order = %order_id, "reconciler queued a missing confirmation");
            queued += 1;
        }
    }
    Ok(queued)
}
