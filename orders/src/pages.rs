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
        template!("receipt.html"),
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

fn zone(timezone: &str) -> chrono_tz::Tz {
    timezone.parse().unwrap_or(chrono_tz::UTC)
}

fn when(starts_at: DateTime<Utc>, timezone: &str) -> String {
    let tz = zone(timezone);
    format!(
        "{} ({timezone})",
        starts_at.with_timezone(&tz).format("%A %-d %B %Y, %H:%M")
    )
}

/// "Friday 8 January 2027, 19:30–21:30 (Europe/Amsterdam)"; an event over several days
/// names the end's date too.
fn span(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, timezone: &str) -> String {
    let tz = zone(timezone);
    let (s, e) = (starts_at.with_timezone(&tz), ends_at.with_timezone(&tz));
    let end = if s.date_naive() == e.date_naive() {
        e.format("%H:%M").to_string()
    } else {
        e.format("%A %-d %B %Y, %H:%M").to_string()
    };
    format!("{}–{end} ({timezone})", s.format("%A %-d %B %Y, %H:%M"))
}

/// A moment as the event page names it, in the event's zone: "Monday 4 January, 19:30".
fn moment(t: DateTime<Utc>, timezone: &str) -> String {
    t.with_timezone(&zone(timezone))
        .format("%A %-d %B %Y, %H:%M")
        .to_string()
}

/// The refund policy in a sentence, with the moment it ends.
fn refund_policy(e: &PublicEvent) -> Option<String> {
    let hours = e
        .refund_policy
        .get("refundable_until_hours_before")?
        .as_i64()?;
    let until = e.starts_at - chrono::Duration::hours(hours);
    Some(if hours == 0 {
        "You can ask for a refund until the event starts.".to_owned()
    } else {
        format!(
            "You can ask for a refund until {hours} hour{} before the start ({}); after that, only the organiser can make an exception.",
            if hours == 1 { "" } else { "s" },
            moment(until, &e.timezone)
        )
    })
}

/// Where the sale stands: "open", "not_open" or "closed".
fn sale(e: &PublicEvent, now: DateTime<Utc>) -> &'static str {
    if e.sales_open_at.is_some_and(|t| now < t) {
        "not_open"
    } else if e.sales_close_at.is_some_and(|t| now >= t) || e.ends_at <= now {
        "closed"
    } else {
        "open"
    }
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
    // Never offer more than one order may take or than is left in any tier.
    let max = e
        .tiers
        .iter()
        .map(|t| i64::from(t.max_per_order).min(i64::from(t.available)))
        .max()
        .unwrap_or(1)
        .max(1);
    // Point assistive technology at the field the message is about.
    let invalid = |field: &str| error.is_some_and(|m| m.contains(field));
    let now = Utc::now();
    render(
        "event.html",
        context! {
            event => e,
            when => span(e.starts_at, e.ends_at, &e.timezone),
            refund_policy => refund_policy(e),
            sale => sale(e, now),
            sales_open => e.sales_open_at.map(|t| moment(t, &e.timezone)),
            sales_close => e.sales_close_at.map(|t| moment(t, &e.timezone)),
            cancelled => e.status != contract::states::EventStatus::Scheduled,
            error => error.map(capitalise),
            invalid => context! {
                quantity => invalid("quantity"),
                name => invalid("name"),
                email => invalid("email"),
            },
            available => e.tiers.iter().any(|t| t.available > 0),
            prefill => p,
            quantity => p.quantity.clamp(1, max),
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
            left => time_left(h.expires_at - Utc::now()),
            expires_at => h.expires_at.to_rfc3339(),
            expires_local => h.expires_at.with_timezone(&tz).format("%H:%M").to_string(),
            timezone => h.timezone,
        },
    )
}

