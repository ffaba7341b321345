//! Buyer pages, rendered on the server: complete without JavaScript, readable on a phone.
//!
//! The markup is in `orders/templates/` (compiled in), each page extending platform's
//! buyer layout; this module decides what a page shows and hands the templates plain
//! values, which they escape.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use minijinja::{Environment, context};
use serde::Serialize;
use uuid::Uuid;

use crate::events::PublicEvent;
use contract::states::{OrderStatus, TicketStatus};

/// `(name, source)` for a template file, compiled into the binary.
macro_rules! template {
    ($name:literal) => {
        ($name, include_str!(concat!("../templates/", $name)))
    };
}

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = platform::html::buyer_templates();
    for (name, source) in [
        template!("event.html"),
        template!("hold.html"),
        template!("order.html"),
        template!("error.html"),
    ] {
        env.add_template(name, source)
            .expect("orders' templates compile");
    }
    env
});

fn render<C: Serialize>(name: &str, context: C) -> String {
    platform::html::render(&PAGES, name, context)
}

fn when(starts_at: DateTime<Utc>, timezone: &str) -> String {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    format!(
        "{} ({timezone})",
        starts_at.with_timezone(&tz).format("%A %-d %B %Y, %H:%M")
    )
}

/// What the buyer typed, shown again when the form comes back with an error.
#[derive(Debug, Default, Serialize)]
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
    let max = e.tiers.iter().map(|t| t.max_per_order).max().unwrap_or(1);
    // Point assistive technology at the field the message is about.
    let invalid = |field: &str| error.is_some_and(|m| m.contains(field));
    render(
        "event.html",
        context! {
            event => e,
            when => when(e.starts_at, &e.timezone),
            error => error.map(capitalise),
            invalid => context! {
                quantity => invalid("quantity"),
                name => invalid("name"),
                email => invalid("email"),
            },
            on_sale => e.tiers.iter().any(|t| t.available > 0),
            prefill => p,
            quantity => p.quantity.clamp(1, i64::from(max)),
            max,
        },
    )
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
    render(
        "hold.html",
        context! {
            slug => h.slug,
            hold_id => h.hold_id.to_string(),
            title => h.title,
            when => when(h.starts_at, h.timezone),
            tier => h.tier,
            unit_cents => h.unit_cents,
            quantity => h.quantity,
            amount_cents => h.amount_cents,
            currency => h.currency,
            buyer_name => h.buyer_name,
            buyer_email => h.buyer_email,
            active => h.active,
            minutes => (h.expires_at - Utc::now()).num_minutes().max(0),
            expires_at => h.expires_at.to_rfc3339(),
            expires_local => h.expires_at.with_timezone(&tz).format("%H:%M").to_string(),
            timezone => h.timezone,
        },
    )
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
    let banner = match o.status {
        OrderStatus::Paid => "paid",
        OrderStatus::PendingPayment => "pending",
        OrderStatus::Refunded => "refunded",
        OrderStatus::PartiallyRefunded => "partially_refunded",
        OrderStatus::Cancelled if !o.ever_paid => "given_up",
        OrderStatus::Cancelled => "cancelled",
    };
    let tickets: Vec<_> = o
        .tickets
        .iter()
        .map(|t| context! { code => t.code, state => ticket_state(t.status) })
        .collect();
    render(
        "order.html",
        context! {
            banner,
            event_title => o.event_title,
            event_slug => o.event_slug,
            when => when(o.starts_at, &o.timezone),
            tier => o.tier,
            quantity => o.quantity,
            amount_cents => o.amount_cents,
            currency => o.currency,
            tickets,
            pay_url => o.pay_url.as_deref().filter(|_| o.status == OrderStatus::PendingPayment),
            order_id => o.order_id.to_string(),
        },
    )
}

