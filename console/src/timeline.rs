//! An order's timeline in words. Each row (an order event, a payment event, an email,
//! a link visit, an operator's action) becomes one sentence an operator reads at a
//! glance — "Refund of EUR 20.00; order now partially refunded — reason: buyer asked" —
//! instead of the row's JSON. Absent fields are left out, never shown as `null`.
//! The JSON API carries the same sentence (`summary`) next to the raw fields.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::fixes::Fix;
use crate::moment::{self, Precision};

/// One row as read from the database.
pub struct Row<'a> {
    pub source: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    /// The operator's reason, from the audit row of the same change.
    pub reason: Option<&'a str>,
}

/// What the sentences need to know about the order.
pub struct Context<'a> {
    pub currency: &'a str,
    pub tz: Tz,
}

fn text<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a str> {
    v?.get(k)?.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn int(v: Option<&Value>, k: &str) -> Option<i64> {
    v?.get(k)?.as_i64()
}

fn flag(v: Option<&Value>, k: &str) -> Option<bool> {
    v?.get(k)?.as_bool()
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "order.email_change" → "Order email change".
fn humane(action: &str) -> String {
    let words = action.replace(['.', '_'], " ");
    let mut c = words.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The fields of an unfamiliar row as "key: value" pairs, nulls left out.
fn fields(v: Option<&Value>) -> String {
    let Some(Value::Object(map)) = v else {
        return String::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let shown = match v {
                Value::Null => return None,
                Value::String(s) if s.trim().is_empty() => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!("{}: {shown}", k.replace('_', " ")))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn email_kind(kind: &str) -> String {
    match kind {
        "confirmation" => "Confirmation".into(),
        "email_change" => "Address-change notice".into(),
        "transfer_notice" => "Transfer notice".into(),
        "refund_notice" => "Refund notice".into(),
        "reschedule_notice" => "New-time notice".into(),
        "reminder" => "Reminder".into(),
        other => humane(other),
    }
}

/// The row as one sentence (plain text; the page escapes it).
pub fn describe(r: &Row<'_>, cx: &Context<'_>) -> String {
    let money = |cents: i64| crate::pages::money(cents, cx.currency);
    let (before, after) = (r.before, r.after);
    let reason = r.reason.filter(|x| !x.trim().is_empty());
    let sentence = match (r.source, Fix::parse(r.action), r.action) {
        ("order", _, "hold.create") => {
            let seats = int(after, "quantity").map_or("Seats".into(), |q| {
                format!("{} reserved", plural(q, "seat", "seats"))
            });
            match text(after, "expires_at").and_then(|t| t.parse::<DateTime<Utc>>().ok()) {
                Some(until) => format!(
                    "{seats}, held until {}",
                    moment::text(until, cx.tz, Precision::Minute)
                ),
                None => seats,
            }
        }
        ("order", _, "hold.release") => match text(after, "reason") {
            Some("event_cancelled") => "Reservation released: the event was cancelled".into(),
            _ => "Reservation released by the buyer".into(),
        },
        ("order", _, "hold.expire") => "Reservation expired unpaid".into(),
        ("order", _, "order.create") => match int(after, "amount_cents") {
            Some(a) => format!("Order placed: {} to pay", money(a)),
            None => "Order placed".into(),
        },
        ("order", _, "order.paid") => match int(after, "tickets") {
            Some(n) => format!("Paid; {} issued", plural(n, "ticket", "tickets")),
            None => "Paid".into(),
        },
        ("order", _, "payment.failed") => match text(after, "reason") {
            Some(why) => format!("Payment failed: {}", why.replace('_', " ")),
            None => "Payment failed".into(),
        },
        ("order", _, "payment.refund_confirmed") => match int(after, "amount_refunded") {
            Some(a) => format!(
                "The payment provider confirmed the refund ({} refunded in all)",
                money(a)
            ),
            None => "The payment provider confirmed the refund".into(),
        },
        ("order", _, "order.refund_seats_gone") => {
            "Paid after the reservation had lapsed and the seats were gone: refunded automatically"
                .into()
        }
        ("order", Some(Fix::Refund), _) => {
            let mut s = match int(after, "amount_cents") {
                Some(a) => format!("Refund of {}", money(a)),
                None => "Refund".into(),
            };
            if flag(after, "inside_policy") == Some(false) {
                s.push_str(", outside the refund policy");
            }
            match text(after, "status") {
                Some("refunded") => s.push_str("; order now refunded in full"),
                Some("partially_refunded") => s.push_str("; order now partially refunded"),
                _ => {}
            }
            // The refund's own reason is the one the operator typed.
            return with_reason(s, text(after, "reason").or(reason));
        }
        ("order", Some(Fix::ChangeEmail), _) => match (text(before, "email"), text(after, "email"))
        {
            (Some(old), Some(new)) => format!("Email changed {old} → {new}"),
            (None, Some(new)) => format!("Email changed to {new}"),
            _ => "Email changed".into(),
        },
        ("order", Some(Fix::Resend), _) => "Confirmation resent with the current links".into(),
        ("order", Some(Fix::Transfer), _) => {
            match (text(before, "holder"), text(after, "holder")) {
                (Some(old), Some(new)) => format!("Ticket transferred {old} → {new}"),
                (None, Some(new)) => format!("Ticket transferred to {new}"),
                _ => "Ticket transferred".into(),
            }
        }
        // Unpaid orders cancelled by the system carry a machine reason: say it in words.
        ("order", Some(Fix::CancelOrder), _) => match text(after, "reason") {
            Some("hold_released") => {
                "Checkout cancelled unpaid: the buyer gave the seats up; payment page closed".into()
            }
            Some("hold_expired") => {
                "Checkout cancelled unpaid: the reservation expired; payment page closed".into()
            }
            Some("event_cancelled") => {
                "Checkout cancelled unpaid: the event was cancelled; payment page closed".into()
            }
            other => return with_reason("Order cancelled".into(), other.or(reason)),
        },
        ("order", _, "order.refund_late_payment") => {
            let why = match text(after, "reason") {
                Some("event_cancelled") => "the event had been cancelled",
                Some("cancelled_before_payment") => "the seats had been given up",
                Some("admission_used_elsewhere") => {
                    "the same queue place had reserved or bought other seats"
                }
                _ => "the order could not be honoured",
            };
            format!("Paid after {why}: refunded automatically")
        }
        ("order", _, "payment.intent_cancelled") => {
            "Payment cancelled at the provider: its page takes no card".into()
        }
        ("payment", _, kind) => {
            let what = match kind {
                "payment_intent.succeeded" => "Payment succeeded".into(),
                "payment_intent.payment_failed" => "Payment declined".into(),
                "charge.refunded" => "Refund paid out".into(),
                other => humane(other),
            };
            match text(after, "event") {
                Some(id) => format!("{what} (provider event {id})"),
                None => what,
            }
        }
        ("email", _, action) => {
            let (kind, status) = action.rsplit_once('.').unwrap_or((action, ""));
            let label = email_kind(kind);
            let to = text(after, "to").unwrap_or("the buyer");
            let attempts = int(after, "attempts").unwrap_or(0);
            let error = text(after, "error");
            match status {
                "sent" if attempts > 1 => {
                    format!("{label} sent to {to} after {attempts} attempts")
                }
                "sent" => format!("{label} sent to {to}"),
                "queued" => match (attempts, error) {
                    (n, Some(e)) if n > 0 => format!(
                        "{label} to {to} waiting to be retried ({} so far: {e})",
                        plural(n, "attempt", "attempts")
                    ),
                    _ => format!("{label} to {to} queued"),
                },
                "failed" => format!(
                    "{label} to {to} failed after {}{}",
                    plural(attempts, "attempt", "attempts"),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
                "bounced" => format!(
                    "{label} to {to} bounced{}",
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
                other => format!("{label} to {to}: {}", other.replace('_', " ")),
            }
        }
        ("link", _, outcome) => {
            let ticket = text(after, "ticket")
                .map(|c| format!("Ticket {c}: "))
                .unwrap_or_default();
            let what = match outcome {
                "entered" => "link opened; let in to the event",
                "too_early" => "link opened too early (it opens 1 h before the start)",
                "ended" => "link opened after the event had ended",
                "replaced" => "an old link was opened (it was replaced by a newer one)",
                "transferred" => "the link of a transferred ticket was opened",
                "refunded" => "the link of a refunded ticket was opened",
                "revoked" => "a revoked link was opened",
                "event_cancelled" => "link opened; the event is cancelled",
                "unknown" => "an unknown link was opened",
                other => return format!("{ticket}link opened: {}", other.replace('_', " ")),
            };
            let mut s = format!("{ticket}{what}");
            if ticket.is_empty() {
                s = humane(&s);
            }
            s
        }
        ("operator", _, action) if action.ends_with(".refused") => {
            let refused = action.trim_end_matches(".refused");
            let what = match Fix::parse(refused) {
                Some(Fix::Refund) => "Refund".to_owned(),
                Some(Fix::CancelOrder) => "Cancellation".to_owned(),
                _ => humane(refused),
            };
            let amount = int(after, "amount_cents")
                .map(|a| format!(" of {}", money(a)))
                .unwrap_or_default();
            let why = text(after, "message")
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!("{what}{amount} refused{why}")
        }
        (_, _, action) => {
            let details = fields(after);
            if details.is_empty() {
                humane(action)
            } else {
                format!("{}: {details}", humane(action))
            }
        }
    };
    with_reason(sentence, reason)
}

fn with_reason(s: String, reason: Option<&str>) -> String {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{s} — reason: {r}"),
        None => s,
    }
}

/// Who did it, in words: "Olga (operator)", "payment provider (webhook)", "browser (firefox)".
pub fn who(source: &str, actor: &str) -> String {
    if source == "link" {
        return match actor {
            "?" | "" => "a browser".into(),
            client => format!("browser ({client})"),
        };
    }
    match actor.split_once(':') {
        Some((role @ ("admin" | "operator" | "host"), name)) => format!("{name} ({role})"),
        Some(("provider", how)) => format!("payment provider ({how})"),
        Some(("system", what)) => format!("system ({what})"),
        _ => match actor {
            "fulfilment" => "mailer".into(),
            "sandbox" | "stripe" => format!("payment provider ({actor})"),
            other => other.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn say(
        source: &str,
        action: &str,
        before: Value,
        after: Value,
        reason: Option<&str>,
    ) -> String {
        let cx = Context {
            currency: "GBP",
            tz: crate::moment::zone("Europe/London"),
        };
        describe(
            &Row {
                source,
                action,
                actor: "operator:Olga",
                before: Some(&before),
                after: Some(&after),
                reason,
            },
            &cx,
        )
    }

    #[test]
    fn order_changes_read_as_sentences() {
        assert_eq!(
            say(
                "order",
                "order.refund",
                json!({"status": "paid"}),
                json!({"status": "partially_refunded", "amount_cents": 2000, "reason": "buyer asked", "inside_policy": true}),
                None
            ),
            "Refund of GBP 20.00; order now partially refunded — reason: buyer asked"
        );
        assert_eq!(
            say(
                "order",
                "order.refund",
                json!({}),
                json!({"status": "refunded", "amount_cents": 5000, "reason": "ill", "inside_policy": false}),
                Some("ill")
            ),
            "Refund of GBP 50.00, outside the refund policy; order now refunded in full — reason: ill"
        );
        assert_eq!(
            say(
                "order",
                "order.email_change",
                json!({"email": "a@x.org"}),
                json!({"email": "b@y.org"}),
                Some("typo")
            ),
            "Email changed a@x.org → b@y.org — reason: typo"
        );
        assert_eq!(
            say(
                "order",
                "hold.create",
                Value::Null,
                json!({"quantity": 2, "status": "active", "expires_at": "2026-11-24T11:01:00.35+00:00", "tier_id": "x"}),
                None
            ),
            "2 seats reserved, held until Tue 24 Nov 2026, 11:01 GMT"
        );
        assert_eq!(
            say(
                "order",
                "order.paid",
                json!({}),
                json!({"status": "paid", "tickets": 1, "hold": "active"}),
                None
            ),
            "Paid; 1 ticket issued"
        );
    }

    #[test]
    fn absent_fields_are_left_out_never_shown_as_null() {
        // A transfer with no reason given (the audit row's reason is NULL).
        let s = say(
            "order",
            "ticket.transfer",
            json!({"holder": "a@x.org", "ticket": "t1"}),
            json!({"holder": "c@z.org", "ticket": "t2"}),
            None,
        );
        assert_eq!(s, "Ticket transferred a@x.org → c@z.org");
        let s = say(
            "email",
            "confirmation.sent",
            Value::Null,
            json!({"to": "a@x.org", "attempts": 1, "error": null}),
            None,
        );
        assert_eq!(s, "Confirmation sent to a@x.org");
        let s = say(
            "order",
            "something.new",
            Value::Null,
            json!({"status": "odd", "note": null, "count": 3}),
            None,
        );
        assert_eq!(s, "Something new: count: 3, status: odd");
        assert!(!s.contains("null") && !s.contains('{'), "{s}");
    }

    #[test]
    fn deliveries_visits_and_refusals_read_as_sentences() {
        assert_eq!(
            say(
                "email",
                "confirmation.bounced",
                Value::Null,
                json!({"to": "a@x.org", "attempts": 1, "error": "550 no such user"}),
                None
            ),
            "Confirmation to a@x.org bounced: 550 no such user"
        );
        assert_eq!(
            say(
                "link",
                "too_early",
                Value::Null,
                json!({"ticket": "FG-1"}),
                None
            ),
            "Ticket FG-1: link opened too early (it opens 1 h before the start)"
        );
        assert_eq!(
            say(
                "operator",
                "order.refund.refused",
                Value::Null,
                json!({"error": "outside_refund_policy", "message": "this is outside the event's refund policy", "amount_cents": 5000}),
                Some("buyer is ill")
            ),
            "Refund of GBP 50.00 refused: this is outside the event's refund policy — reason: buyer is ill"
        );
        assert_eq!(
            say(
                "payment",
                "payment_intent.succeeded",
                Value::Null,
                json!({"event": "evt_1"}),
                None
            ),
            "Payment succeeded (provider event evt_1)"
        );
    }

    #[test]
    fn actors_read_as_people_and_systems() {
        assert_eq!(who("operator", "operator:Olga"), "Olga (operator)");
        assert_eq!(who("order", "admin:alice"), "alice (admin)");
        assert_eq!(
            who("order", "provider:webhook"),
            "payment provider (webhook)"
        );
        assert_eq!(who("email", "fulfilment"), "mailer");
        assert_eq!(who("link", "firefox"), "browser (firefox)");
        assert_eq!(who("order", "buyer"), "buyer");
    }
}
