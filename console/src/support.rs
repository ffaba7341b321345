//! An order as support sees it — one timeline of everything that happened, and a
//! diagnosis of why its holder might not get in — and the fixes, each one step:
//! idempotent (by action key), audited with actor and reason, the buyer told by email.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use contract::states::{DeliveryStatus, OrderStatus, TicketStatus};
use orders::corrections::{self, Authority};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Operator, Role, STAFF};
use crate::error::{ApiJson, ApiPath};
use crate::fixes::{Attempt, Fix, once, record_refusal};
use crate::privacy::Shown;
use crate::{moment, timeline};

/// When access links open before the start (fulfilment's default window).
const JOIN_WINDOW: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Serialize)]
pub struct OrderDetail {
    pub order: OrderRow,
    pub tickets: Vec<TicketRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub timeline: Vec<TimelineEntry>,
    pub diagnosis: Diagnosis,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub status: OrderStatus,
    pub buyer_email: String,
    pub buyer_name: String,
    pub quantity: i32,
    pub amount_cents: i64,
    pub refunded_cents: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub event_id: Uuid,
    pub event_slug: String,
    pub event_title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: String,
    pub tier: String,
    /// The end of the event's refund policy: later refunds need an admin's override.
    pub refundable_until: DateTime<Utc>,
    /// Whether the event lets its hosts see addresses in full (decides, not shown).
    #[serde(skip)]
    pub hosts_see_buyer_emails: bool,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketRow {
    pub id: Uuid,
    pub code: String,
    pub status: TicketStatus,
    pub holder_email: String,
    pub link_generation: Option<i32>,
    pub last_visit: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One thing that happened to the order. `detail` (and `before`, for changes) are the
/// row's own fields; `summary` is the same in words, as the order's page shows it.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// `order`, `payment`, `email`, `link` or `operator`.
    pub source: String,
    pub action: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    pub detail: Option<serde_json::Value>,
    /// The operator's reason for a change they made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub summary: String,
}

struct TimelineRow {
    at: DateTime<Utc>,
    source: String,
    action: String,
    actor: String,
    before: Option<serde_json::Value>,
    detail: Option<serde_json::Value>,
    reason: Option<String>,
}

/// "Why can't they join?": the first thing in the way, and the fix.
#[derive(Debug, Serialize)]
pub struct Diagnosis {
    pub state: &'static str,
    pub message: String,
    pub fix: Option<&'static str>,
}

async fn load(s: &AppState, operator: &Operator, id: Uuid) -> Result<OrderDetail, ConsoleError> {
    let order = sqlx::query_as!(
        OrderRow,
        r#"SELECT o.id, o.status AS "status: OrderStatus", o.buyer_email, o.buyer_name, o.quantity, o.amount_cents,
                  o.refunded_cents, o.currency, o.payment_intent_id, o.created_at, o.paid_at,
                  e.id AS event_id, e.slug AS event_slug, e.title AS event_title, e.starts_at,
                  e.ends_at, e.timezone, t.name AS tier,
                  e.starts_at - make_interval(hours => coalesce(
                      (e.refund_policy->>'refundable_until_hours_before')::int, 48))
                      AS "refundable_until!",
                  e.hosts_see_buyer_emails
           FROM orders o JOIN events e ON e.id = o.event_id JOIN tiers t ON t.id = o.tier_id
           WHERE o.id = $1"#,
        id
    )
    .fetch_optional(&s.db)
    .await?
    .filter(|o| operator.may_see(o.event_id))
    .ok_or(orders::Error::NotFound("order"))?;
    let tickets = sqlx::query_as!(
        TicketRow,
        r#"SELECT t.id, t.code, t.status AS "status: TicketStatus", t.holder_email,
                  (SELECT generation FROM access_links l WHERE l.ticket_id = t.id AND l.revoked_at IS NULL) AS link_generation,
                  (SELECT max(at) FROM redemptions r WHERE r.ticket_id = t.id) AS last_visit,
                  (SELECT outcome FROM redemptions r WHERE r.ticket_id = t.id ORDER BY at DESC LIMIT 1) AS last_outcome
           FROM tickets t WHERE t.order_id = $1 ORDER BY t.seat_no"#,
        id
    )
    .fetch_all(&s.db)
    .await?;
    let deliveries = sqlx::query_as!(
        DeliveryRow,
        r#"SELECT id, kind, recipient, status AS "status: DeliveryStatus", attempts, last_error, subject,
                  body_html, created_at, sent_at
           FROM deliveries WHERE order_id = $1 ORDER BY created_at"#,
        id
    )
    .fetch_all(&s.db)
    .await?;
    // An operator's fix writes an audit row (with their reason) and an order event in
    // one transaction, so both carry the same `at`: the reason joins its order event and
    // the audit row is not shown twice. Audit rows without an order event (a refused
    // refund, say) are rows of their own.
    let rows = sqlx::query_as!(
        TimelineRow,
        r#"WITH audit AS (
               SELECT a.at, a.action, a.actor, a.before, a.after, a.reason
                 FROM operator_audit a WHERE a.subject = $2
           ), events AS (
               SELECT oe.at, oe.action, oe.actor, oe.before, oe.after
                 FROM order_events oe
                WHERE oe.order_id = $1 OR oe.hold_id = (SELECT hold_id FROM orders WHERE id = $1)
           )
           SELECT at AS "at!", source AS "source!", action AS "action!", actor AS "actor!",
                  before, detail, reason FROM (
             SELECT e.at, 'order' AS source, e.action, e.actor, e.before, e.after AS detail,
                    (SELECT a.reason FROM audit a WHERE a.action = e.action AND a.at = e.at
                      LIMIT 1) AS reason
               FROM events e
             UNION ALL
             SELECT pe.received_at, 'payment', pe.type, pe.provider, NULL,
                    jsonb_build_object('event', pe.provider_event_id), NULL
               FROM payment_events pe WHERE pe.order_id = $1
             UNION ALL
             SELECT coalesce(d.sent_at, d.created_at), 'email', d.kind || '.' || d.status,
                    'fulfilment', NULL,
                    jsonb_strip_nulls(jsonb_build_object('to', d.recipient, 'attempts', d.attempts,
                                                         'error', d.last_error)), NULL
               FROM deliveries d WHERE d.order_id = $1
             UNION ALL
             SELECT r.at, 'link', r.outcome, coalesce(r.client, '?'), NULL,
                    jsonb_build_object('ticket', t.code), NULL
               FROM redemptions r JOIN tickets t ON t.id = r.ticket_id WHERE t.order_id = $1
             UNION ALL
             SELECT a.at, 'operator', a.action, a.actor, a.before, a.after, a.reason
               FROM audit a
              WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.action = a.action AND e.at = a.at)
           ) x ORDER BY 1, 2"#,
        id,
        id.to_string(),
    )
    .fetch_all(&s.db)
    .await?;
    let cx = timeline::Context {
        currency: &order.currency,
        tz: moment::zone(&order.timezone),
    };
    let timeline = rows
        .into_iter()
        .map(|r| {
            let summary = timeline::describe(
                &timeline::Row {
                    source: &r.source,
                    action: &r.action,
                    actor: &r.actor,
                    before: r.before.as_ref(),
                    after: r.detail.as_ref(),
                    reason: r.reason.as_deref(),
                },
                &cx,
            );
            TimelineEntry {
                at: r.at,
                source: r.source,
                action: r.action,
                actor: r.actor,
                before: r.before,
                detail: r.detail,
                reason: r.reason,
                summary,
            }
        })
        .collect();
    let diagnosis = diagnose(&order, &tickets, &deliveries, JOIN_WINDOW);
    let shown = Shown::to(operator, order.hosts_see_buyer_emails);
    Ok(shown_as(
        OrderDetail {
            order,
            tickets,
            deliveries,
            timeline,
            diagnosis,
        },
        shown,
    ))
}

