//! Buyer pages, rendered on the server: complete without JavaScript, readable on a phone.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use platform::html::{buyer_page, buyer_page_with_head, escape, money};

use crate::events::PublicEvent;
use contract::states::{OrderStatus, TicketStatus};

fn when(starts_at: DateTime<Utc>, timezone: &str) -> String {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    format!(
        "{} ({})",
        starts_at.with_timezone(&tz).format("%A %-d %B %Y, %H:%M"),
        escape(timezone)
    )
}

/// What the buyer typed, shown again when the form comes back with an error.
#[derive(Debug, Default)]
pub struct Prefill {
    pub tier: String,
    pub quantity: i64,
    pub name: String,
    pub email: String,
}

/// The event page: tiers with what is left, and the form to hold seats.
pub fn event(e: &PublicEvent, error: Option<&str>, prefill: Option<&Prefill>) -> String {
    let blank = Prefill {
        quantity: 1,
        ..Prefill::default()
    };
    let p = prefill.unwrap_or(&blank);
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
                "<option value=\"{}\"{}>{} — {}</option>",
                escape(&t.code),
                if t.code == p.tier { " selected" } else { "" },
                escape(&t.name),
                escape(&money(t.price_cents, &t.currency))
            ));
        }
    }
    let max = e.tiers.iter().map(|t| t.max_per_order).max().unwrap_or(1);
    let error_html = error
        .map(|m| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                escape(&capitalise(m))
            )
        })
        .unwrap_or_default();
    // Point assistive technology at the field the message is about.
    let invalid = |field: &str| match error {
        Some(m) if m.contains(field) => " aria-invalid=\"true\" aria-describedby=\"form-error\"",
        _ => "",
    };
    let form = if options.is_empty() {
        "<p class=\"soldout\">This event is sold out.</p>".to_owned()
    } else {
        format!(
            "<form class=\"buy\" method=\"post\" action=\"/e/{slug}/hold\">\
             <label>Ticket<select name=\"tier\" required>{options}</select></label>\
             <label>How many<input name=\"quantity\" type=\"number\" min=\"1\" max=\"{max}\" value=\"{quantity}\" required{qi}></label>\
             <label>Your name<input name=\"name\" autocomplete=\"name\" maxlength=\"120\" value=\"{name}\" required{ni}></label>\
             <label>Email (your access link goes here)<input name=\"email\" type=\"email\" autocomplete=\"email\" value=\"{email}\" required{ei}></label>\
             <button type=\"submit\" class=\"wide\">Hold my tickets</button></form>",
            slug = escape(&e.slug),
            quantity = p.quantity.clamp(1, i64::from(max)),
            name = escape(&p.name),
            email = escape(&p.email),
            qi = invalid("quantity"),
            ni = invalid("name"),
            ei = invalid("email"),
        )
    };
    let body = format!(
        "<h1>{}</h1><p class=\"when\">{}</p>{error_html}\
         <table><thead><tr><th>Ticket</th><th class=\"num\">Price</th><th class=\"num\">Availability</th></tr></thead>\
         <tbody>{rows}</tbody></table>{form}",
        escape(&e.title),
        when(e.starts_at, &e.timezone),
    );
    buyer_page(&e.title, &body)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// A ticket's state as its holder reads it on the order page.
fn ticket_state(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Valid => "Valid",
        TicketStatus::Transferred => "Transferred",
        TicketStatus::Revoked => "Revoked",
        TicketStatus::Refunded => "Refunded",
    }
}

pub struct HoldView<'a> {
    pub slug: &'a str,
    pub hold_id: Uuid,
    pub title: &'a str,
    pub starts_at: DateTime<Utc>,
    pub timezone: &'a str,
    pub buyer_name: &'a str,
    pub buyer_email: &'a str,
    pub unit_cents: i64,
    pub tier: &'a str,
    pub quantity: i32,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub active: bool,
    pub expires_at: DateTime<Utc>,
}