/// Time left as a countdown reads it, `m:ss`: a one-minute hold is "1:00", never
/// "about 0 minutes".
fn time_left(left: chrono::Duration) -> String {
    let s = left.num_seconds().max(0);
    format!("{}:{:02}", s / 60, s % 60)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketView {
    pub id: Uuid,
    pub code: String,
    pub status: TicketStatus,
    /// Whose name the ticket carries (the buyer's unless they named someone).
    #[serde(skip)]
    pub holder_name: String,
    /// Still the buyer's (not given to someone else's address).
    #[serde(skip)]
    pub mine: bool,
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
    #[serde(skip)]
    pub payment_intent_id: Option<String>,
    /// When the order's seats go back on sale if it is not paid.
    #[serde(skip)]
    pub held_until: DateTime<Utc>,
    /// What the provider says of an order waiting for payment (the page asks it).
    #[serde(skip)]
    pub payment: Payment,
    #[serde(skip)]
    pub buyer_email: String,
    #[serde(skip)]
    pub buyer_name: String,
    #[serde(skip)]
    pub ordered_at: DateTime<Utc>,
    #[serde(skip)]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub organiser: String,
    #[serde(skip)]
    pub organiser_email: Option<String>,
    /// The order token the page was opened with, for its own links.
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub ends_at: DateTime<Utc>,
    /// When the event last changed: its calendar entries' version.
    #[serde(skip)]
    pub event_updated_at: DateTime<Utc>,
    /// The ticket names were just saved.
    #[serde(skip)]
    pub names_saved: bool,
}

/// An unpaid order's payment as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payment {
    /// Not asked (the order is not waiting), or the provider did not answer.
    #[default]
    Unasked,
    /// Paid at the provider; its news is on the way.
    Confirming,
    /// Nothing paid: the buyer came back without paying, or the card was declined.
    NotPaid,
}

/// The order page: refreshes itself while the payment is on its way.
pub fn order(o: &OrderView) -> String {
    let now = Utc::now();
    let banner = match o.status {
        OrderStatus::Paid => "paid",
        OrderStatus::PendingPayment => match o.payment {
            Payment::Confirming => "pending",
            Payment::NotPaid if o.held_until > now => "not_paid",
            Payment::NotPaid => "ran_out",
            Payment::Unasked => "unsure",
        },
        OrderStatus::Refunded => "refunded",
        OrderStatus::PartiallyRefunded => "partially_refunded",
        OrderStatus::Cancelled if !o.ever_paid => "given_up",
        OrderStatus::Cancelled => "cancelled",
    };
    let tz = zone(&o.timezone);
    let tickets: Vec<_> = o
        .tickets
        .iter()
        .map(|t| {
            context! {
                code => t.code,
                state => ticket_state(t.status),
                name => t.holder_name,
                nameable => t.mine && t.status == TicketStatus::Valid,
            }
        })
        .collect();
    let nameable = o.tickets.len() > 1
        && o.tickets
            .iter()
            .any(|t| t.mine && t.status == TicketStatus::Valid);
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
            held_until => o.held_until.to_rfc3339(),
            held_until_local => o.held_until.with_timezone(&tz).format("%H:%M").to_string(),
            timezone => o.timezone,
            order_id => o.order_id.to_string(),
            token => o.token,
            buyer_email => o.buyer_email,
            receipt => o.paid_at.is_some(),
            nameable,
            names_saved => o.names_saved,
            // "On its way" is true for the minutes after paying, not a week later.
            long_paid => o.paid_at.is_some_and(|t| now - t > chrono::Duration::minutes(15)),
            organiser => o.organiser,
            organiser_email => o.organiser_email,
        },
    )
}

/// The receipt: who paid whom for what, when, and what was refunded; printable.
pub fn receipt(o: &OrderView) -> String {
    let tz = zone(&o.timezone);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%-d %B %Y, %H:%M").to_string();
    let unit = if o.quantity > 0 {
        o.amount_cents / i64::from(o.quantity)
    } else {
        o.amount_cents
    };
    render(
        "receipt.html",
        context! {
            order_id => o.order_id.to_string(),
            token => o.token,
            event_title => o.event_title,
            when => when(o.starts_at, &o.timezone),
            organiser => o.organiser,
            organiser_email => o.organiser_email,
            buyer_name => o.buyer_name,
            buyer_email => o.buyer_email,
            ordered => local(o.ordered_at),
            paid => o.paid_at.map(local),
            timezone => o.timezone,
            tier => o.tier,
            quantity => o.quantity,
            unit_cents => unit,
            amount_cents => o.amount_cents,
            refunded_cents => o.refunded_cents,
            net_cents => o.amount_cents - o.refunded_cents,
            currency => o.currency,
            codes => o.tickets.iter().map(|t| t.code.as_str()).collect::<Vec<_>>(),
        },
    )
}

