//! States as the pages say them to people: "Waiting for payment", not
//! `pending_payment`. The JSON API keeps the stored words (`contract::states`), which
//! programs compare; these are only ever read.

use contract::states::{OrderStatus, TicketStatus};

/// An order's state in words.
pub fn order_status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::PendingPayment => "Waiting for payment",
        OrderStatus::Paid => "Paid",
        OrderStatus::PartiallyRefunded => "Partly refunded",
        OrderStatus::Refunded => "Refunded",
        OrderStatus::Cancelled => "Cancelled",
    }
}

/// A ticket's state in words.
pub fn ticket_status(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::Valid => "Valid",
        TicketStatus::Transferred => "Given to someone else",
        TicketStatus::Revoked => "Cancelled",
        TicketStatus::Refunded => "Refunded",
    }
}

/// Why a ticket's link refused a visit, in a few words ("too early", not `too_early`).
pub fn visit_refusal(outcome: &str) -> String {
    match outcome {
        "too_early" => "too early".into(),
        "ended" => "after the end".into(),
        "replaced" => "old link".into(),
        "transferred" => "ticket given to someone else".into(),
        "refunded" => "ticket refunded".into(),
        "revoked" => "order cancelled".into(),
        "event_cancelled" => "event cancelled".into(),
        "unknown" => "unknown link".into(),
        // An outcome newer than this list still reads as words.
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_state_reads_as_words() {
        for s in OrderStatus::ALL {
            let words = order_status(*s);
            assert!(!words.contains('_'), "{words}");
            assert!(words.starts_with(char::is_uppercase), "{words}");
        }
    }

    #[test]
    fn every_ticket_state_reads_as_words() {
        for s in TicketStatus::ALL {
            let words = ticket_status(*s);
            assert!(!words.contains('_'), "{words}");
            assert!(words.starts_with(char::is_uppercase), "{words}");
        }
    }

    #[test]
    fn every_refused_visit_reads_as_words_even_one_not_listed_yet() {
        for outcome in [
            "too_early",
            "ended",
            "replaced",
            "transferred",
            "refunded",
            "revoked",
            "event_cancelled",
            "unknown",
            "some_new_outcome",
        ] {
            let words = visit_refusal(outcome);
            assert!(!words.contains('_'), "{outcome}: {words}");
        }
        assert_eq!(visit_refusal("too_early"), "too early");
    }
}
