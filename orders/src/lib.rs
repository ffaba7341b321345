//! Orders: the truth about events, inventory and money, in Postgres.
//!
//! `orders` owns the schema (migrations live in `infra/migrations`, applied at
//! start-up), the event catalogue with its tiers and their `sold + held <= capacity`
//! guarantee, and the buyer-facing API and pages behind the gateway. Holds, payments,
//! refunds, tickets, the audit trail and the outbox to NATS join it as that work lands.
//! The console reuses this crate's event functions rather than its own SQL, so there is
//! one place that writes an event.
//!
//! Layout:
//! - [`config`]: settings read once from the environment.
//! - [`db`]: the pool and the migrations.
//! - [`events`]: events and tiers — parsing a new event, creating, reading, admission.
//! - [`app`]: the axum router (API, pages, probes).
//! - [`pages`]: buyer HTML pages.
//! - [`telemetry`]: HTTP metrics (also used by the console).
//! - [`error`]: the crate's error enum and its mapping to the API error shape.

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod pages;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::Error;