/// The page for a dead end: what happened and the one thing to do.
pub fn error(d: &crate::dead_ends::DeadEnd) -> String {
    render(
        "error.html",
        context! {
            heading => d.heading,
            message => d.message,
            action => d.action,
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
            starts_at: Utc::now() + chrono::Duration::days(1),
            ends_at: Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(2),
            timezone: "Europe/Amsterdam".into(),
            status: EventStatus::Scheduled,
            description: String::new(),
            organiser: String::new(),
            organiser_email: None,
            refund_policy: serde_json::json!({"refundable_until_hours_before": 48}),
            sales_open_at: None,
            sales_close_at: None,
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

    /// A paid two-ticket order for Ada, to vary per test.
    fn an_order() -> OrderView {
        OrderView {
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
            tickets: vec![],
            deliveries: vec![],
            pay_url: None,
            ever_paid: true,
            payment_intent_id: None,
            held_until: Utc::now(),
            payment: Payment::Unasked,
            buyer_email: "ada@example.org".into(),
            buyer_name: "Ada".into(),
            ordered_at: Utc::now(),
            paid_at: None,
            organiser: String::new(),
            organiser_email: None,
            token: "t".into(),
            ends_at: Utc::now(),
            event_updated_at: Utc::now(),
            names_saved: false,
        }
    }

    fn assert_escaped(html: &str, times: usize) {
        assert!(!html.contains(SCRIPT), "{html}");
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
            status: OrderStatus::PendingPayment,
            tier: SCRIPT.into(),
            event_title: SCRIPT.into(),
            pay_url: Some(format!("https://pay.example/{SCRIPT}")),
            ever_paid: false,
            ..an_order()
        };
        assert_escaped(&order(&o), 4);
        let link = crate::dead_ends::DeadEnd {
            heading: "h",
            message: "m.",
            action: Some((format!("/e/{SCRIPT}"), "go")),
            forget_turn: false,
        };
        assert_escaped(&error(&link), 1);
    }

    #[test]
    fn the_event_page_says_what_who_until_when_and_whether_it_is_on_sale() {
        let mut e = gig("Gig");
        e.starts_at = "2030-01-04T18:30:00Z".parse().unwrap();
        e.ends_at = "2030-01-04T21:00:00Z".parse().unwrap();
        e.description = format!("Line one\n\nLine two {SCRIPT}");
        e.organiser = format!("Northwind {SCRIPT}");
        e.organiser_email = Some("tickets@northwind.example".into());
        e.sales_close_at = Some("2030-01-04T17:00:00Z".parse().unwrap());
        let html = event(&e, None, None);
        assert!(
            html.contains("Friday 4 January 2030, 19:30–22:00 (Europe/Amsterdam)"),
            "{html}"
        );
        assert!(
            html.contains("Line one\n\nLine two"),
            "line breaks kept: {html}"
        );
        // The description and organiser, and the tier's name in the table and the form.
        assert_escaped(&html, 4);
        assert!(html.contains(r#"href="mailto:tickets@northwind.example""#));
        assert!(
            html.contains("until 48 hours before the start (Wednesday 2 January 2030, 19:30)"),
            "{html}"
        );
        assert!(
            html.contains("Sales close Friday 4 January 2030, 18:00."),
            "{html}"
        );
        assert!(html.contains(r#"<form class="buy""#));

        e.sales_open_at = Some(Utc::now() + chrono::Duration::hours(1));
        let html = event(&e, None, None);
        assert!(
            !html.contains(r#"<form class="buy""#),
            "no form before the sale opens"
        );
        assert!(html.contains(r#"id="sale">Sales open "#), "{html}");

        e.sales_open_at = None;
        e.sales_close_at = Some(Utc::now() - chrono::Duration::minutes(1));
        let html = event(&e, None, None);
        assert!(!html.contains(r#"<form class="buy""#));
        assert!(html.contains("Sales have closed."));

        e.sales_close_at = None;
        e.status = EventStatus::Cancelled;
        assert!(event(&e, None, None).contains("This event was cancelled."));
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
    fn the_receipt_says_who_paid_whom_what_and_what_came_back() {
        let o = OrderView {
            status: OrderStatus::PartiallyRefunded,
            refunded_cents: 2500,
            tier: SCRIPT.into(),
            paid_at: Some(Utc::now()),
            organiser: "Northwind".into(),
            organiser_email: Some("tickets@northwind.example".into()),
            token: "tok".into(),
            ..an_order()
        };
        let html = receipt(&o);
        assert_escaped(&html, 1);
        for part in [
            "Northwind",
            "tickets@northwind.example",
            "ada@example.org",
            "/orders/00000000-0000-0000-0000-000000000000?order_token=tok",
            "−EUR 25.00",
            r#"id="total">EUR 25.00"#,
            "Total paid, after refunds",
        ] {
            assert!(html.contains(part), "{part}: {html}");
        }
    }

    #[test]
    fn the_paid_banner_says_on_its_way_only_just_after_paying() {
        let mut o = OrderView {
            tickets: vec![],
            paid_at: Some(Utc::now()),
            ..an_order()
        };
        assert!(
            order(&o).contains(
                "Paid. Your access link is on its way to <strong>ada@example.org</strong>"
            )
        );
        o.paid_at = Some(Utc::now() - chrono::Duration::days(2));
        assert!(
            order(&o)
                .contains("Paid. Your access link was sent to <strong>ada@example.org</strong>")
        );
    }

    #[test]
    fn every_order_state_has_its_banner() {
        let mut o = OrderView {
            tickets: vec![TicketView {
                id: Uuid::nil(),
                code: "FG-AAAA-BBBB-CC".into(),
                status: TicketStatus::Valid,
                holder_name: "Ada".into(),
                mine: true,
            }],
            pay_url: Some("https://pay.example/pi_1".into()),
            payment_intent_id: Some("pi_1".into()),
            ..an_order()
        };
        let soon = Utc::now() + chrono::Duration::minutes(5);
        let cases = [
            (
                OrderStatus::Paid,
                true,
                Payment::Unasked,
                "Paid. Your access link",
            ),
            (
                OrderStatus::PendingPayment,
                false,
                Payment::Confirming,
                "Payment received, confirming it",
            ),
            (
                OrderStatus::PendingPayment,
                false,
                Payment::NotPaid,
                "Not paid — your seats are held until",
            ),
            (
                OrderStatus::PendingPayment,
                false,
                Payment::Unasked,
                "Not paid yet, or your payment is still being confirmed",
            ),
            (
                OrderStatus::Refunded,
                true,
                Payment::Unasked,
                "refunded in full",
            ),
            (
                OrderStatus::PartiallyRefunded,
                true,
                Payment::Unasked,
                "Part of this order",
            ),
            (
                OrderStatus::Cancelled,
                false,
                Payment::Unasked,
                "Nothing was charged.",
            ),
            (
                OrderStatus::Cancelled,
                true,
                Payment::Unasked,
                "This order was cancelled.",
            ),
        ];
        for (status, ever_paid, payment, banner) in cases {
            o.status = status;
            o.ever_paid = ever_paid;
            o.payment = payment;
            o.held_until = soon;
            let html = order(&o);
            assert!(html.contains(banner), "{status:?}: {html}");
            let waiting = status == OrderStatus::PendingPayment && payment != Payment::NotPaid;
            assert_eq!(
                html.contains(r#"<meta http-equiv="refresh" content="3">"#),
                waiting,
                "{status:?} {payment:?}: refreshes only while news may come"
            );
            assert!(!html.contains("Waiting for your payment"), "{html}");
            assert_eq!(
                html.contains(">Try again</a>"),
                payment == Payment::NotPaid,
                "{status:?} {payment:?}"
            );
            assert!(html.contains(
                r#"<td class="ticket">FG-AAAA-BBBB-CC</td><td>Ada</td><td class="num">Valid</td>"#
            ));
        }
        // Not paid and the seats already gone: no "held until" in the past.
        o.status = OrderStatus::PendingPayment;
        o.payment = Payment::NotPaid;
        o.held_until = Utc::now() - chrono::Duration::minutes(1);
        let html = order(&o);
        assert!(html.contains("the time to pay has run out"), "{html}");
        assert!(!html.contains("held until"), "{html}");
    }
}
