//! Platform: what every Floodgate process shares and no domain owns.
//!
//! Before this crate the shared kernel lived inside `orders` (the money domain), so the
//! console, fulfilment and the sandbox linked the holds writer and the payments client
//! to get a pool, a listener and a `Secret`, and the gateway, the admitter and the
//! sandbox carried copies of their own. Each module here has one job; none knows about
//! events, orders or queues.
//!
//! Layout:
//! - [`env`]: settings from the environment — `var`, `parse`, `secret` (or `NAME_FILE`),
//!   the never-printing [`env::Secret`] and [`env::ConfigError`].
//! - [`blocking`]: async clean-up from a `Drop`, on a thread and runtime of its own.
//! - [`shutdown`]: the one shutdown signal (ctrl-c or SIGTERM), and the [`shutdown::Shutdown`]
//!   handle a process gives its server and every long-running task.
//! - [`logs`]: tracing set-up, the same in every binary.
//! - [`html`]: the minijinja environment every page is rendered with (`.html` escapes
//!   what it prints), the buyer pages' one layout, and escaping.
//! - [`db`] (feature `db`): the Postgres pool and the migrations every service applies.
//! - [`listener`] (feature `http`): the listening socket with a deep accept queue.
//! - [`json`] (feature `http`): request bodies read as their JSON Schema describes them.
//! - [`metrics`] (feature `http`): per-route HTTP metrics in the service's own registry.
//! - [`registry`] (feature `registry`): Prometheus metrics registered as they are made.
//! - [`probes`] (feature `http`): `/healthz`, `/readyz` and `/metrics` for axum services.
//! - [`poll`] (feature `poll`): waiting in tests for what happens on its own schedule.
//! - [`testing`] (feature `testing`): a fresh, migrated database per test.

pub mod blocking;
#[cfg(feature = "db")]
pub mod db;
pub mod env;
pub mod html;
#[cfg(feature = "http")]
pub mod json;
#[cfg(feature = "http")]
pub mod listener;
pub mod logs;
#[cfg(feature = "http")]
pub mod metrics;
#[cfg(feature = "poll")]
pub mod poll;
#[cfg(feature = "http")]
pub mod probes;
#[cfg(feature = "registry")]
pub mod registry;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;