/// The order with every address in it as `shown` allows — the buyer's, the holders',
/// the recipients', and any named in an email, a mail server's answer or the timeline —
/// so the page and the API (one `load`) cannot differ.
fn shown_as(mut d: OrderDetail, shown: Shown) -> OrderDetail {
    if shown == Shown::Full {
        return d;
    }
    d.order.buyer_email = shown.email(&d.order.buyer_email);
    for t in &mut d.tickets {
        t.holder_email = shown.email(&t.holder_email);
    }
    for m in &mut d.deliveries {
        m.recipient = shown.email(&m.recipient);
        shown.text_in(&mut m.last_error);
        shown.text_in(&mut m.subject);
        shown.text_in(&mut m.body_html);
    }
    for t in &mut d.timeline {
        t.summary = shown.text(&t.summary).into_owned();
        t.actor = shown.text(&t.actor).into_owned();
        shown.text_in(&mut t.reason);
        for v in [&mut t.before, &mut t.detail].into_iter().flatten() {
            shown.json(v);
        }
    }
    d.diagnosis.message = shown.text(&d.diagnosis.message).into_owned();
    d
}

fn diagnose(
    o: &OrderRow,
    tickets: &[TicketRow],
    deliveries: &[DeliveryRow],
    window: chrono::Duration,
) -> Diagnosis {
    let d = |state, message: &str, fix| Diagnosis {
        state,
        message: message.to_owned(),
        fix,
    };
    match o.status {
        OrderStatus::PendingPayment => {
            return d(
                "unpaid",
                "The payment has not arrived; there is no ticket yet.",
                None,
            );
        }
        OrderStatus::Refunded => {
            return d(
                "refunded",
                "The order was refunded in full; its links no longer open the event.",
                None,
            );
        }
        OrderStatus::Cancelled => return d("cancelled", "The order was cancelled.", None),
        OrderStatus::Paid | OrderStatus::PartiallyRefunded => {}
    }
    if tickets.iter().all(|t| t.status != TicketStatus::Valid) {
        return d(
            "no_valid_ticket",
            "No ticket of this order is valid any more (transferred, revoked or refunded).",
            None,
        );
    }
    let confirmations: Vec<&DeliveryRow> = deliveries
        .iter()
        .filter(|x| x.kind == "confirmation")
        .collect();
    if confirmations
        .iter()
        .any(|c| c.status == DeliveryStatus::Bounced)
    {
        return d(
            "bounced",
            "The confirmation bounced: the address is probably wrong.",
            Some("email"),
        );
    }
    if !confirmations
        .iter()
        .any(|c| c.status == DeliveryStatus::Sent)
    {
        if confirmations
            .iter()
            .any(|c| c.status == DeliveryStatus::Failed)
        {
            return d(
                "never_delivered",
                "Sending the confirmation failed repeatedly.",
                Some("resend"),
            );
        }
        return d(
            "never_delivered",
            "The confirmation has not been sent yet.",
            Some("resend"),
        );
    }
    let now = Utc::now();
    if now < o.starts_at - window {
        return d(
            "too_early",
            "The link opens an hour before the start; it is too early to join.",
            None,
        );
    }
    if now > o.ends_at {
        return d("ended", "The event is over.", None);
    }
    if tickets
        .iter()
        .any(|t| t.last_outcome.as_deref() == Some("replaced"))
    {
        return d(
            "old_link",
            "They used an old link that was replaced; the newest email has the working one.",
            Some("resend"),
        );
    }
    d(
        "ok",
        "Everything is in order: the link works now.",
        Some("resend"),
    )
}

