//! The public pre-queue draw (`GET /queue/{event}/lottery`), served from memory.
//!
//! The record lists every entrant, so reading it is an `LRANGE` of the whole pre-queue
//! (hundreds of thousands of ids in a big on-sale) and its JSON is as large. Read per
//! request, anyone refreshing the page would be a Redis load of their choosing. So the
//! serialised body is kept per event and re-read at most once per [`REFRESH`] while
//! the draw is pending, once per [`SETTLED_REFRESH`] after it (the record no longer
//! changes then), and at once when the event's mode moves (the draw opens the queue).
//! Requests that find it stale wait for the one read under way instead of each making
//! their own. Callers pass the event's snapshot, so only events Redis knows get an
//! entry, and entries not read for [`FORGET_AFTER`] are dropped.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use waitroom::EventSlug;
use waitroom::queue::{Snapshot, Waitroom};
use waitroom::settings::Mode;

use crate::EdgeError;

/// How stale a pending draw's entrant list may be.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A revealed draw with the queue open does not change; re-read now and then anyway,
/// in case the event was reset.
const SETTLED_REFRESH: Duration = Duration::from_secs(60);
const FORGET_AFTER: Duration = Duration::from_secs(120);

struct Published {
    /// The JSON body; `None` when the event has no lottery.
    body: Option<Bytes>,
    revealed: bool,
    /// The event's mode when it was read.
    mode: Mode,
    read: Instant,
}

impl Published {
    fn fresh_for(&self, mode: Mode) -> bool {
        let settled = self.revealed && mode != Mode::Prequeue;
        let max_age = if settled { SETTLED_REFRESH } else { REFRESH };
        self.mode == mode && self.read.elapsed() < max_age
    }
}

pub struct Lotteries {
    room: Waitroom,
    published: RwLock<HashMap<EventSlug, Published>>,
    /// One Redis read at a time; lottery reads are rare, so one lock for all events.
    reading: tokio::sync::Mutex<()>,
}

impl Lotteries {
    pub fn new(room: Waitroom) -> Self {
        Self {
            room,
            published: RwLock::new(HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The record's JSON for an event Redis knows (`snapshot` is its current one).
    pub async fn get(&self, event: &EventSlug, snapshot: &Snapshot) -> Result<Bytes, EdgeError> {
        let mode = snapshot.settings.mode;
        if let Some(found) = self.cached(event, mode) {
            return found;
        }
        let _one_read = self.reading.lock().await;
        if let Some(found) = self.cached(event, mode) {
            return found;
        }
        let record = self.room.lottery_record(event).await?;
        let body = record
            .as_ref()
            .map(|r| Bytes::from(serde_json::to_vec(r).expect("a lottery record serialises")));
        let mut published = self.published.write().expect("lottery lock");
        published.retain(|_, p| p.read.elapsed() < FORGET_AFTER);
        published.insert(
            event.clone(),
            Published {
                body: body.clone(),
                revealed: record.is_some_and(|r| r.seed.is_some()),
                mode,
                read: Instant::now(),
            },
        );
        body.ok_or(EdgeError::UnknownEvent)
    }

    fn cached(&self, event: &EventSlug, mode: Mode) -> Option<Result<Bytes, EdgeError>> {
        let published = self.published.read().expect("lottery lock");
        let p = published.get(event).filter(|p| p.fresh_for(mode))?;
        Some(p.body.clone().ok_or(EdgeError::UnknownEvent))
    }
}
