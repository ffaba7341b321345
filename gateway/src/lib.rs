//! The edge: Floodgate's one public port, a Pingora proxy that meters the crowd.
//!
//! `gateway` owns what happens before a request reaches a service: it answers the
//! waiting room itself (`/queue/{event}` page, `join`, `status`) from a short-lived
//! in-memory snapshot of each event's queue so that status polls cost no Redis round
//! trip, checks admission tokens on the protected paths (`/e/{event}`,
//! `/api/events/{event}/...`) with only the public key, limits per-IP request rates,
//! and proxies everything else to health-checked upstreams (orders, console).
//!
//! Layout:
//! - [`config`]: settings read once from the environment.
//! - [`routes`]: what a path is (queue page, join, status, protected, proxied, probe).
//! - [`snapshots`]: the per-event queue snapshot cache and its refresher.
//! - [`waiting`]: join, status and the waiting page, as plain request → reply logic.
//! - [`arrivals`]: joins gathered into one Redis call per round trip.
//! - [`lottery`]: the public pre-queue draw, read from Redis at most once a second.
//! - [`guard`]: the admission check on protected paths.
//! - [`limits`]: per-client rate limits (an IPv4 address, an IPv6 /64) and the client
//!   address behind trusted proxies.
//! - [`reply`]: the small response type the edge logic produces, and cookies.
//! - [`page`]: the waiting-room HTML.
//! - [`verified`]: queue tokens already verified, so a poll skips the signature check.
//! - [`telemetry`]: Prometheus metrics, served on their own listener.
//! - [`proxy`]: the Pingora `ProxyHttp` that wires it all to the network.

pub mod arrivals;
pub mod config;
mod error;
pub mod guard;
pub mod limits;
pub mod lottery;
pub mod page;
pub mod proxy;
pub mod reply;
pub mod routes;
pub mod snapshots;
pub mod telemetry;
pub mod verified;
pub mod waiting;

pub use error::EdgeError;