pub async fn show(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrderDetail>, ConsoleError> {
    Ok(Json(load(&s, &operator, id).await?))
}

pub async fn detail(
    s: &AppState,
    operator: &Operator,
    id: Uuid,
) -> Result<OrderDetail, ConsoleError> {
    load(s, operator, id).await
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn event_of(s: &AppState, operator: &Operator, order_id: Uuid) -> Result<Uuid, ConsoleError> {
    sqlx::query_scalar!("SELECT event_id FROM orders WHERE id = $1", order_id)
        .fetch_optional(&s.db)
        .await?
        .filter(|e| operator.may_see(*e))
        .ok_or_else(|| orders::Error::NotFound("order").into())
}

/// What a fix answers: what it did, as JSON, or why it was refused.
type Done = Result<serde_json::Value, ConsoleError>;

/// The body of a fix — what the API's JSON and a page's form both become — with the
/// target it acts on (an order's or ticket's id, an event's slug) and the fix itself.
/// The API serves every one with [`fix`]; the pages call [`FixBody::run`].
pub trait FixBody: DeserializeOwned + Send + 'static {
    type Target: DeserializeOwned + Send + 'static;

    /// Runs the fix on `target` for `op`, once per `key`, audited.
    fn run(
        self,
        s: &AppState,
        op: &Operator,
        target: Self::Target,
        key: Option<&str>,
    ) -> impl Future<Output = Done> + Send;
}

/// `POST` of a fix with a JSON body: the operator, the target in the path, the
/// `Idempotency-Key` header and the body, checked in that order for every fix.
pub async fn fix<B: FixBody>(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(target): ApiPath<B::Target>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<B>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let key = idempotency_key(&headers);
    Ok(Json(body.run(&s, &operator, target, key.as_deref()).await?))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    pub amount_cents: Option<i64>,
    pub reason: String,
    #[serde(default)]
    pub override_policy: bool,
}

impl FixBody for RefundBody {
    type Target = Uuid;

    async fn run(self, s: &AppState, op: &Operator, id: Uuid, key: Option<&str>) -> Done {
        under_refund_policy(s, op, id, PolicyFix::Refund(self), key).await
    }
}

/// The two fixes that move money under the event's refund policy.
enum PolicyFix {
    Refund(RefundBody),
    Cancel(CancelOrderBody),
}

/// Refunding and cancelling an order are one shape: staff only, on an order the
/// operator may see, under the refund policy that only an admin may override, and a
/// refusal by that policy is recorded.
async fn under_refund_policy(
    s: &AppState,
    operator: &Operator,
    id: Uuid,
    fix: PolicyFix,
    key: Option<&str>,
) -> Done {
    operator.require(STAFF)?;
    let event = event_of(s, operator, id).await?;
    let actor = operator.label();
    let may_override = operator.role == Role::Admin;
    let (action, reason, request) = match &fix {
        // The refund's audit row keeps the reason as typed; a cancellation's, trimmed.
        PolicyFix::Refund(body) => (
            Fix::Refund,
            body.reason.clone(),
            serde_json::to_value(body).expect("json"),
        ),
        PolicyFix::Cancel(body) => (
            Fix::CancelOrder,
            body.reason.trim().to_owned(),
            serde_json::to_value(body).expect("json"),
        ),
    };
    let attempt = Attempt {
        operator,
        action,
        subject: &id.to_string(),
        event,
        reason: Some(&reason),
        request,
        key,
    };
    let result = once(s, &attempt, move |conn| {
        Box::pin(async move {
            let authority = Authority {
                actor: &actor,
                may_override,
            };
            let done = match fix {
                PolicyFix::Refund(body) => serde_json::to_value(
                    corrections::refund(
                        conn,
                        id,
                        body.amount_cents,
                        &body.reason,
                        body.override_policy,
                        &authority,
                    )
                    .await?,
                ),
                PolicyFix::Cancel(body) => serde_json::to_value(
                    corrections::cancel_order(
                        conn,
                        id,
                        &body.reason,
                        body.override_policy,
                        &authority,
                    )
                    .await?,
                ),
            };
            Ok(done.expect("json"))
        })
    })
    .await;
    if let Err(e) = &result {
        record_refusal(s, &attempt, e).await;
    }
    result
}

/// Cancels one order: refunds what is still paid (outside the refund policy only an
/// admin, with a reason), stops its tickets and links, frees the seats, tells the buyer.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderBody {
    pub reason: String,
    #[serde(default)]
    pub override_policy: bool,
}

