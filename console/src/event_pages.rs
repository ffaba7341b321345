//! The console's event pages: the list of events, one event's page (tiers, refund
//! policy, deliveries) with the event-wide fixes — reschedule, cancel, resend to
//! everyone whose confirmation failed or bounced. The fixes are the same functions as
//! the JSON API (`support::*_with`), so the rules (roles, audit, idempotency) are one.
//!
//! Stable hooks for browser tests (keep these when restyling):
//! - `GET /console/events`: `table#events`, one `a.event` per event → its page.
//! - `GET /console/events/{slug}`: `h1` is the title; `#status` the event's status;
//!   `table#tiers` (one row per tier: name, price, capacity, sold, held, available);
//!   `#refund-policy`; outcome banners `p.banner[role=status]` (done) and
//!   `p.banner.bad[role=alert]` (refused, with the reason).
//! - `form#reschedule` (staff), POST `/console/events/{slug}/reschedule`: `input[name=starts_at]`,
//!   `input[name=ends_at]` (`datetime-local`, read in the event's own timezone; an RFC 3339
//!   time with an offset is accepted too), `input[name=reason]`, `input[name=notify]`
//!   (checkbox, checked: buyers get the new time by email), hidden `csrf`, `action_key`;
//!   `button[type=submit]`.
//! - `form#cancel-event` (admin), POST `/console/events/{slug}/cancel`: `input[name=reason]`,
//!   `input[name=confirm]` (must be the event's slug), hidden `csrf`. Safe to submit again:
//!   a re-run refunds whatever the last run could not; `#cancel-progress` lists what is
//!   still unrefunded.
//! - `form#resend-undelivered` (staff), POST `/console/events/{slug}/resend-undelivered`:
//!   hidden `csrf`, `action_key`. `#undelivered` shows how many buyers it would reach.
//! - `GET /console/events/{slug}/incidents` (doors minus one hour): `table#undelivered-buyers`,
//!   `table#not-opened`, `table#cant-join` (one row per buyer / attempt, each linking to the
//!   order), and `form#incident-resend` (staff; same POST as `form#resend-undelivered`, with
//!   `back=incidents` so the outcome shows on the incident view).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use orders::pages::escape;
use serde::Deserialize;
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{Operator, Role};
use crate::pages::{Flash, layout, money, signed_in, urlencode};
use crate::support::{self, CancelBody, RescheduleBody};

/// `GET /console/events`: every event the operator may see.
pub async fn list_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let mut all = match orders::events::list(&s.db).await {
        Ok(all) => all,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    all.retain(|e| operator.may_see(e.id));
    let rows: String = all
        .iter()
        .map(|e| {
            let tz: chrono_tz::Tz = e.timezone.parse().unwrap_or(chrono_tz::UTC);
            format!(
                "<tr><td><a class=\"event\" href=\"/console/events/{slug}\">{title}</a><div class=\"muted\">{slug}</div></td>\
                 <td>{when} <span class=\"muted\">{tzname}</span></td><td><span class=\"pill\">{status}</span></td><td>{mode}</td></tr>",
                slug = escape(&e.slug),
                title = escape(&e.title),
                when = e.starts_at.with_timezone(&tz).format("%a %-d %b %Y %H:%M"),
                tzname = escape(&e.timezone),
                status = escape(&e.status),
                mode = escape(&e.queue_mode),
            )
        })
        .collect();
    let body = format!(
        "<h1>Events</h1>{}{}<table id=\"events\"><thead><tr><th>Event</th><th>Starts</th><th>Status</th><th>Queue</th></tr></thead><tbody>{rows}</tbody></table>",
        if operator.role == Role::Host {
            ""
        } else {
            "<p><a href=\"/console/events/new\" id=\"new-event\">New event</a></p>"
        },
        if all.is_empty() {
            "<p class=\"muted\">No events yet.</p>"
        } else {
            ""
        }
    );
    layout("Events", Some(&operator), &body).into_response()
}

#[derive(sqlx::FromRow)]
struct Unrefunded {
    id: Uuid,
    buyer_email: String,
    amount_cents: i64,
    refunded_cents: i64,
    currency: String,
}

