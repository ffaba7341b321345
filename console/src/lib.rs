//! The console: where operators create events and steer the on-sale, and (as that work
//! lands) find buyers and fix their orders.
//!
//! `console` owns operator identity (API tokens with a role, later sessions), the
//! operator audit trail, and the operator API under `/console/api`. It writes events
//! through `orders`' event functions (one place writes an event) and mirrors each
//! event's admission settings into the waiting room's Redis state, where every gateway
//! and the admitter pick them up within a second. Postgres is the record of what the
//! operator configured; if Redis loses an event, the console restores it *paused*, so a
//! lost queue never admits anyone by accident.
//!
//! Layout:
//! - [`config`]: settings read once from the environment.
//! - [`auth`]: roles, operator tokens, the `Operator` extractor.
//! - [`audit`]: writing audit rows inside the change's own transaction.
//! - [`events`]: creating and listing events.
//! - [`admission`]: reading and changing live admission settings; the Redis mirror.
//! - [`app`]: the router and shared state.
//! - [`error`]: the crate's error enum and its mapping to the API error shape.

pub mod admission;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;

pub use error::ConsoleError;
