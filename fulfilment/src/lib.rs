//! Fulfilment: every paid buyer ends up holding exactly one working access link.
//!
//! `fulfilment` owns what happens after the money: it consumes `orders.paid` and
//! `orders.refunded` from JetStream (durable pull consumer, explicit ack only after the
//! resulting delivery is recorded), issues each ticket's access link (a 256-bit token
//! derived from a secret and stored only as a hash), queues and sends the emails
//! (HTML + text + an RFC 5545 invite) through SMTP with retries, records every delivery
//! as sent, serves `/join/{token}` (redirect to the meeting inside the access window, a
//! clear page otherwise, each redemption recorded), runs reminders and a reconciler
//! from the shared jobs table, and ships a dev SMTP sink.
//!
//! Layout:
//! - [`config`]: settings read once from the environment.
//! - [`links`]: access-link tokens: derive, hash, issue, revoke, look up.
//! - [`meetings`]: the `MeetingProvider` trait; Jitsi, Zoom and Google Meet.
//! - the `.ics` invites are written by `contract::calendar` (orders serves them too).
//! - [`mail`]: templates (files under `templates/`, rendered with minijinja) and SMTP.
//! - [`deliveries`]: queueing emails once, the sender loop, retries, the reconciler.
//! - [`consumer`]: the JetStream consumer.
//! - [`reminders`]: T−24 h and T−1 h reminders as jobs, with an injectable clock.
//! - [`join`]: the `/join/{token}` pages.
//! - [`app`]: the router and shared state.
//! - [`startup`]: building and running the service, for the binary, tests and the bench.
//! - [`sink`]: the development SMTP sink (keeps what it receives).
//! - [`error`]: the crate's error enum.

pub mod app;
pub mod config;
pub mod consumer;
pub mod deliveries;
pub mod error;
pub mod join;
pub mod links;
pub mod mail;
pub mod meetings;
pub mod reminders;
pub mod sink;
pub mod startup;

pub use error::Error;
