//! Contract: what the services agree on — what travels on NATS JetStream, and the
//! states rows of the shared schema are in — as types every side imports.
//!
//! Orders writes these to its outbox and the relay publishes them; fulfilment (and any
//! later consumer) decodes them. Each payload type names its own subject through
//! [`Message`], so a producer cannot file a payload under another's subject and a
//! consumer cannot decode a subject as the wrong type: [`Incoming::decode`] is the one
//! place a subject becomes a type.
//!
//! Subjects are relative (`orders.paid`); the relay prefixes them with the deployment's
//! subject prefix (`FLOODGATE_NATS_PREFIX`, default `fg`) so tests and deployments can
//! share a server without seeing each other's messages.
//!
//! Layout: the message types and their subjects are here; [`stream`] is the JetStream
//! stream they travel on, shared by the relay and the consumer, with its typed errors;
//! [`states`] the states of holds, orders, tickets, events, refunds and deliveries;
//! [`order_link`] the buyer's link to their order page, made by orders and fulfilment;
//! [`calendar`] the calendar entries both hand out, one per ticket under one UID.

pub mod calendar;
pub mod order_link;
pub mod states;
pub mod stream;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// A payload type and the subject it travels under.
pub trait Message: Serialize + DeserializeOwned {
    /// The relative subject (`orders.paid`).
    const SUBJECT: &'static str;
}

impl Message for OrderPaid {
    const SUBJECT: &'static str = "orders.paid";
}

impl Message for OrderRefunded {
    const SUBJECT: &'static str = "orders.refunded";
}

impl Message for EmailChanged {
    const SUBJECT: &'static str = "orders.email_changed";
}

impl Message for ResendRequested {
    const SUBJECT: &'static str = "orders.resend_requested";
}

impl Message for TicketTransferred {
    const SUBJECT: &'static str = "tickets.transferred";
}

impl Message for EventRescheduled {
    const SUBJECT: &'static str = "events.rescheduled";
}

/// Any message of the contract, decoded from its relative subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    OrderPaid(OrderPaid),
    OrderRefunded(OrderRefunded),
    EmailChanged(EmailChanged),
    ResendRequested(ResendRequested),
    TicketTransferred(TicketTransferred),
    EventRescheduled(EventRescheduled),
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A subject this contract does not define (a newer producer, a stray publish).
    #[error("no message is defined for subject {0:?}")]
    UnknownSubject(String),
    /// The payload does not match its subject's type: a poison message.
    #[error("{subject}: {source}")]
    Malformed {
        subject: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Incoming {
    /// Reads a payload by its relative subject.
    pub fn decode(subject: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        fn read<M: Message>(payload: &[u8]) -> Result<M, DecodeError> {
            serde_json::from_slice(payload).map_err(|source| DecodeError::Malformed {
                subject: M::SUBJECT,
                source,
            })
        }
        Ok(match subject {
            OrderPaid::SUBJECT => Self::OrderPaid(read(payload)?),
            OrderRefunded::SUBJECT => Self::OrderRefunded(read(payload)?),
            EmailChanged::SUBJECT => Self::EmailChanged(read(payload)?),
            ResendRequested::SUBJECT => Self::ResendRequested(read(payload)?),
            TicketTransferred::SUBJECT => Self::TicketTransferred(read(payload)?),
            EventRescheduled::SUBJECT => Self::EventRescheduled(read(payload)?),
            other => return Err(DecodeError::UnknownSubject(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message decodes as itself under its own subject, and as nothing else.
    #[test]
    fn a_subject_decodes_only_its_own_type() {
        let m = ResendRequested {
            order_id: Uuid::nil(),
            request_id: Uuid::nil(),
        };
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(
            Incoming::decode(ResendRequested::SUBJECT, &json).unwrap(),
            Incoming::ResendRequested(m)
        );
        assert!(matches!(
            Incoming::decode(OrderPaid::SUBJECT, &json),
            Err(DecodeError::Malformed {
                subject: "orders.paid",
                ..
            })
        ));
        assert!(matches!(
            Incoming::decode("orders.nonsense", &json),
            Err(DecodeError::UnknownSubject(_))
        ));
    }

    #[test]
    fn subjects_are_distinct() {
        let mut all = [
            OrderPaid::SUBJECT,
            OrderRefunded::SUBJECT,
            EmailChanged::SUBJECT,
            ResendRequested::SUBJECT,
            TicketTransferred::SUBJECT,
            EventRescheduled::SUBJECT,
        ];
        all.sort_unstable();
        let n = all.len();
        let mut unique = all.to_vec();
        unique.dedup();
        assert_eq!(unique.len(), n);
    }
}