impl FixBody for CancelOrderBody {
    type Target = Uuid;

    async fn run(self, s: &AppState, op: &Operator, id: Uuid, key: Option<&str>) -> Done {
        under_refund_policy(s, op, id, PolicyFix::Cancel(self), key).await
    }
}

pub async fn resend_with(s: &AppState, operator: &Operator, id: Uuid, key: Option<&str>) -> Done {
    operator.require(STAFF)?;
    let event = event_of(s, operator, id).await?;
    let actor = operator.label();
    let attempt = Attempt {
        operator,
        action: Fix::Resend,
        subject: &id.to_string(),
        event,
        reason: None,
        request: serde_json::Value::Null,
        key,
    };
    once(s, &attempt, move |conn| {
        Box::pin(async move {
            let request_id = Uuid::now_v7();
            corrections::request_resend(conn, id, request_id, &actor).await?;
            Ok(serde_json::json!({"request_id": request_id}))
        })
    })
    .await
}

pub async fn resend(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    Ok(Json(
        resend_with(&s, &operator, id, idempotency_key(&headers).as_deref()).await?,
    ))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    pub email: String,
    pub reason: Option<String>,
}

impl FixBody for EmailBody {
    type Target = Uuid;

    async fn run(self, s: &AppState, op: &Operator, id: Uuid, key: Option<&str>) -> Done {
        op.require(STAFF)?;
        let email = orders::buyers::Email::parse(&self.email)?;
        let event = event_of(s, op, id).await?;
        let actor = op.label();
        let request = serde_json::to_value(&self).expect("json");
        let attempt = Attempt {
            operator: op,
            action: Fix::ChangeEmail,
            subject: &id.to_string(),
            event,
            reason: self.reason.as_deref(),
            request,
            key,
        };
        once(s, &attempt, move |conn| {
            Box::pin(async move {
                let changed = corrections::change_email(conn, id, &email, &actor).await?;
                Ok(serde_json::json!({"changed": changed}))
            })
        })
        .await
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    pub email: String,
    pub name: String,
    pub reason: Option<String>,
}

impl FixBody for TransferBody {
    type Target = Uuid;

