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
//!   `input[name=ends_at]` (text, `YYYY-MM-DD HH:MM` read in the event's own timezone; a `T`
//!   instead of the space, as `datetime-local` sends, and RFC 3339 with an offset are accepted
//!   too), `input[name=reason]`, `input[name=notify]`
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
//!
//! A fix that is done redirects back with `?done=`; a refused one answers with the page
//! again (status 403 for a role or an expired form, 409 for the event's state, 422 for
//! the input), the reason in `p.banner.bad[role=alert]` and in the form, and what was
//! typed still in the form.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use contract::states::EventStatus;
use platform::html::escape;
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{Operator, Role};
use crate::moment::{self, Precision};
use crate::pages::{
    Flash, Retry, banners, error_page, layout, money, refusal_note, refused_class, signed_in,
    typed_or, urlencode,
};
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
        Err(e) => return error_page(Some(&operator), &ConsoleError::from(e)),
    };
    all.retain(|e| operator.may_see(e.id));
    let rows: String = all
        .iter()
        .map(|e| {
            let tz = moment::zone(&e.timezone);
            format!(
                "<tr><td><a class=\"event\" href=\"/console/events/{slug}\">{title}</a><div class=\"muted\">{slug}</div></td>\
                 <td>{when}<div class=\"muted small\">{tzname}</div></td><td><span class=\"pill\">{status}</span></td><td>{mode}</td></tr>",
                slug = escape(&e.slug),
                title = escape(&e.title),
                when = moment::html(e.starts_at, tz, Precision::Minute),
                tzname = escape(&e.timezone),
                status = e.status,
                mode = e.queue_mode.as_str().replace('_', " "),
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
    render_event(&s, &operator, &slug, &flash, None).await
}

/// The event's page, with a refused form shown again if there is one (and its status).
async fn render_event(
    s: &AppState,
    op: &Operator,
    slug: &str,
    flash: &Flash,
    retry: Option<&Retry>,
) -> Response {
    shown(op, retry, event_html(s, op, slug, flash, retry).await)
}

/// A page built for `op`, with a refused form's status when it shows one again; if
/// the page cannot be built, the refused form alone, else the error page.
fn shown(
    op: &Operator,
    retry: Option<&Retry>,
    built: Result<(String, String), ConsoleError>,
) -> Response {
    match built {
        Ok((title, body)) => (
            retry.map_or(StatusCode::OK, |r| r.status),
            layout(&title, Some(op), &body),
        )
            .into_response(),
        Err(_) if retry.is_some() => retry.map(|r| r.page(op)).expect("a retry"),
        Err(e) => error_page(Some(op), &e),
    }
}

async fn event_html(
    s: &AppState,
    op: &Operator,
    slug: &str,
    flash: &Flash,
    retry: Option<&Retry>,
) -> Result<(String, String), ConsoleError> {
    let (_, e) = crate::auth::visible_event(&s.db, op, slug).await?;
    let tiers = orders::events::tiers(&s.db, e.id).await?;
    let tz = moment::zone(&e.timezone);
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

    let mut out = banners(flash, retry);
    let provider = e
        .meeting
        .get("provider")
        .and_then(|p| p.as_str())
        .unwrap_or("?");
    out.push_str(&format!(
        "<p class=\"crumbs\"><a href=\"/console/events\">Events</a> · <code>{slug}</code></p><h1>{title}</h1>\
         <p><a href=\"/console/events/{slug}/live\">Control room</a> · <a href=\"/console/events/{slug}/edit\" id=\"edit-event\">Edit</a> · \
         <a href=\"/console/events/{slug}/incidents\">Incidents</a></p>\
         <dl class=\"facts\"><div><dt>Status</dt><dd><span class=\"pill\" id=\"status\">{status}</span></dd></div>\
         <div><dt>Starts</dt><dd>{starts}</dd></div><div><dt>Ends</dt><dd>{ends}</dd></div>\
         <div><dt>Timezone</dt><dd>{tzname}</dd></div><div><dt>Meeting</dt><dd>{provider}</dd></div>\
         <div><dt>Queue</dt><dd>{mode}</dd></div></dl>",
        slug = escape(&e.slug),
        title = escape(&e.title),
        status = e.status,
        starts = moment::html(e.starts_at, tz, Precision::Minute),
        ends = moment::html(e.ends_at, tz, Precision::Minute),
        tzname = escape(&e.timezone),
        provider = escape(&provider.replace('_', " ")),
        mode = e.queue_mode.as_str().replace('_', " "),
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
                moment::html(
                    e.starts_at - chrono::Duration::hours(h as i64),
                    tz,
                    Precision::Minute
                )
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
    if e.status == EventStatus::Cancelled {
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
        let typed = |form: &str, field: &str, default: &str| typed_or(retry, form, field, default);
        let mut forms = String::new();
        if e.status == EventStatus::Scheduled {
            let notify = match retry.filter(|r| r.form == "reschedule") {
                Some(r) if r.typed("reschedule", "notify").is_none() => "",
                _ => " checked",
            };
            forms.push_str(&format!(
                "<form id=\"reschedule\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/reschedule\"><strong>Reschedule</strong>\
                 <span class=\"hint\">Times in {tzname} ({zone}), as {format}, 24-hour. Buyers keep their tickets; their calendar invites move.</span>{note}\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k1}\">\
                 <label>Starts <input name=\"starts_at\" value=\"{starts}\" required {time_input}></label>\
                 <label>Ends <input name=\"ends_at\" value=\"{ends}\" required {time_input}></label>\
                 <label>Reason <input name=\"reason\" required value=\"{reason}\" placeholder=\"e.g. speaker's flight moved\"></label>\
                 <label class=\"check\"><input type=\"checkbox\" name=\"notify\" value=\"true\"{notify}> Email every buyer the new time</label>\
                 <button type=\"submit\">Reschedule</button></form>",
                refused = refused_class(retry, "reschedule"),
                note = refusal_note(retry, "reschedule"),
                slug = escape(&e.slug),
                tzname = escape(&e.timezone),
                zone = escape(&moment::zone_hint(tz)),
                format = moment::INPUT_FORMAT,
                time_input = TIME_INPUT,
                k1 = Uuid::new_v4(),
                starts = typed("reschedule", "starts_at", &moment::input_value(e.starts_at, tz)),
                ends = typed("reschedule", "ends_at", &moment::input_value(e.ends_at, tz)),
                reason = typed("reschedule", "reason", ""),
            ));
        }
        forms.push_str(&format!(
            "<form id=\"resend-undelivered\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/resend-undelivered\">\
             <strong>Resend to undelivered</strong><span class=\"hint\">The confirmation, with the current links, to the {undelivered} buyer(s) above.</span>{note}\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k}\">\
             <button type=\"submit\">Resend</button></form>",
            refused = refused_class(retry, "resend-undelivered"),
            note = refusal_note(retry, "resend-undelivered"),
            slug = escape(&e.slug),
            k = Uuid::new_v4(),
        ));
        if op.role == Role::Admin {
            forms.push_str(&format!(
                "<form id=\"cancel-event\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/cancel\">\
                 <strong>Cancel the event</strong><span class=\"hint\">Closes the queue and refunds every paid order in full; buyers are told by email. \
                 If some refunds fail, submit again: it picks up where it stopped.</span>{note}\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>Reason <input name=\"reason\" required value=\"{reason}\"></label>\
                 <label>Type <code>{slug}</code> to confirm <input name=\"confirm\" required autocomplete=\"off\" value=\"{confirm}\"></label>\
                 <button type=\"submit\" class=\"danger\">{label}</button></form>",
                refused = refused_class(retry, "cancel-event"),
                note = refusal_note(retry, "cancel-event"),
                slug = escape(&e.slug),
                reason = typed("cancel-event", "reason", ""),
                confirm = typed("cancel-event", "confirm", ""),
                label = if e.status == EventStatus::Cancelled {
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

/// The attributes of a time field: a text input in one format whatever the browser's
/// locale (see [`crate::moment`]).
pub(crate) const TIME_INPUT: &str = "inputmode=\"numeric\" autocomplete=\"off\" size=\"16\" placeholder=\"YYYY-MM-DD HH:MM\" \
     pattern=\"\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}(:\\d{2})?\" title=\"YYYY-MM-DD HH:MM, 24-hour\"";

type Fields = HashMap<String, String>;

fn get<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
    f.get(k).map(String::as_str)
}

/// Where a form goes next: done → back to `page` with `?done=` (a reload posts nothing
/// again); refused → the page again with the form as it was typed.
async fn answer(
    s: &AppState,
    op: &Operator,
    slug: &str,
    form: &str,
    page: Page,
    result: Result<String, ConsoleError>,
    f: Fields,
) -> Response {
    match result {
        Ok(done) => {
            let path = match page {
                Page::Event => format!("/console/events/{}", urlencode(slug)),
                Page::Incidents => format!("/console/events/{}/incidents", urlencode(slug)),
            };
            Redirect::to(&format!("{path}?done={}", urlencode(&done))).into_response()
        }
        Err(e) => {
            let retry = Retry::new(form, &e, f);
            let flash = Flash {
                done: None,
                error: None,
            };
            match page {
                Page::Event => render_event(s, op, slug, &flash, Some(&retry)).await,
                Page::Incidents => render_incidents(s, op, slug, &flash, Some(&retry)).await,
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Page {
    Event,
    Incidents,
}

fn repeated(v: &serde_json::Value) -> bool {
    v.get("repeated").and_then(|r| r.as_bool()) == Some(true)
}

/// `POST /console/events/{slug}/reschedule`.
pub async fn reschedule_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(get(&f, "csrf"))?;
        operator.require(crate::auth::STAFF)?;
        let (_, event) = crate::auth::visible_event(&s.db, &operator, &slug).await?;
        let tz = moment::zone(&event.timezone);
        let starts_at = moment::parse(get(&f, "starts_at").unwrap_or(""), tz, "the start")?;
        let ends_at = moment::parse(get(&f, "ends_at").unwrap_or(""), tz, "the end")?;
        if ends_at <= starts_at {
            return Err(ConsoleError::Invalid(
                "the end must be after the start".into(),
            ));
        }
        let reason = get(&f, "reason").map(str::trim).unwrap_or("");
        if reason.is_empty() {
            return Err(ConsoleError::Invalid("rescheduling needs a reason".into()));
        }
        let body = RescheduleBody {
            starts_at,
            ends_at,
            notify: f.contains_key("notify"),
            reason: Some(reason.to_owned()),
        };
        let v = support::reschedule_with(&s, &operator, &slug, body, get(&f, "action_key")).await?;
        Ok(if repeated(&v) {
            "rescheduled (already done)".to_owned()
        } else if v.get("moved").and_then(|m| m.as_bool()) == Some(false) {
            "nothing to change: the times are the same".to_owned()
        } else {
            "rescheduled".to_owned()
        })
    }
    .await;
    answer(&s, &operator, &slug, "reschedule", Page::Event, result, f).await
}

/// `POST /console/events/{slug}/cancel`.
pub async fn cancel_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(get(&f, "csrf"))?;
        operator.require(&[Role::Admin])?;
        crate::auth::visible_event(&s.db, &operator, &slug).await?;
        if get(&f, "confirm").map(str::trim) != Some(slug.as_str()) {
            return Err(ConsoleError::Invalid(
                "to cancel, type the event's slug in the confirmation box".into(),
            ));
        }
        let body = CancelBody {
            reason: get(&f, "reason").unwrap_or_default().to_owned(),
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
    answer(&s, &operator, &slug, "cancel-event", Page::Event, result, f).await
}

/// `POST /console/events/{slug}/resend-undelivered` (from the event's page, or with
/// `back=incidents` from the incident view).
pub async fn resend_undelivered_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(get(&f, "csrf"))?;
        let v =
            support::resend_undelivered_with(&s, &operator, &slug, get(&f, "action_key")).await?;
        Ok(if repeated(&v) {
            "resent (already done)".to_owned()
        } else {
            format!(
                "confirmation resent to {} buyer(s)",
                v.get("resent").and_then(|n| n.as_u64()).unwrap_or(0)
            )
        })
    }
    .await;
    let (page, form) = if get(&f, "back") == Some("incidents") {
        (Page::Incidents, "incident-resend")
    } else {
        (Page::Event, "resend-undelivered")
    };
    answer(&s, &operator, &slug, form, page, result, f).await
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
    render_incidents(&s, &operator, &slug, &flash, None).await
}

async fn render_incidents(
    s: &AppState,
    op: &Operator,
    slug: &str,
    flash: &Flash,
    retry: Option<&Retry>,
) -> Response {
    shown(op, retry, incidents_html(s, op, slug, flash, retry).await)
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
    retry: Option<&Retry>,
) -> Result<(String, String), ConsoleError> {
    let (_, e) = crate::auth::visible_event(&s.db, op, slug).await?;
    let tz = moment::zone(&e.timezone);
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
                    r.at.map(|t| moment::html(t, tz, Precision::Minute))
                        .unwrap_or_default(),
                )
            })
            .collect();
        format!(
            "<table id=\"{id}\"><thead><tr><th>Buyer</th><th>{what}</th><th>When</th></tr></thead><tbody>{body}</tbody></table>"
        )
    };
    let mut out = banners(flash, retry);
    let doors = e.starts_at - chrono::Duration::hours(1);
    out.push_str(&format!(
        "<p class=\"crumbs\"><a href=\"/console/events/{slug}\">{title}</a> · starts {starts} · links open {doors}</p>\
         <h1>Incidents</h1>",
        slug = escape(&e.slug),
        title = escape(&e.title),
        starts = moment::html(e.starts_at, tz, Precision::Minute),
        doors = moment::html(doors, tz, Precision::Minute),
    ));
    out.push_str(&format!(
        "<h2>Confirmation failed or bounced ({undelivered_total})</h2>"
    ));
    if op.role != Role::Host && undelivered_total > 0 {
        out.push_str(&format!(
            "<form id=\"incident-resend\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/resend-undelivered\">\
             <span>Send the confirmation again, with the current links, to all {undelivered_total} buyer(s). \
             A bounced address stays wrong: correct it from the buyer's order page.</span>{note}\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k}\">\
             <input type=\"hidden\" name=\"back\" value=\"incidents\"><button type=\"submit\">Resend to all {undelivered_total}</button></form>",
            refused = refused_class(retry, "incident-resend"),
            note = refusal_note(retry, "incident-resend"),
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
