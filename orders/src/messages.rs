//! The messages orders publishes to NATS JetStream, as types every consumer imports.
//!
//! Subjects are relative (`orders.paid`); the relay prefixes them with the
//! deployment's subject prefix (`FLOODGATE_NATS_PREFIX`, default `fg`) so tests and
//! deployments can share a server without seeing each other's messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ORDER_PAID: &str = "orders.paid";
pub const ORDER_REFUNDED: &str = "orders.refunded";

/// An order was paid and its tickets exist: fulfilment sends the access links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub event_slug: String,
    pub buyer_email: String,
    pub buyer_name: String,
    pub amount_cents: i64,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    pub tickets: Vec<TicketIssued>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketIssued {
    pub ticket_id: Uuid,
    pub code: String,
    pub tier_code: String,
    pub holder_email: String,
    pub holder_name: String,
}

/// Money went (or is going) back to a buyer: fulfilment tells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded {
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub refund_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    /// Why, in words for the buyer's email (e.g. "seats_gone_after_hold_expired").
    pub reason: String,
    pub full: bool,
    pub buyer_email: String,
    pub buyer_name: String,
}

pub const ORDER_EMAIL_CHANGED: &str = "orders.email_changed";
pub const ORDER_RESEND: &str = "orders.resend_requested";

/// An operator corrected the buyer's address: the old links stop, new ones go to the new
/// address, and the old address is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChanged {
    pub order_id: Uuid,
    pub change_id: Uuid,
    pub old_email: String,
    pub new_email: String,
}

/// An operator asked for the confirmation to be sent again, with the current links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResendRequested {
    pub order_id: Uuid,
    pub request_id: Uuid,
}

pub const TICKET_TRANSFERRED: &str = "tickets.transferred";
pub const EVENT_RESCHEDULED: &str = "events.rescheduled";

/// A ticket changed hands: the old link stops, the new holder gets their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTransferred {
    pub order_id: Uuid,
    pub old_ticket_id: Uuid,
    pub new_ticket_id: Uuid,
    pub from_email: String,
    pub to_email: String,
    pub to_name: String,
}

/// The event moved: every holder gets a new invite, reminders follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRescheduled {
    pub event_id: Uuid,
    pub old_starts_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}
