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
        "<h1>Events</h1>{}<table id=\"events\"><thead><tr><th>Event</th><th>Starts</th><th>Status</th><th>Queue</th></tr></thead><tbody>{rows}</tbody></table>",
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
         queue: {mode} · <a href=\"/console/events/{slug}/live\">control room</a> · <a href=\"/console/events/{slug}/incidents\">incidents</a></p>",
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
fn parse_time(value: &str, tz: chrono_tz::Tz, what: &str) -> Result<DateTime<Utc>, ConsoleError> {
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
}

fn back_to_event(slug: &str, result: Result<String, ConsoleError>) -> Response {
    let slug = urlencode(slug);
    let target = match result {
        Ok(done) => format!("/console/events/{slug}?done={}", urlencode(&done)),
        Err(e) => {
            let message = match &e {
                ConsoleError::Orders(o) => o.public_message(),
                other => other.to_string(),
            };
            format!("/console/events/{slug}?error={}", urlencode(&message))
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
    back_to_event(&slug, result)
}
