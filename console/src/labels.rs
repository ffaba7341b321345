//! States as the pages say them to people: "Waiting for payment", not
//! `pending_payment`. The JSON API keeps the stored words (`contract::states`), which
//! programs compare; these are only ever read.

use contract::states::OrderStatus;

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
}