    async fn run(self, s: &AppState, op: &Operator, ticket: Uuid, key: Option<&str>) -> Done {
        op.require(STAFF)?;
        let email = orders::buyers::Email::parse(&self.email)?;
        let name = orders::buyers::BuyerName::parse(&self.name)?;
        let (order, event): (Uuid, Uuid) =
            sqlx::query_as("SELECT order_id, event_id FROM tickets WHERE id = $1")
                .bind(ticket)
                .fetch_optional(&s.db)
                .await?
                .filter(|(_, e): &(Uuid, Uuid)| op.may_see(*e))
                .ok_or(orders::Error::NotFound("ticket"))?;
        let actor = op.label();
        // The subject is the order (its timeline shows the transfer); the ticket is part
        // of the request, so a key used for one ticket cannot be replayed for another.
        let request = serde_json::json!({"ticket": ticket, "body": self});
        let attempt = Attempt {
            operator: op,
            action: Fix::Transfer,
            subject: &order.to_string(),
            event,
            reason: self.reason.as_deref(),
            request,
            key,
        };
        once(s, &attempt, move |conn| {
            Box::pin(async move {
                let done =
                    corrections::transfer_ticket(conn, ticket, &email, &name, &actor).await?;
                Ok(serde_json::to_value(done).expect("json"))
            })
        })
        .await
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBody {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default = "yes")]
    pub notify: bool,
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

impl FixBody for RescheduleBody {
    type Target = String;