/// `GET /console/events/{slug}`.
pub async fn event_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match event_html(&s, &operator, &slug, &flash).await {
        Ok((title, body)) => layout(&title, Some(&operator), &body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn event_html(
    s: &AppState,
    op: &Operator,
    slug: &str,
    flash: &Flash,
) -> Result<(String, String), ConsoleError> {
    let (_, e) = crate::live::visible_event(&s.db, op, slug).await?;
    let tiers = orders::events::tiers(&s.db, e.id).await?;
    let tz: chrono_tz::Tz = e.timezone.parse().unwrap_or(chrono_tz::UTC);
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM orders WHERE event_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(e.id)
    .fetch_all(&s.db)
    .await?;
    let undelivered: i64 = sqlx::query_scalar(
        r#"SELECT count(DISTINCT o.id) FROM orders o JOIN deliveries d ON d.order_id = o.id
           WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
             AND d.kind = 'confirmation' AND d.status IN ('failed', 'bounced')
             AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.order_id = o.id
                             AND s.kind = 'confirmation' AND s.status = 'sent')"#,
    )
    .bind(e.id)
    .fetch_one(&s.db)
    .await?;

    let mut out = String::new();
    if let Some(done) = &flash.done {
        out.push_str(&format!(
            "<p class=\"banner\" role=\"status\">Done: {}.</p>",
            escape(done)
        ));
    }
    if let Some(err) = &flash.error {
        out.push_str(&format!(
            "<p class=\"banner bad\" role=\"alert\">{}</p>",
            escape(err)
        ));
    }
    let provider = e
        .meeting
        .get("provider")
        .and_then(|p| p.as_str())
        .unwrap_or("?");
    out.push_str(&format!(
        "<p class=\"muted\"><a href=\"/console/events\">Events</a> · <code>{slug}</code></p><h1>{title}</h1>\
         <p><span class=\"pill\" id=\"status\">{status}</span> {starts} – {ends} <span class=\"muted\">({tzname})</span> · meeting: {provider} · \
         queue: {mode} · <a href=\"/console/events/{slug}/live\">control room</a> · <a href=\"/console/events/{slug}/edit\" id=\"edit-event\">edit</a> · <a href=\"/console/events/{slug}/incidents\">incidents</a></p>",
        slug = escape(&e.slug),
        title = escape(&e.title),
        status = escape(&e.status),
        starts = e.starts_at.with_timezone(&tz).format("%a %-d %b %Y %H:%M"),
        ends = e.ends_at.with_timezone(&tz).format("%H:%M"),
        tzname = escape(&e.timezone),
        provider = escape(provider),
        mode = escape(&e.queue_mode),
    ));
    let hours = e
        .refund_policy
        .get("refundable_until_hours_before")
        .and_then(|h| h.as_u64());
    out.push_str(&format!(
        "<p id=\"refund-policy\">Refund policy: {}</p>",
        match hours {
            Some(h) => format!(
                "buyers may be refunded until {h} h before the start ({}); later refunds need an admin and a reason.",
                (e.starts_at - chrono::Duration::hours(h as i64))
                    .with_timezone(&tz)
                    .format("%a %-d %b %H:%M")
            ),
            None => escape(&e.refund_policy.to_string()),
        }
    ));
    let tier_rows: String = tiers
        .iter()
        .map(|t| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.name),
                escape(&money(t.price_cents, &t.currency)),
                t.capacity,
                t.sold,
                t.held,
                t.available()
            )
        })
        .collect();
    out.push_str(&format!(
        "<h2>Tiers</h2><table id=\"tiers\"><thead><tr><th>Tier</th><th>Price</th><th>Capacity</th><th>Sold</th><th>Held</th><th>Available</th></tr></thead><tbody>{tier_rows}</tbody></table>"
    ));
    let statuses: String = by_status
        .iter()
        .map(|(st, n)| format!("<span class=\"pill\">{} {n}</span> ", escape(st)))
        .collect();
    out.push_str(&format!(
        "<h2>Orders</h2><p>{}</p><p id=\"undelivered\" class=\"{}\">{undelivered} buyer(s) whose confirmation failed or bounced and was never delivered.</p>",
        if statuses.is_empty() {
            "<span class=\"muted\">None yet.</span>".to_owned()
        } else {
            statuses
        },
        if undelivered > 0 { "bad" } else { "muted" }
    ));
    if e.status == "cancelled" {
        // What a cancellation has not refunded yet: its failures, until a re-run settles them.
        let left: Vec<Unrefunded> = sqlx::query_as(
            "SELECT id, buyer_email, amount_cents, refunded_cents, currency FROM orders
             WHERE event_id = $1 AND status IN ('paid', 'partially_refunded') ORDER BY created_at",
        )
        .bind(e.id)
        .fetch_all(&s.db)
        .await?;
        let rows: String = left
            .iter()
            .map(|o| {
                format!(
                    "<li><a href=\"/console/orders/{}\">{}</a> — {} still paid</li>",
                    o.id,
                    escape(&o.buyer_email),
                    escape(&money(o.amount_cents - o.refunded_cents, &o.currency))
                )
            })
            .collect();
        out.push_str(&format!(
            "<section class=\"card\" id=\"cancel-progress\"><h2>Cancellation</h2>{}</section>",
            if left.is_empty() {
                "<p class=\"ok\">Every paid order has been refunded.</p>".to_owned()
            } else {
                format!(
                    "<p class=\"bad\">{} order(s) not refunded yet. Submit the cancellation again to retry them.</p><ul>{rows}</ul>",
                    left.len()
                )
            }
        ));
    }
    if op.role != Role::Host {
        let csrf = escape(op.csrf.as_deref().unwrap_or(""));
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string();
        let mut forms = String::new();
        if e.status == "scheduled" {
            forms.push_str(&format!(
                "<form id=\"reschedule\" class=\"inline card\" method=\"post\" action=\"/console/events/{slug}/reschedule\"><strong>Reschedule</strong>\
                 <span class=\"muted\">Times in {tzname}. Buyers keep their tickets; their calendar invites move.</span>\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k1}\">\
                 <label>Starts <input name=\"starts_at\" type=\"datetime-local\" value=\"{starts}\" required></label>\
                 <label>Ends <input name=\"ends_at\" type=\"datetime-local\" value=\"{ends}\" required></label>\
                 <label>Reason <input name=\"reason\" required placeholder=\"e.g. speaker's flight moved\"></label>\
                 <label><input type=\"checkbox\" name=\"notify\" value=\"true\" checked> Email every buyer the new time</label>\
                 <button type=\"submit\">Reschedule</button></form>",
                slug = escape(&e.slug),
                tzname = escape(&e.timezone),
                k1 = Uuid::new_v4(),
                starts = local(e.starts_at),
                ends = local(e.ends_at),
            ));
        }
        forms.push_str(&format!(
            "<form id=\"resend-undelivered\" class=\"inline card\" method=\"post\" action=\"/console/events/{slug}/resend-undelivered\">\
             <strong>Resend to undelivered</strong><span class=\"muted\">The confirmation, with the current links, to the {undelivered} buyer(s) above.</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k}\">\
             <button type=\"submit\">Resend</button></form>",
            slug = escape(&e.slug),
            k = Uuid::new_v4(),
        ));
        if op.role == Role::Admin {
            forms.push_str(&format!(
                "<form id=\"cancel-event\" class=\"inline card\" method=\"post\" action=\"/console/events/{slug}/cancel\">\
                 <strong>Cancel the event</strong><span class=\"muted\">Closes the queue and refunds every paid order in full; buyers are told by email. \
                 If some refunds fail, submit again: it picks up where it stopped.</span>\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>Reason <input name=\"reason\" required></label>\
                 <label>Type <code>{slug}</code> to confirm <input name=\"confirm\" required autocomplete=\"off\"></label>\
                 <button type=\"submit\" class=\"danger\">{label}</button></form>",
                slug = escape(&e.slug),
                label = if e.status == "cancelled" {
                    "Run the cancellation again"
                } else {
                    "Cancel the event"
                },
            ));
        }
        out.push_str(&format!("<h2>Fix</h2><div class=\"grid\">{forms}</div>"));
    }
    Ok((e.title.clone(), out))
}

