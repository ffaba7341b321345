//! Buyer pages, rendered on the server: complete without JavaScript, readable on a phone.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::events::PublicEvent;

/// Escapes text for HTML element and attribute context.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn money(cents: i64, currency: &str) -> String {
    format!("{} {}.{:02}", currency, cents / 100, cents % 100)
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --muted: #6b7280; --accent: #2f6fed; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 40rem; margin: 0 auto; padding: 2rem 1.25rem; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: .25rem 0 .5rem; }
.when { color: var(--muted); margin: 0 0 1.5rem; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .6rem .4rem; border-bottom: 1px solid color-mix(in srgb, CanvasText 12%, transparent); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.soldout { color: #b91c1c; font-weight: 600; }
form.buy { display: grid; gap: .9rem; margin-top: 1.5rem; padding: 1.25rem; border-radius: 12px;
           border: 1px solid color-mix(in srgb, CanvasText 15%, transparent); }
label { display: grid; gap: .3rem; font-weight: 600; font-size: .95rem; }
input, select { font: inherit; padding: .55rem .6rem; border-radius: 8px; border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); }
button { font: inherit; font-weight: 600; padding: .75rem 1rem; border: 0; border-radius: 10px; background: var(--accent); color: white; cursor: pointer; }
.error { background: color-mix(in srgb, #dc2626 12%, Canvas); border-left: 4px solid #dc2626; padding: .75rem 1rem; border-radius: 6px; }
.ok { background: color-mix(in srgb, #16a34a 12%, Canvas); border-left: 4px solid #16a34a; padding: .75rem 1rem; border-radius: 6px; }
.ticket { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 1.1rem; letter-spacing: .04em; }
@media (prefers-color-scheme: dark) { :root { --muted: #a1a8b3; --accent: #4d84f7; } }
"#;

pub fn layout(title: &str, body: &str) -> String {
    layout_with_head(title, "", body)
}

pub fn layout_with_head(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

fn when(starts_at: DateTime<Utc>, timezone: &str) -> String {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    format!(
        "{} ({})",
        starts_at.with_timezone(&tz).format("%A %-d %B %Y, %H:%M"),
        escape(timezone)
    )
}

/// The event page: tiers with what is left, and the form to hold seats.
pub fn event(e: &PublicEvent, error: Option<&str>) -> String {
    let mut rows = String::new();
    let mut options = String::new();
    for t in &e.tiers {
        let availability = if t.available == 0 {
            "<span class=\"soldout\">Sold out</span>".to_owned()
        } else {
            format!("{} left", t.available)
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&t.name),
            escape(&money(t.price_cents, &t.currency)),
            availability
        ));
        if t.available > 0 {
            options.push_str(&format!(
                "<option value=\"{}\">{} — {}</option>",
                escape(&t.code),
                escape(&t.name),
                escape(&money(t.price_cents, &t.currency))
            ));
        }
    }
    let max = e.tiers.iter().map(|t| t.max_per_order).max().unwrap_or(1);
    let error = error
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let form = if options.is_empty() {
        "<p class=\"soldout\">This event is sold out.</p>".to_owned()
    } else {
        format!(
            "<form class=\"buy\" method=\"post\" action=\"/e/{slug}/hold\">\
             <label>Ticket<select name=\"tier\" required>{options}</select></label>\
             <label>How many<input name=\"quantity\" type=\"number\" min=\"1\" max=\"{max}\" value=\"1\" required></label>\
             <label>Your name<input name=\"name\" autocomplete=\"name\" maxlength=\"120\" required></label>\
             <label>Email (your access link goes here)<input name=\"email\" type=\"email\" autocomplete=\"email\" required></label>\
             <button type=\"submit\">Hold my tickets</button></form>",
            slug = escape(&e.slug),
        )
    };
    let body = format!(
        "<h1>{}</h1><p class=\"when\">{}</p>{error}\
         <table><thead><tr><th>Ticket</th><th class=\"num\">Price</th><th class=\"num\">Availability</th></tr></thead>\
         <tbody>{rows}</tbody></table>{form}",
        escape(&e.title),
        when(e.starts_at, &e.timezone),
    );
    layout(&e.title, &body)
}

pub struct HoldView<'a> {
    pub slug: &'a str,
    pub hold_id: Uuid,
    pub title: &'a str,
    pub tier: &'a str,
    pub quantity: i32,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub active: bool,
    pub expires_at: DateTime<Utc>,
}

/// The checkout page: what is held, until when, and the button to pay.
pub fn hold(h: &HoldView<'_>) -> String {
    let action = if h.active {
        format!(
            "<p>Your seats are held until <strong><time datetime=\"{}\">{} UTC</time></strong>.</p>\
             <form method=\"post\" action=\"/e/{}/holds/{}/pay\"><button type=\"submit\">Pay {}</button></form>",
            h.expires_at.to_rfc3339(),
            h.expires_at.format("%H:%M:%S"),
            escape(h.slug),
            h.hold_id,
            escape(&money(h.amount_cents, h.currency)),
        )
    } else {
        format!(
            "<p class=\"error\" role=\"alert\">This hold has ended. <a href=\"/e/{}\">Choose tickets again</a>.</p>",
            escape(h.slug)
        )
    };
    let body = format!(
        "<h1>{}</h1><table><tbody><tr><td>{}</td><td class=\"num\">× {}</td><td class=\"num\">{}</td></tr></tbody></table>{action}",
        escape(h.title),
        escape(h.tier),
        h.quantity,
        escape(&money(h.amount_cents, h.currency)),
    );
    layout(&format!("Checkout · {}", h.title), &body)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketView {
    pub id: Uuid,
    pub code: String,
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: String,
    pub amount_cents: i64,
    pub refunded_cents: i64,
    pub currency: String,
    pub quantity: i32,
    pub tier: String,
    pub event_title: String,
    pub event_slug: String,
    pub starts_at: DateTime<Utc>,
    pub timezone: String,
    pub tickets: Vec<TicketView>,
    pub deliveries: Vec<serde_json::Value>,
}

/// The order page: refreshes itself while the payment is on its way.
pub fn order(o: &OrderView) -> String {
    let (banner, refresh) = match o.status.as_str() {
        "paid" => (
            "<p class=\"ok\" role=\"status\">Paid. Your access link is on its way to your inbox.</p>",
            "",
        ),
        "pending_payment" => (
            "<p role=\"status\">Waiting for your payment to be confirmed… this page refreshes by itself.</p>",
            "<meta http-equiv=\"refresh\" content=\"3\">",
        ),
        "refunded" => (
            "<p class=\"error\" role=\"status\">This order was refunded in full.</p>",
            "",
        ),
        "partially_refunded" => (
            "<p role=\"status\">Part of this order was refunded.</p>",
            "",
        ),
        _ => (
            "<p class=\"error\" role=\"status\">This order was cancelled.</p>",
            "",
        ),
    };
    let tickets: String = o
        .tickets
        .iter()
        .map(|t| {
            format!(
                "<tr><td class=\"ticket\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&t.code),
                escape(&t.status)
            )
        })
        .collect();
    let tickets = if tickets.is_empty() {
        String::new()
    } else {
        format!("<h2>Tickets</h2><table><tbody>{tickets}</tbody></table>")
    };
    let body = format!(
        "<h1>{}</h1><p class=\"when\">{}</p>{banner}\
         <table><tbody><tr><td>{} × {}</td><td class=\"num\">{}</td></tr></tbody></table>{tickets}\
         <p class=\"when\">Order {}</p>",
        escape(&o.event_title),
        when(o.starts_at, &o.timezone),
        escape(&o.tier),
        o.quantity,
        escape(&money(o.amount_cents, &o.currency)),
        o.order_id,
    );
    layout_with_head(&format!("Order · {}", o.event_title), refresh, &body)
}

pub fn error(status: axum::http::StatusCode, message: &str) -> String {
    layout(
        "Something is not right",
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"javascript:history.back()\">Go back</a></p>",
            status.canonical_reason().unwrap_or("Error"),
            escape(message)
        ),
    )
}
