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
//! - [`auth`]: roles, operator tokens, the `Operator` extractor and the pages' ones
//!   (`SignedIn`, whose refusal is the sign-in page; `CsrfForm`, a form with its token
//!   checked); who may see an event.
//! - [`audit`]: writing audit rows inside the change's own transaction.
//! - [`events`]: creating and listing events.
//! - [`sessions`]: operator accounts (argon2id), invitations, sessions, login throttling.
//! - [`people`]: the admin's People page: invite by email, role, a host's events.
//! - [`search`]: the one search box over buyers, orders, tickets and payments, and why
//!   each hit matched.
//! - [`labels`]: states as the pages say them ("Waiting for payment").
//! - [`privacy`]: whose addresses an operator sees in full, and the mask hosts see
//!   (`j•••@example.org`); every view that shows an address goes through it.
//! - [`support`]: an order's whole timeline and the fixes (refund, resend, email).
//! - [`fixes`]: each fix's name in the audit trail; running one once per key, audited.
//! - [`timeline`]: each row of an order's timeline as a sentence.
//! - [`moment`]: how every page shows a time (the event's zone, UTC on hover) and how
//!   forms read one.
//! - [`html`]: the templates every page is rendered from (auto-escaped, one layout).
//! - [`pages`]: the server-rendered back office.
//! - [`event_pages`]: the event list and an event's page with its event-wide fixes.
//! - [`roster`]: an event's orders and attendees, a page at a time or as CSV (audited),
//!   and the money it took.
//! - [`csv`]: CSV cells quoted as RFC 4180 says, with no formulas in them.
//! - [`event_setup`]: the form that creates an event.
//! - [`admission`]: reading and changing live admission settings; the Redis mirror.
//! - [`live`]: the live control room's feed (one snapshot a second per watched event, shared
//!   by every viewer over SSE), the audit list, and the figures as Prometheus metrics.
//! - [`control_room`]: the control room page (charts, controls, funnel) and its assets.
//! - [`app`]: the router and shared state.
//! - [`startup`]: building and running the console, for the binary, tests and the bench.
//! - [`error`]: the crate's error enum and its mapping to the API error shape.

pub mod admission;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod control_room;
pub mod csv;
pub mod error;
pub mod event_pages;
pub mod event_setup;
pub mod events;
pub mod fixes;
pub mod html;
pub mod labels;
pub mod live;
pub mod moment;
pub mod pages;
pub mod people;
pub mod privacy;
pub mod roster;
pub mod search;
pub mod sessions;
pub mod startup;
pub mod support;
pub mod timeline;

pub use error::ConsoleError;