/// A time from a form: `datetime-local` in the event's timezone, or RFC 3339.
pub(crate) fn parse_time(
    value: &str,
    tz: chrono_tz::Tz,
    what: &str,
) -> Result<DateTime<Utc>, ConsoleError> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ConsoleError::Invalid(format!("{what} is not a date and time")))?;
    // A wall-clock time skipped or repeated by a DST change has no single meaning.
    tz.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            ConsoleError::Invalid(format!(
                "{what} falls in a daylight-saving change in {tz}; pick another time"
            ))
        })
}

#[derive(Deserialize)]
pub struct EventForm {
    pub csrf: Option<String>,
    pub action_key: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub reason: Option<String>,
    pub notify: Option<String>,
    pub confirm: Option<String>,
    /// `incidents` to come back to the incident view instead of the event page.
    pub back: Option<String>,
}

fn back_to_event(slug: &str, result: Result<String, ConsoleError>) -> Response {
    back_to(&format!("/console/events/{}", urlencode(slug)), result)
}

fn back_to(page: &str, result: Result<String, ConsoleError>) -> Response {
    let target = match result {
        Ok(done) => format!("{page}?done={}", urlencode(&done)),
        Err(e) => {
            let message = match &e {
                ConsoleError::Orders(o) => o.public_message(),
                other => other.to_string(),
            };
            format!("{page}?error={}", urlencode(&message))
        }
    };
    Redirect::to(&target).into_response()
}

