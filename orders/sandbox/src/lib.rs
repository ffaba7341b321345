//! Sandbox: a local payment provider that speaks a Stripe-shaped HTTP API, so that
//! Floodgate's payment code can be developed and tested against a real process that
//! misbehaves on request.
//!
//! It owns, in memory, payment intents, their charges, refunds and the
//! `Idempotency-Key` record; it signs webhook events the way Stripe does
//! (`Stripe-Signature: t=...,v1=HMAC-SHA256`) and delivers them with retries; it
//! serves a hosted payment page so a buyer can pay in a browser with test cards; and
//! it has fault knobs (latency, declines, "charged but the response never came",
//! delayed, duplicated, reordered and dropped webhooks) set from the environment and
//! changeable at run time. It is a test double, but a faithful one: where Stripe
//! refuses something (an unknown parameter, a reused idempotency key, a second
//! confirm), so does the sandbox, so a mistake fails here rather than in production.
//! With `SANDBOX_STATE_FILE` set its books survive a restart (a journal); without it
//! nothing does.
//!
//! Layout:
//! - [`config`]: settings read once from the environment; secrets that never print.
//! - [`faults`]: the fault knobs and their probabilities.
//! - [`params`]: request parameters, form-encoded or JSON, flattened to one shape.
//! - [`objects`]: payment intents, charges and refunds, the checked values inside
//!   them (amount, currency, return URL) and their JSON.
//! - [`cards`]: test payment methods and card numbers and what each one does.
//! - [`ledger`]: the books: the operations on intents and refunds, and idempotency.
//! - [`journal`]: the books on disk, so a killed sandbox forgets no charge.
//! - [`webhooks`]: events, their signature ([`sign`]) and their delivery.
//! - [`api`]: the `/v1` routes, the API-key check and the latency and timeout faults.
//! - [`admin`]: `/admin/faults` and `/admin/webhooks`.
//! - [`page`]: the hosted payment page, `/pay/{intent_id}`.
//! - [`metrics`]: the Prometheus counters, in a registry owned by the state.
//! - [`app`](mod@app): [`Sandbox`], the shared state and its operations, and the router.
//! - [`error`]: the crate's error enum and its mapping to Stripe's error shape.

pub mod admin;
pub mod api;
pub mod app;
pub mod cards;
pub mod config;
pub mod error;
pub mod faults;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod objects;
pub mod page;
pub mod params;
pub mod webhooks;

pub use app::{Sandbox, app};
pub use config::{SandboxConfig, Secret};
pub use error::Error;
pub use faults::{Faults, Rate};
pub use webhooks::sign;
