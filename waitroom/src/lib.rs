//! The waiting room: a fair, Redis-backed virtual queue and the signed tokens it issues.
//!
//! `waitroom` owns everything about an event's crowd before anyone may touch inventory:
//! the arrival counter and admission pointer in Redis, the live admission settings an
//! operator tunes, the pre-queue lottery that orders early arrivals fairly and
//! verifiably, the single admitter (a Redis lease) that advances the pointer at the
//! configured rate, and the signed queue (HMAC) and admission (EdDSA) tokens that carry a
//! visitor's place and permission. The gateway uses it at the edge; `orders` uses only
//! the token verifier; the console uses the settings.
//!
//! Layout:
//! - [`event`]: the event slug newtype every key and token is scoped by.
//! - [`keys`]: Redis key names, all hash-tagged `{event}` so one event is one cluster slot.
//! - [`settings`]: admission mode, rate, max active, token TTL; read and written atomically.
//! - [`queue`]: join, status snapshots, claiming an admission slot, finishing.
//! - [`estimate`]: the wait a visitor is shown, as a range.
//! - [`recovery`]: marks of live queues and restoring one Redis has lost.
//! - [`figures`]: the crowd's figures for the console's live control room, read atomically.
//! - [`admission`]: the admitter loop and its lease.
//! - [`lottery`]: the auditable pre-queue shuffle (commit, reveal, recompute).
//! - [`tokens`]: signing and verifying queue and admission tokens.
//! - [`config`]: process settings read once from the environment.
//! - [`health`]: the admitter's `/healthz`, `/readyz` and `/metrics`.
//! - [`testing`] (feature `testing`): a waiting room under a fresh prefix, for tests.

pub mod admission;
pub mod config;
mod error;
pub mod estimate;
pub mod event;
pub mod figures;
pub mod health;
pub mod keys;
pub mod lottery;
pub mod queue;
pub mod recovery;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;

pub use error::Error;
pub use event::EventSlug;