/// Signs in and checks the form's CSRF token; the error is the response to send.
fn checked(
    operator: Result<Operator, ConsoleError>,
    csrf: Option<&str>,
) -> Result<Operator, Box<Response>> {
    let operator = signed_in(operator)?;
    operator
        .verify_csrf(csrf)
        .map_err(|e| Box::new(e.into_response()))?;
    Ok(operator)
}

fn repeated(v: &serde_json::Value) -> bool {
    v.get("repeated").and_then(|r| r.as_bool()) == Some(true)
}

/// `POST /console/events/{slug}/reschedule`.
pub async fn reschedule_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<EventForm>,
) -> Response {
    let operator = match checked(operator, f.csrf.as_deref()) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.require(crate::auth::STAFF)?;
        let (_, event) = crate::live::visible_event(&s.db, &operator, &slug).await?;
        let tz: chrono_tz::Tz = event.timezone.parse().unwrap_or(chrono_tz::UTC);
        let starts_at = parse_time(f.starts_at.as_deref().unwrap_or(""), tz, "the start")?;
        let ends_at = parse_time(f.ends_at.as_deref().unwrap_or(""), tz, "the end")?;
        let reason = f.reason.as_deref().map(str::trim).unwrap_or("");
        if reason.is_empty() {
            return Err(ConsoleError::Invalid("rescheduling needs a reason".into()));
        }
        let body = RescheduleBody {
            starts_at,
            ends_at,
            notify: f.notify.is_some(),
            reason: Some(reason.to_owned()),
        };
        let v =
            support::reschedule_with(&s, &operator, &slug, body, f.action_key.as_deref()).await?;
        Ok(if repeated(&v) {
            "rescheduled (already done)".to_owned()
        } else if v.get("moved").and_then(|m| m.as_bool()) == Some(false) {
            "nothing to change: the times are the same".to_owned()
        } else {
            "rescheduled".to_owned()
        })
    }
    .await;
    back_to_event(&slug, result)
}

/// `POST /console/events/{slug}/cancel`.
pub async fn cancel_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<EventForm>,
) -> Response {
    let operator = match checked(operator, f.csrf.as_deref()) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.require(&[Role::Admin])?;
        crate::live::visible_event(&s.db, &operator, &slug).await?;
        if f.confirm.as_deref().map(str::trim) != Some(slug.as_str()) {
            return Err(ConsoleError::Invalid(
                "to cancel, type the event's slug in the confirmation box".into(),
            ));
        }
        let body = CancelBody {
            reason: f.reason.unwrap_or_default(),
        };
        let p = support::cancel_event_with(&s, &operator, &slug, body).await?;
        Ok(format!(
            "cancelled: {} order(s), {} refunded now, {} already settled, {} failed",
            p.orders,
            p.refunded_now,
            p.already_settled,
            p.failed.len()
        ))
    }
    .await;
    back_to_event(&slug, result)
}