    async fn run(self, s: &AppState, op: &Operator, slug: String, key: Option<&str>) -> Done {
        op.require(STAFF)?;
        let event = orders::events::by_slug(&s.db, &slug)
            .await?
            .ok_or(orders::Error::NotFound("event"))?;
        let actor = op.label();
        let event_id = event.id;
        let request = serde_json::to_value(&self).expect("json");
        let attempt = Attempt {
            operator: op,
            action: Fix::Reschedule,
            subject: &slug,
            event: event_id,
            reason: self.reason.as_deref(),
            request,
            key,
        };
        let (starts_at, ends_at, notify) = (self.starts_at, self.ends_at, self.notify);
        once(s, &attempt, move |conn| {
            Box::pin(async move {
                let moved = corrections::reschedule(conn, event_id, starts_at, ends_at, notify, &actor).await?;
                Ok(serde_json::json!({"moved": moved, "starts_at": starts_at, "ends_at": ends_at, "notified": notify && moved}))
            })
        })
        .await
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: String,
}

/// Where a cancellation stands: safe to run again until `failed` is empty.
#[derive(Debug, Serialize)]
pub struct CancelProgress {
    pub orders: usize,
    pub refunded_now: usize,
    pub already_settled: usize,
    pub failed: Vec<serde_json::Value>,
    /// Unpaid orders cancelled by this run (their payment pages closed).
    pub unpaid_cancelled: usize,
    /// Orders whose payment landed after the cancellation and was refunded for it.
    pub late_payments_refunded: Vec<Uuid>,
}

/// Cancels an event: closes its queue, marks it cancelled, and refunds every paid order
/// in full, one order per transaction so a failure stops nothing and a re-run picks up
/// where it left off. Everyone is told by email (the refund notice).
pub async fn cancel_event_with(
    s: &AppState,
    operator: &Operator,
    slug: &str,
    body: CancelBody,
) -> Result<CancelProgress, ConsoleError> {
    operator.require(&[Role::Admin])?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ConsoleError::Invalid(
            "cancelling an event needs a reason (up to 500 characters)".into(),
        ));
    }
    let event = orders::events::by_slug(&s.db, slug)
        .await?
        .ok_or(orders::Error::NotFound("event"))?;
    let mut tx = s.db.begin().await?;
    let cancelled = corrections::cancel_event(&mut tx, event.id).await?;
    // Also on a re-run: a checkout that slipped in before the event row was updated.
    let unpaid_cancelled = corrections::close_unpaid(&mut tx, event.id).await?.len();
    if cancelled {
        audit::record(
            &mut tx,
            operator,
            Entry {
                action: Fix::CancelEvent.as_str(),
                event_id: Some(event.id),
                subject: slug,
                before: Some(serde_json::json!({"status": event.status})),
                after: Some(serde_json::json!({"status": "cancelled"})),
                reason: Some(reason),
            },
        )
        .await?;
    }
    tx.commit().await?;
    let slug_parsed = event.slug();
    if let Some(mut live) = s.room.settings(&slug_parsed).await? {
        live.mode = waitroom::settings::Mode::Closed;
        s.room.apply_settings(&slug_parsed, &live).await?;
    }
    let orders: Vec<(Uuid, OrderStatus)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE event_id = $1 ORDER BY created_at")
            .bind(event.id)
            .fetch_all(&s.db)
            .await?;
    let mut progress = CancelProgress {
        orders: orders.len(),
        refunded_now: 0,
        already_settled: 0,
        failed: Vec::new(),
        unpaid_cancelled,
        late_payments_refunded: Vec::new(),
    };
    let actor = operator.label();
    for (order_id, status) in orders {
        if !status.is_paid() {
            progress.already_settled += 1;
            continue;
        }
        let result = async {
            let mut tx = s.db.begin().await?;
            corrections::refund(
                &mut tx,
                order_id,
                None,
                &format!("event cancelled: {reason}"),
                true,
                &Authority {
                    actor: &actor,
                    may_override: true,
                },
            )
            .await?;
            tx.commit().await?;
            Ok::<_, ConsoleError>(())
        }
        .await;
        match result {
            Ok(()) => progress.refunded_now += 1,
            Err(e) => progress
                .failed
                .push(serde_json::json!({"order_id": order_id, "error": e.to_string()})),
        }
    }
    progress.late_payments_refunded = corrections::late_payments_refunded(&s.db, event.id).await?;
    Ok(progress)
}

pub async fn cancel_event(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Json<CancelProgress>, ConsoleError> {
    Ok(Json(cancel_event_with(&s, &operator, &slug, body).await?))
}

/// Resends the confirmation to every buyer of an event whose confirmation failed or
/// bounced (with the current links). Idempotent per key.
pub async fn resend_undelivered(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(slug): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let key = idempotency_key(&headers);
    Ok(Json(
        resend_undelivered_with(&s, &operator, &slug, key.as_deref()).await?,
    ))
}

/// The bulk resend behind [`resend_undelivered`], shared with the console's pages.
pub async fn resend_undelivered_with(
    s: &AppState,
    operator: &Operator,
    slug: &str,
    key: Option<&str>,
) -> Result<serde_json::Value, ConsoleError> {
    operator.require(STAFF)?;
    let event = orders::events::by_slug(&s.db, slug)
        .await?
        .filter(|e| operator.may_see(e.id))
        .ok_or(orders::Error::NotFound("event"))?;
    let actor = operator.label();
    let event_id = event.id;
    let attempt = Attempt {
        operator,
        action: Fix::ResendUndelivered,
        subject: slug,
        event: event_id,
        reason: None,
        request: serde_json::Value::Null,
        key,
    };
    once(s, &attempt, move |conn| {
        Box::pin(async move {
            let failed: Vec<Uuid> = sqlx::query_scalar(
                r#"SELECT DISTINCT o.id FROM orders o JOIN deliveries d ON d.order_id = o.id
                   WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
                     AND d.kind = 'confirmation' AND d.status IN ('failed', 'bounced')
                     AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.order_id = o.id
                                     AND s.kind = 'confirmation' AND s.status = 'sent')"#,
            )
            .bind(event_id)
            .fetch_all(&mut *conn)
            .await?;
            for order in &failed {
                corrections::request_resend(conn, *order, Uuid::now_v7(), &actor).await?;
            }
            Ok(serde_json::json!({"resent": failed.len()}))
        })
    })
    .await
}
