//! The back office, rendered on the server: login, the search box, an order's page
//! with its timeline, diagnosis and one-step fixes. Every form carries the session's
//! CSRF token and a fresh action key (so a double-click does the work once).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use orders::pages::escape;
use serde::Deserialize;
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{Operator, Role};
use crate::search;
use crate::sessions::{self, Login};
use crate::support::{self, CancelOrderBody, EmailBody, OrderDetail, RefundBody, TransferBody};

const STYLE: &str = r#"
:root { color-scheme: light dark; --muted: #6b7280; --accent: #2f6fed; --line: color-mix(in srgb, CanvasText 14%, transparent); }
@media (prefers-color-scheme: dark) { :root { --muted: #a1a8b3; --accent: #6b9bff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; gap: 1rem; align-items: center; padding: .7rem 1.25rem; border-bottom: 1px solid var(--line); }
header strong { margin-right: auto; }
header a { color: inherit; }
main { max-width: 68rem; margin: 0 auto; padding: 1.25rem; }
h1 { font-size: 1.45rem; margin: .2rem 0 .8rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .45rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
.muted { color: var(--muted); }
.pill { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem; border: 1px solid var(--line); }
.ok { color: #15803d; } .bad { color: #b91c1c; } .warn { color: #b45309; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 1rem; }
form.inline { display: grid; gap: .5rem; }
input, select, textarea { font: inherit; padding: .45rem .5rem; border-radius: 6px; border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); background: Canvas; color: CanvasText; }
button { font: inherit; font-weight: 600; padding: .5rem .9rem; border: 0; border-radius: 8px; background: var(--accent); color: white; cursor: pointer; }
button.danger { background: #b91c1c; }
.search { display: flex; gap: .5rem; } .search input { flex: 1; font-size: 1.05rem; }
.banner { padding: .7rem 1rem; border-radius: 8px; border-left: 4px solid var(--accent); background: color-mix(in srgb, var(--accent) 10%, Canvas); margin: .6rem 0; }
.banner.bad { border-color: #b91c1c; background: color-mix(in srgb, #b91c1c 10%, Canvas); color: inherit; }
details summary { cursor: pointer; }
iframe { width: 100%; height: 22rem; border: 1px solid var(--line); border-radius: 8px; background: white; }
"#;

pub(crate) fn layout(title: &str, operator: Option<&Operator>, body: &str) -> Html<String> {
    let nav = match operator {
        Some(o) => format!(
            "<a href=\"/console/\">Search</a><a href=\"/console/events\">Events</a><span class=\"muted\">{} · {}</span>\
             <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            escape(&o.name),
            o.role.as_str(),
            escape(o.csrf.as_deref().unwrap_or("")),
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Floodgate console</title><style>{STYLE}</style></head>\
         <body><header><strong>Floodgate console</strong>{nav}</header><main>{body}</main></body></html>",
        escape(title)
    ))
}

/// Page handlers send people without a session to the login page.
pub(crate) fn signed_in(
    operator: Result<Operator, ConsoleError>,
) -> Result<Operator, Box<Response>> {
    match operator {
        Ok(o) => Ok(o),
        Err(ConsoleError::Unauthenticated) => {
            Err(Box::new(Redirect::to("/console/login").into_response()))
        }
        Err(e) => Err(Box::new(e.into_response())),
    }
}

pub(crate) fn money(cents: i64, currency: &str) -> String {
    orders::pages::money(cents, currency)
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub email: String,
    pub password: String,
}

pub async fn login_page() -> Html<String> {
    login_html(None)
}

fn login_html(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"banner bad\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(
        "Sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{error}<form class=\"inline card\" method=\"post\" action=\"/console/login\" style=\"max-width:24rem\">\
             <label>Email <input name=\"email\" type=\"email\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button>Sign in</button></form>"
        ),
    )
}

fn client(headers: &HeaderMap) -> String {
    // The gateway sets X-Forwarded-For to the client it decided on; the console is not
    // reachable except through it (or on loopback).
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("direct")
        .trim()
        .to_owned()
}

pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    match sessions::login(&s.db, &f.email, &f.password, &client(&headers)).await {
        Ok(Login::Ok(session)) => {
            // Whatever session this browser had before is over: the new id replaces it,
            // and a stolen or planted copy of the old one must not outlive the swap.
            if let Some(old) = session_cookie(&headers)
                && let Err(e) = sessions::logout(&s.db, &old).await
            {
                tracing::warn!(error = %e, "revoking the replaced session failed");
            }
            let cookie = sessions::cookie(
                &session.id,
                sessions::LIFETIME_HOURS * 3600,
                s.secure_cookies,
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/console/")).into_response()
        }
        Ok(Login::Refused) => (
            StatusCode::UNAUTHORIZED,
            login_html(Some("Wrong email or password.")),
        )
            .into_response(),
        Ok(Login::Throttled) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, sessions::THROTTLE_SECONDS.to_string())],
            login_html(Some(
                "Too many failed attempts. Wait 15 minutes and try again.",
            )),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The session id this browser presents, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == sessions::COOKIE)
        })
        .map(|(_, v)| v.to_owned())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

pub async fn logout(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.verify_csrf(f.csrf.as_deref()) {
        return e.into_response();
    }
    if let Some(id) = session_cookie(&headers) {
        let _ = sessions::logout(&s.db, &id).await;
    }
    (
        [(
            header::SET_COOKIE,
            sessions::cookie("", 0, s.secure_cookies),
        )],
        Redirect::to("/console/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
}

pub async fn search_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Query(p): Query<SearchParams>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let q = p.q.unwrap_or_default();
    let results = if q.trim().is_empty() {
        String::new()
    } else {
        match search::find(&s, &operator, &q).await {
            Ok(hits) if hits.is_empty() => {
                format!("<p class=\"muted\">Nothing found for “{}”.</p>", escape(&q))
            }
            Ok(hits) => {
                let rows: String = hits
                    .iter()
                    .map(|h| {
                        format!(
                            "<tr><td><a href=\"/console/orders/{id}\">{email}</a><div class=\"muted\">{name}</div></td>\
                             <td><a href=\"/console/events/{slug}\">{event}</a></td><td><span class=\"pill\">{status}</span></td><td>{amount}</td><td class=\"muted\">{at}</td></tr>",
                            id = h.order_id,
                            email = escape(&h.buyer_email),
                            name = escape(&h.buyer_name),
                            event = escape(&h.event_title),
                            slug = escape(&h.event_slug),
                            status = escape(&h.status),
                            amount = escape(&money(h.amount_cents, &h.currency)),
                            at = h.created_at.format("%Y-%m-%d %H:%M"),
                        )
                    })
                    .collect();
                format!(
                    "<p class=\"muted\">{} result(s)</p><table><thead><tr><th>Buyer</th><th>Event</th><th>Status</th><th>Paid</th><th>Ordered</th></tr></thead><tbody>{rows}</tbody></table>",
                    hits.len()
                )
            }
            Err(e) => format!(
                "<p class=\"banner bad\" role=\"alert\">{}</p>",
                escape(&e.to_string())
            ),
        }
    };
    let body = format!(
        "<h1>Find a buyer</h1><form class=\"search\" method=\"get\" action=\"/console/\" role=\"search\">\
         <input name=\"q\" value=\"{}\" placeholder=\"Email, name, order id, ticket code or payment id\" aria-label=\"Search\" autofocus>\
         <button>Search</button></form>{results}",
        escape(&q)
    );
    layout("Search", Some(&operator), &body).into_response()
}

#[derive(Deserialize)]
pub struct Flash {
    pub done: Option<String>,
    pub error: Option<String>,
}

pub async fn order_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(id): Path<Uuid>,
    Query(flash): Query<Flash>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match support::detail(&s, &operator, id).await {
        Ok(d) => layout(
            &format!("Order of {}", d.order.buyer_name),
            Some(&operator),
            &order_html(&d, &operator, &flash),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn order_html(d: &OrderDetail, op: &Operator, flash: &Flash) -> String {
    let o = &d.order;
    let tz: chrono_tz::Tz = o.timezone.parse().unwrap_or(chrono_tz::UTC);
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
    out.push_str(&format!(
        "<p class=\"muted\"><a href=\"/console/events/{slug}\">{event}</a> · {when}</p><h1>{name} <span class=\"muted\">&lt;{email}&gt;</span></h1>\
         <p><span class=\"pill\">{status}</span> {tier} × {qty} · paid {amount}{refunded} · order <code>{id}</code>{intent}</p>",
        event = escape(&o.event_title),
        slug = escape(&o.event_slug),
        when = o.starts_at.with_timezone(&tz).format("%a %-d %b %Y %H:%M"),
        name = escape(&o.buyer_name),
        email = escape(&o.buyer_email),
        status = escape(&o.status),
        tier = escape(&o.tier),
        qty = o.quantity,
        amount = escape(&money(o.amount_cents, &o.currency)),
        refunded = if o.refunded_cents > 0 { format!(", refunded {}", escape(&money(o.refunded_cents, &o.currency))) } else { String::new() },
        id = o.id,
        intent = o.payment_intent_id.as_deref().map(|i| format!(" · payment <code>{}</code>", escape(i))).unwrap_or_default(),
    ));
    let class = match d.diagnosis.state {
        "ok" => "ok",
        "too_early" | "ended" => "warn",
        _ => "bad",
    };
    out.push_str(&format!(
        "<section class=\"card\" aria-labelledby=\"why\"><h2 id=\"why\">Why can't they join?</h2><p class=\"{class}\"><strong>{}</strong></p></section>",
        escape(&d.diagnosis.message)
    ));
    // Tickets.
    let csrf_value = escape(op.csrf.as_deref().unwrap_or(""));
    let tickets: String = d
        .tickets
        .iter()
        .map(|t| {
            let transfer = if op.role != Role::Host && t.status == "valid" {
                format!(
                    "<details><summary>Transfer</summary><form class=\"inline\" method=\"post\" action=\"/console/tickets/{}/transfer\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf_value}\"><input type=\"hidden\" name=\"action_key\" value=\"{}\">\
                     <label>New holder's email <input name=\"email\" type=\"email\" required></label>\
                     <label>Their name <input name=\"name\" required></label><button>Transfer</button></form></details>",
                    t.id,
                    Uuid::new_v4()
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{transfer}</td></tr>",
                escape(&t.code),
                escape(&t.status),
                escape(&t.holder_email),
                t.link_generation
                    .map_or("none".into(), |g| format!("live (v{g})")),
                t.last_visit
                    .map(|v| format!(
                        "{} ({})",
                        v.format("%d %b %H:%M"),
                        escape(t.last_outcome.as_deref().unwrap_or(""))
                    ))
                    .unwrap_or_else(|| "never opened".into()),
            )
        })
        .collect();
    out.push_str(&format!(
        "<h2>Tickets</h2><table><thead><tr><th>Code</th><th>Status</th><th>Holder</th><th>Link</th><th>Last visit</th><th></th></tr></thead><tbody>{tickets}</tbody></table>"
    ));
    // Fixes.
    if op.role != Role::Host {
        let csrf = escape(op.csrf.as_deref().unwrap_or(""));
        let key = || Uuid::new_v4();
        let remaining = o.amount_cents - o.refunded_cents;
        let override_box = if op.role == Role::Admin {
            "<label><input type=\"checkbox\" name=\"override_policy\" value=\"true\"> Outside the refund policy (admin)</label>"
        } else {
            ""
        };
        out.push_str(&format!(
            "<h2>Fix</h2><div class=\"grid\">\
             <form class=\"inline card\" method=\"post\" action=\"/console/orders/{id}/resend\"><strong>Resend the confirmation</strong>\
             <span class=\"muted\">Same links, to {email}.</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k1}\"><button>Resend</button></form>\
             <form class=\"inline card\" method=\"post\" action=\"/console/orders/{id}/email\"><strong>Correct the email address</strong>\
             <span class=\"muted\">Old links stop working; new ones go to the new address; the old address is told.</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k2}\">\
             <label>New address <input name=\"email\" type=\"email\" required></label>\
             <label>Why <input name=\"reason\" placeholder=\"e.g. buyer typed gmial.com\"></label><button>Change and send</button></form>\
             <form class=\"inline card\" method=\"post\" action=\"/console/orders/{id}/refund\"><strong>Refund</strong>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k3}\">\
             <label>Amount (cents, up to {remaining}) <input name=\"amount_cents\" type=\"number\" min=\"1\" max=\"{remaining}\" value=\"{remaining}\"></label>\
             <label>Reason <input name=\"reason\" required></label>{override_box}\
             <button class=\"danger\" onclick=\"return confirm('Refund this order? The buyer is told by email.')\">Refund</button></form>\
             {cancel}</div>",
            id = o.id,
            email = escape(&o.buyer_email),
            k1 = key(),
            k2 = key(),
            k3 = key(),
            cancel = if matches!(o.status.as_str(), "paid" | "partially_refunded" | "refunded") {
                format!(
                    "<form id=\"cancel-order\" class=\"inline card\" method=\"post\" action=\"/console/orders/{id}/cancel\"><strong>Cancel the order</strong>\
                     <span class=\"muted\">Refunds what is still paid, stops every ticket and link, frees the seats; the buyer is told by email.</span>\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{k4}\">\
                     <label>Reason <input name=\"reason\" required></label>{override_box}\
                     <button class=\"danger\" onclick=\"return confirm('Cancel this order? The buyer is told by email.')\">Cancel order</button></form>",
                    id = o.id,
                    k4 = key(),
                )
            } else {
                String::new()
            },
        ));
    }
    // Emails as sent.
    let mails: String = d
        .deliveries
        .iter()
        .map(|m| {
            let status_class = match m.status.as_str() {
                "sent" => "ok",
                "queued" => "warn",
                _ => "bad",
            };
            format!(
                "<details><summary><span class=\"{status_class}\">{}</span> · {} → {} · {} {}</summary>{}{}</details>",
                escape(&m.status),
                escape(&m.kind),
                escape(&m.recipient),
                m.sent_at.unwrap_or(m.created_at).with_timezone(&tz).format("%d %b %H:%M:%S"),
                if m.attempts > 1 { format!("({} attempts)", m.attempts) } else { String::new() },
                m.last_error.as_deref().map(|e| format!("<p class=\"bad\">Last error: {}</p>", escape(e))).unwrap_or_default(),
                m.body_html
                    .as_deref()
                    .map(|h| format!("<p class=\"muted\">{}</p><iframe sandbox srcdoc=\"{}\" title=\"The email as sent\"></iframe>", escape(m.subject.as_deref().unwrap_or("")), escape(h)))
                    .unwrap_or_default(),
            )
        })
        .collect();
    out.push_str(&format!(
        "<h2>Emails</h2>{}",
        if mails.is_empty() {
            "<p class=\"muted\">None yet.</p>".into()
        } else {
            mails
        }
    ));
    // Timeline.
    let rows: String = d
        .timeline
        .iter()
        .map(|t| {
            format!(
                "<tr><td class=\"muted\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                t.at.with_timezone(&tz).format("%d %b %H:%M:%S"),
                escape(&t.source),
                escape(&t.action),
                escape(&t.actor),
                escape(&t.detail.as_ref().map(|d| d.to_string()).unwrap_or_default()),
            )
        })
        .collect();
    out.push_str(&format!(
        "<h2>Timeline</h2><table><thead><tr><th>When ({})</th><th>Where</th><th>What</th><th>Who</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>",
        escape(&o.timezone)
    ));
    out
}

#[derive(Deserialize)]
pub struct ActionForm {
    pub csrf: Option<String>,
    pub action_key: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub reason: Option<String>,
    pub amount_cents: Option<String>,
    pub override_policy: Option<String>,
}

async fn act(
    s: AppState,
    operator: Result<Operator, ConsoleError>,
    id: Uuid,
    what: &str,
    f: ActionForm,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.verify_csrf(f.csrf.as_deref()) {
        return e.into_response();
    }
    let key = f.action_key.as_deref();
    let result = match what {
        "resend" => support::resend_with(&s, &operator, id, key).await,
        "cancel" => {
            support::cancel_order_with(
                &s,
                &operator,
                id,
                CancelOrderBody {
                    reason: f.reason.unwrap_or_default(),
                    override_policy: f.override_policy.as_deref() == Some("true"),
                },
                key,
            )
            .await
        }
        "email" => {
            support::email_with(
                &s,
                &operator,
                id,
                EmailBody {
                    email: f.email.unwrap_or_default(),
                    reason: f.reason,
                },
                key,
            )
            .await
        }
        _ => {
            let amount = f
                .amount_cents
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(str::parse::<i64>)
                .transpose();
            match amount {
                Ok(amount_cents) => {
                    support::refund_with(
                        &s,
                        &operator,
                        id,
                        RefundBody {
                            amount_cents,
                            reason: f.reason.unwrap_or_default(),
                            override_policy: f.override_policy.as_deref() == Some("true"),
                        },
                        key,
                    )
                    .await
                }
                Err(_) => Err(ConsoleError::Invalid(
                    "the amount is a whole number of cents".into(),
                )),
            }
        }
    };
    back_to_order(id, what, result)
}

/// Back to the order's page with the outcome of a fix shown on it.
fn back_to_order(
    order: Uuid,
    what: &str,
    result: Result<serde_json::Value, ConsoleError>,
) -> Response {
    let target = match result {
        Ok(_) => format!("/console/orders/{order}?done={what}"),
        Err(e) => {
            let message = match &e {
                ConsoleError::Orders(o) => o.public_message(),
                other => other.to_string(),
            };
            format!("/console/orders/{order}?error={}", urlencode(&message))
        }
    };
    Redirect::to(&target).into_response()
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn transfer_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(ticket): Path<Uuid>,
    Form(f): Form<ActionForm>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.verify_csrf(f.csrf.as_deref()) {
        return e.into_response();
    }
    let order: Option<Uuid> = sqlx::query_scalar("SELECT order_id FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_optional(&s.db)
        .await
        .ok()
        .flatten();
    let Some(order) = order else {
        return ConsoleError::from(orders::Error::NotFound("ticket")).into_response();
    };
    let body = TransferBody {
        email: f.email.unwrap_or_default(),
        name: f.name.unwrap_or_default(),
        reason: f.reason,
    };
    let result = support::transfer_with(&s, &operator, ticket, body, f.action_key.as_deref()).await;
    back_to_order(order, "transfer", result)
}

pub async fn resend_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(id): Path<Uuid>,
    Form(f): Form<ActionForm>,
) -> Response {
    act(s, operator, id, "resend", f).await
}

pub async fn email_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(id): Path<Uuid>,
    Form(f): Form<ActionForm>,
) -> Response {
    act(s, operator, id, "email", f).await
}

pub async fn refund_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(id): Path<Uuid>,
    Form(f): Form<ActionForm>,
) -> Response {
    act(s, operator, id, "refund", f).await
}

pub async fn cancel_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(id): Path<Uuid>,
    Form(f): Form<ActionForm>,
) -> Response {
    act(s, operator, id, "cancel", f).await
}