/// `POST /console/events/{slug}/resend-undelivered`.
pub async fn resend_undelivered_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<EventForm>,
) -> Response {
    let operator = match checked(operator, f.csrf.as_deref()) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = support::resend_undelivered_with(&s, &operator, &slug, f.action_key.as_deref())
        .await
        .map(|v| {
            if repeated(&v) {
                "resent (already done)".to_owned()
            } else {
                format!(
                    "confirmation resent to {} buyer(s)",
                    v.get("resent").and_then(|n| n.as_u64()).unwrap_or(0)
                )
            }
        });
    if f.back.as_deref() == Some("incidents") {
        return back_to(
            &format!("/console/events/{}/incidents", urlencode(&slug)),
            result,
        );
    }
    back_to_event(&slug, result)
}

#[derive(sqlx::FromRow)]
struct BuyerRow {
    order_id: Uuid,
    buyer_email: String,
    buyer_name: String,
    detail: Option<String>,
    at: Option<DateTime<Utc>>,
}

/// How far back "recent" can't-join attempts go.
const RECENT_HOURS: i64 = 2;
/// Rows shown per list; the heading says how many there are in all.
const SHOWN: i64 = 200;

/// `GET /console/events/{slug}/incidents`: the doors-minus-one-hour view — who will not
/// get in, and the one-step fix for the largest group.
pub async fn incidents_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match incidents_html(&s, &operator, &slug, &flash).await {
        Ok((title, body)) => layout(&title, Some(&operator), &body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Paid orders whose newest confirmation failed or bounced and none was ever sent.
const UNDELIVERED: &str = r#"
    FROM orders o JOIN LATERAL (
         SELECT status, last_error, sent_at, created_at FROM deliveries
         WHERE order_id = o.id AND kind = 'confirmation' ORDER BY created_at DESC LIMIT 1) d ON true
    WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
      AND d.status IN ('failed', 'bounced')
      AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.order_id = o.id
                      AND s.kind = 'confirmation' AND s.status = 'sent')"#;

/// Paid orders whose confirmation went out but no ticket's link was ever opened.
const NOT_OPENED: &str = r#"
    FROM orders o
    WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
      AND EXISTS (SELECT 1 FROM deliveries d WHERE d.order_id = o.id
                  AND d.kind = 'confirmation' AND d.status = 'sent')
      AND NOT EXISTS (SELECT 1 FROM redemptions r JOIN tickets t ON t.id = r.ticket_id
                      WHERE t.order_id = o.id)"#;

async fn incidents_html(
    s: &AppState,
    op: &Operator,
    slug: &str,
    flash: &Flash,
) -> Result<(String, String), ConsoleError> {
    let (_, e) = crate::live::visible_event(&s.db, op, slug).await?;
    let tz: chrono_tz::Tz = e.timezone.parse().unwrap_or(chrono_tz::UTC);
    let undelivered_total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) {UNDELIVERED}"
    )))
    .bind(e.id)
    .fetch_one(&s.db)
    .await?;
    let undelivered: Vec<BuyerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id AS order_id, o.buyer_email, o.buyer_name,
                d.status || coalesce(': ' || d.last_error, '') AS detail,
                coalesce(d.sent_at, d.created_at) AS at
         {UNDELIVERED} ORDER BY o.buyer_email LIMIT $2"
    )))
    .bind(e.id)
    .bind(SHOWN)
    .fetch_all(&s.db)
    .await?;
    let not_opened_total: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {NOT_OPENED}")))
            .bind(e.id)
            .fetch_one(&s.db)
            .await?;
    let not_opened: Vec<BuyerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id AS order_id, o.buyer_email, o.buyer_name, NULL::text AS detail,
                (SELECT max(sent_at) FROM deliveries d WHERE d.order_id = o.id
                 AND d.kind = 'confirmation') AS at
         {NOT_OPENED} ORDER BY o.buyer_email LIMIT $2"
    )))
    .bind(e.id)
    .bind(SHOWN)
    .fetch_all(&s.db)
    .await?;
    let cant_join: Vec<BuyerRow> = sqlx::query_as(
        r#"SELECT o.id AS order_id, t.holder_email AS buyer_email, t.holder_name AS buyer_name,
                  r.outcome AS detail, r.at
           FROM redemptions r JOIN tickets t ON t.id = r.ticket_id JOIN orders o ON o.id = t.order_id
           WHERE t.event_id = $1 AND r.outcome <> 'entered'
             AND r.at > now() - make_interval(hours => $2::int)
           ORDER BY r.at DESC LIMIT $3"#,
    )
    .bind(e.id)
    .bind(RECENT_HOURS as i32)
    .bind(SHOWN)
    .fetch_all(&s.db)
    .await?;

    let table = |id: &str, rows: &[BuyerRow], what: &str| -> String {
        if rows.is_empty() {
            return format!("<p class=\"muted\" id=\"{id}\">None.</p>");
        }
        let body: String = rows
            .iter()
            .map(|r| {
                format!(
                    "<tr><td><a href=\"/console/orders/{}\">{}</a><div class=\"muted\">{}</div></td><td>{}</td><td class=\"muted\">{}</td></tr>",
                    r.order_id,
                    escape(&r.buyer_email),
                    escape(&r.buyer_name),
                    escape(r.detail.as_deref().unwrap_or("")),
                    r.at.map(|t| t.with_timezone(&tz).format("%d %b %H:%M").to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        format!(
            "<table id=\"{id}\"><thead><tr><th>Buyer</th><th>{what}</th><th>When</th></tr></thead><tbody>{body}</tbody></table>"
        )
    };
    let mut out = String::new();
    if let Some(done) = &flash.done {
        out.push_str(&format!(
            "<p class=\"banner\" role=\"status\">Done: {}.</p>",
            escape(done)
        ));
    }
    if let Some(err) = &flash.error {
        out.push_str(&format!(
            "<p class=\"banner bad\" role=\"alert\">{}</p>",
            escape(err)
        ));
    }
    let doors = e.starts_at - chrono::Duration::hours(1);
    out.push_str(&format!(
        "<p class=\"muted\"><a href=\"/console/events/{slug}\">{title}</a> · starts {starts} ({tzname}) · links open {doors}</p>\
         <h1>Incidents</h1>",
        slug = escape(&e.slug),
        title = escape(&e.title),
        starts = e.starts_at.with_timezone(&tz).format("%a %-d %b %H:%M"),
        tzname = escape(&e.timezone),
        doors = doors.with_timezone(&tz).format("%H:%M"),
    ));
    out.push_str(&format!(
        "<h2>Confirmation failed or bounced ({undelivered_total})</h2>"
    ));
    if op.role != Role::Host && undelivered_total > 0 {
        out.push_str(&format!(
            "<form id=\"incident-resend\" class=\"inline card\" method=\"post\" action=\"/console/events/{slug}/resend-undelivered\">\
             <span>Send the confirmation again, with the current links, to all {undelivered_total} buyer(s). \
             A bounced address stays wrong: correct it from the buyer's order page.</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k}\">\
             <input type=\"hidden\" name=\"back\" value=\"incidents\"><button type=\"submit\">Resend to all {undelivered_total}</button></form>",
            slug = escape(&e.slug),
            csrf = escape(op.csrf.as_deref().unwrap_or("")),
            k = Uuid::new_v4(),
        ));
    }
    out.push_str(&table("undelivered-buyers", &undelivered, "Last attempt"));
    out.push_str(&format!(
        "<h2>Delivered but never opened ({not_opened_total})</h2>{}",
        table("not-opened", &not_opened, "")
    ));
    out.push_str(&format!(
        "<h2>Could not join, last {RECENT_HOURS} hours ({})</h2>{}",
        cant_join.len(),
        table("cant-join", &cant_join, "Outcome")
    ));
    Ok((format!("Incidents · {}", e.title), out))
}
