//! Closing the loop with the waiting room. A paid order ends its admission (freeing a
//! `max_active` slot). A released or expired hold does not: its admission may hold
//! again until it expires, so its slot is still taken (freeing it on every release let
//! one buyer release and re-hold while the queue admitted others into "their" slot,
//! and `active` ran past `max_active`); it lapses by its deadline. When no seat is left in any tier
//! the event's queue goes `sold_out`, so the people still waiting hear it at once
//! instead of queueing for nothing, and when seats come back it reopens.
//!
//! These are best-effort follow-ups to committed changes: if Redis is briefly away,
//! slots lapse by their deadline anyway and the next change re-checks the sell-out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::settings::Mode;

use crate::Error;
use crate::app::AppState;
use crate::holds::ClosedHold;

/// Debounces sell-out checks: when hundreds of buyers hit `sold_out` in the same
/// second, one check per event per half second is plenty.
#[derive(Clone, Default)]
pub struct SellOutChecks(Arc<Mutex<HashMap<Uuid, Instant>>>);

impl SellOutChecks {
    pub fn due(&self, event_id: Uuid) -> bool {
        let mut last = self.0.lock().expect("sell-out lock");
        let now = Instant::now();
        match last.get(&event_id) {
            Some(t) if now.duration_since(*t) < Duration::from_millis(500) => false,
            _ => {
                last.insert(event_id, now);
                true
            }
        }
    }
}

async fn slug_of(s: &AppState, event_id: Uuid) -> Result<EventSlug, Error> {
    let slug = sqlx::query_scalar!("SELECT slug FROM events WHERE id = $1", event_id)
        .fetch_one(&s.db)
        .await?;
    EventSlug::parse(&slug).map_err(|e| Error::Invalid(e.to_string()))
}

fn redis(e: waitroom::Error) -> Error {
    tracing::warn!(error = %e, "waiting room unreachable");
    Error::Unavailable("the waiting room")
}

/// A hold was released or expired: its seats are back (its admission goes on).
pub async fn hold_closed(s: &AppState, hold: &ClosedHold) -> Result<(), Error> {
    let slug = slug_of(s, hold.event_id).await?;
    sync_sold_out(s, hold.event_id, &slug).await
}

/// An order was paid: its admission is spent.
pub async fn order_paid(s: &AppState, order_id: Uuid) -> Result<(), Error> {
    let row = sqlx::query!(
        r#"SELECT o.event_id, h.admission_seq FROM orders o JOIN holds h ON h.id = o.hold_id
           WHERE o.id = $1"#,
        order_id
    )
    .fetch_one(&s.db)
    .await?;
    let slug = slug_of(s, row.event_id).await?;
    if let Some(seq) = row.admission_seq {
        s.room.finish(&slug, seq as u64).await.map_err(redis)?;
    }
    sync_sold_out(s, row.event_id, &slug).await
}

/// Sets the queue to `sold_out` when no tier has a seat left, and back to `on` when
/// one has again (only if it was this rule, not an operator, that closed it — an
/// operator's `closed` or `paused` is left alone).
pub async fn sync_sold_out(s: &AppState, event_id: Uuid, slug: &EventSlug) -> Result<(), Error> {
    let none_left = sqlx::query_scalar!(
        r#"SELECT COALESCE(bool_and(sold + held >= capacity), true) AS "none_left!"
           FROM tiers WHERE event_id = $1"#,
        event_id
    )
    .fetch_one(&s.db)
    .await?;
    let Some(live) = s.room.settings(slug).await.map_err(redis)? else {
        return Ok(());
    };
    let next = match (live.mode, none_left) {
        (Mode::On, true) => Mode::SoldOut,
        (Mode::SoldOut, false) => Mode::On,
        _ => return Ok(()),
    };
    // Only the mode, and only if nobody changed it since it was read: an operator's
    // pause or new rate in between stays as they set it.
    if s.room
        .switch_mode(slug, live.mode, next)
        .await
        .map_err(redis)?
    {
        tracing::info!(event = %slug, mode = %next, "queue follows inventory");
    }
    Ok(())
}