pub fn error(status: axum::http::StatusCode, message: &str) -> String {
    render(
        "error.html",
        context! {
            reason => status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PublicTier;
    use contract::states::EventStatus;

    const SCRIPT: &str = "<script>alert('x')</script>";
    const ESCAPED: &str = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";

    fn gig(title: &str) -> PublicEvent {
        PublicEvent {
            slug: "gig".into(),
            title: title.into(),
            starts_at: Utc::now(),
            ends_at: Utc::now(),
            timezone: "Europe/Amsterdam".into(),
            status: EventStatus::Scheduled,
            tiers: vec![PublicTier {
                code: "ga".into(),
                name: format!("General {SCRIPT}"),
                price_cents: 2500,
                currency: "EUR".into(),
                capacity: 10,
                available: 4,
                max_per_order: 4,
            }],
        }
    }

    fn assert_escaped(html: &str, times: usize) {
        assert!(!html.contains("<script"), "{html}");
        assert_eq!(html.matches(ESCAPED).count(), times, "{html}");
    }

    #[test]
    fn a_script_in_the_event_title_or_the_buyer_name_is_text() {
        let prefill = Prefill {
            tier: "ga".into(),
            quantity: 2,
            name: format!("Ada {SCRIPT}"),
            email: format!("{SCRIPT}@example.org"),
        };
        let html = event(&gig(SCRIPT), Some(SCRIPT), Some(&prefill));
        // The title twice, the error, the tier in the table and the option, the name
        // and the e-mail given back.
        assert_escaped(&html, 7);
        assert!(html.contains(&format!(r#"value="Ada {ESCAPED}""#)));

        let view = HoldView {
            slug: "gig",
            hold_id: Uuid::nil(),
            title: SCRIPT,
            starts_at: Utc::now(),
            timezone: "Europe/Amsterdam",
            buyer_name: SCRIPT,
            buyer_email: SCRIPT,
            unit_cents: 2500,
            tier: SCRIPT,
            quantity: 2,
            amount_cents: 5000,
            currency: "EUR",
            active: true,
            expires_at: Utc::now() + chrono::Duration::minutes(10),
        };
        assert_escaped(&hold(&view), 5);

        let o = OrderView {
            order_id: Uuid::nil(),
            status: OrderStatus::PendingPayment,
            amount_cents: 5000,
            refunded_cents: 0,
            currency: "EUR".into(),
            quantity: 2,
            tier: SCRIPT.into(),
            event_title: SCRIPT.into(),
            event_slug: "gig".into(),
            starts_at: Utc::now(),
            timezone: "UTC".into(),
            tickets: vec![],
            deliveries: vec![],
            pay_url: Some(format!("https://pay.example/{SCRIPT}")),
            ever_paid: false,
        };
        assert_escaped(&order(&o), 4);
        assert_escaped(&error(axum::http::StatusCode::NOT_FOUND, SCRIPT), 1);
    }

    #[test]
    fn the_form_points_at_the_field_the_error_names() {
        let html = event(&gig("Gig"), Some("quantity must be between 1 and 4"), None);
        assert!(html.contains(
            r#"<p class="error" role="alert" id="form-error">Quantity must be between 1 and 4</p>"#
        ));
        assert!(html.contains(
            r#"name="quantity" type="number" min="1" max="4" value="1" required aria-invalid="true" aria-describedby="form-error">"#
        ));
        assert_eq!(html.matches("aria-invalid").count(), 1, "{html}");
        assert!(html.contains(r#"<option value="ga">"#));
    }

    #[test]
    fn every_order_state_has_its_banner() {
        let mut o = OrderView {
            order_id: Uuid::nil(),
            status: OrderStatus::Paid,
            amount_cents: 5000,
            refunded_cents: 0,
            currency: "EUR".into(),
            quantity: 2,
            tier: "General".into(),
            event_title: "Gig".into(),
            event_slug: "gig".into(),
            starts_at: Utc::now(),
            timezone: "UTC".into(),
            tickets: vec![TicketView {
                id: Uuid::nil(),
                code: "FG-AAAA-BBBB-CC".into(),
                status: TicketStatus::Valid,
            }],
            deliveries: vec![],
            pay_url: Some("https://pay.example/pi_1".into()),
            ever_paid: true,
        };
        let cases = [
            (OrderStatus::Paid, true, "Paid. Your access link"),
            (
                OrderStatus::PendingPayment,
                false,
                "Waiting for your payment",
            ),
            (OrderStatus::Refunded, true, "refunded in full"),
            (OrderStatus::PartiallyRefunded, true, "Part of this order"),
            (OrderStatus::Cancelled, false, "Nothing was charged."),
            (OrderStatus::Cancelled, true, "This order was cancelled."),
        ];
        for (status, ever_paid, banner) in cases {
            o.status = status;
            o.ever_paid = ever_paid;
            let html = order(&o);
            assert!(html.contains(banner), "{status:?}: {html}");
            let pending = status == OrderStatus::PendingPayment;
            assert_eq!(
                html.contains(r#"<meta http-equiv="refresh" content="3">"#),
                pending
            );
            assert_eq!(html.contains("Complete your payment"), pending);
            assert!(
                html.contains(
                    r#"<td class="ticket">FG-AAAA-BBBB-CC</td><td class="num">Valid</td>"#
                )
            );
        }
    }
}