/// The checkout page: what is held, until when, and the button to pay.
pub fn hold(h: &HoldView<'_>) -> String {
    let tz: chrono_tz::Tz = h.timezone.parse().unwrap_or(chrono_tz::UTC);
    let minutes = (h.expires_at - Utc::now()).num_minutes().max(0);
    let action = if h.active {
        format!(
            "<p>Your seats are held for about <strong>{minutes} minutes</strong> \
             (until <time datetime=\"{}\">{}</time>, {}).</p>\
             <form method=\"post\" action=\"/e/{slug}/holds/{id}/pay\"><button type=\"submit\" class=\"wide\">Pay {}</button></form>\
             <form method=\"post\" action=\"/e/{slug}/holds/{id}/release\"><button type=\"submit\" class=\"quiet\">Change tickets (release these seats)</button></form>",
            h.expires_at.to_rfc3339(),
            h.expires_at.with_timezone(&tz).format("%H:%M"),
            escape(h.timezone),
            escape(&money(h.amount_cents, h.currency)),
            slug = escape(h.slug),
            id = h.hold_id,
        )
    } else {
        format!(
            "<p class=\"error\" role=\"alert\">This hold has ended. <a href=\"/e/{}\">Choose tickets again</a>.</p>",
            escape(h.slug)
        )
    };
    let body = format!(
        "<p class=\"when\">Checkout</p><h1>{}</h1><p class=\"when\">{}</p>\
         <table><thead><tr><th>Ticket</th><th class=\"num\">Price</th><th class=\"num\">Qty</th><th class=\"num\">Total</th></tr></thead>\
         <tbody><tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\"><strong>{}</strong></td></tr></tbody></table>\
         <p>For <strong>{}</strong>; the access link goes to <strong>{}</strong>.</p>{action}",
        escape(h.title),
        when(h.starts_at, h.timezone),
        escape(h.tier),
        escape(&money(h.unit_cents, h.currency)),
        h.quantity,
        escape(&money(h.amount_cents, h.currency)),
        escape(h.buyer_name),
        escape(h.buyer_email),
    );
    buyer_page(&format!("Checkout · {}", h.title), &body)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketView {
    pub id: Uuid,
    pub code: String,
    pub status: TicketStatus,
}

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: OrderStatus,
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
    /// Where to finish paying, while the order waits for its payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_url: Option<String>,
    /// It was paid at some point (a cancelled order without is a checkout given up).
    #[serde(skip)]
    pub ever_paid: bool,
}

/// The order page: refreshes itself while the payment is on its way.
pub fn order(o: &OrderView) -> String {
    let given_up;
    let (banner, refresh) = match o.status {
        OrderStatus::Paid => (
            "<p class=\"ok\" role=\"status\">Paid. Your access link is on its way to your inbox.</p>",
            "",
        ),
        OrderStatus::PendingPayment => (
            "<p role=\"status\">Waiting for your payment to be confirmed… this page refreshes by itself.</p>",
            "<meta http-equiv=\"refresh\" content=\"3\">",
        ),
        OrderStatus::Refunded => (
            "<p class=\"error\" role=\"status\">This order was refunded in full.</p>",
            "",
        ),
        OrderStatus::PartiallyRefunded => (
            "<p role=\"status\">Part of this order was refunded.</p>",
            "",
        ),
        OrderStatus::Cancelled if !o.ever_paid => {
            // Changed tickets, a reservation that ran out, or an event called off: say
            // nothing was charged, and offer the one thing to do.
            given_up = format!(
                "<p role=\"status\">Not paid: this checkout was cancelled when its seats were \
                 given up or ran out. Nothing was charged.</p>\
                 <p><a href=\"/e/{}\">Choose tickets again</a></p>",
                escape(&o.event_slug)
            );
            (given_up.as_str(), "")
        }
        OrderStatus::Cancelled => (
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
                ticket_state(t.status)
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
         {pay}<p class=\"small\">Order {}</p>",
        escape(&o.event_title),
        when(o.starts_at, &o.timezone),
        escape(&o.tier),
        o.quantity,
        escape(&money(o.amount_cents, &o.currency)),
        o.order_id,
        pay = match (&o.pay_url, o.status) {
            (Some(url), OrderStatus::PendingPayment) => format!(
                "<p>Not paid yet? <a href=\"{}\">Complete your payment</a>.</p>",
                escape(url)
            ),
            _ => String::new(),
        },
    );
    buyer_page_with_head(&format!("Order · {}", o.event_title), refresh, &body)
}

pub fn error(status: axum::http::StatusCode, message: &str) -> String {
    buyer_page(
        "Something is not right",
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"javascript:history.back()\">Go back</a></p>",
            status.canonical_reason().unwrap_or("Error"),
            escape(message)
        ),
    )
}
