//! Orders: the truth about events, inventory and money, in Postgres.
//!
//! `orders` owns the schema (migrations live in `infra/migrations`, applied at
//! start-up) and everything about inventory and money: the event catalogue and its
//! tiers with their `sold + held <= capacity` guarantee, holds (group-committed per
//! tier), orders and checkout, payments through a provider, settlement of webhooks and
//! reconciliation, refunds, tickets, the order audit trail (`order_events`), the
//! transactional outbox relayed to NATS JetStream, and the buyer API and pages behind
//! the gateway. The console reuses this crate's functions rather than its own SQL, so
//! one place writes each table. What every process shares (env, pool and migrations,
//! listener, probes, metrics) is `platform`'s; what travels on NATS is `contract`'s.
//!
//! Layout:
//! - [`config`]: settings read once from the environment.
//! - [`events`]: events and tiers — parsing a new event, creating, reading, admission.
//! - [`buyers`]: validated buyer input (`Email`, `BuyerName`).
//! - [`catalog`]: a one-second cache of event definitions for the hot path.
//! - [`holds`]: the per-tier batching hold writer, release, the expiry sweep.
//! - [`checkout`]: hold → order → payment intent; order tokens.
//! - [`corrections`]: operator fixes (refund, email correction, resend) as domain steps.
//! - [`payments`]: the `PaymentProvider` trait and the Stripe-API client.
//! - [`webhooks`]: signature verification and the provider event shape.
//! - [`settlement`]: applying payment news exactly once (paid, refund-after-expiry).
//! - [`jobs`]: refunds to send, reconciliation, the background workers.
//! - [`admissions`]: ending admissions and following sell-outs in the waiting room.
//! - [`outbox`]: writing outbox rows and relaying them to JetStream.
//! - [`app`]: the axum router (API, pages, probes).
//! - [`startup`]: building and running the service, for the binary, tests and benches.
//! - [`pages`]: buyer HTML pages.
//! - [`dead_ends`]: what a buyer page says when it cannot go on, and the one thing to do.
//! - [`error`]: the crate's error enum and its mapping to the API error shape.

pub mod admissions;
pub mod app;
pub mod buyers;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod corrections;
pub mod dead_ends;
pub mod error;
pub mod events;
pub mod holds;
pub mod jobs;
pub mod outbox;
pub mod pages;
pub mod payments;
pub mod settlement;
pub mod startup;
pub mod webhooks;

pub use error::Error;
