//! Per-event queue snapshots held in memory, so a status poll costs no Redis round trip.
//!
//! A refresher re-reads every recently used event each `refresh` period; requests read
//! whatever is cached (at most one period plus one round trip old, well inside the
//! 1 s promise for settings changes). Only the first request for an event not yet seen
//! waits for Redis. Unknown events are cached too, so probing random slugs cannot turn
//! into a Redis load.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use waitroom::EventSlug;
use waitroom::queue::{Snapshot, Waitroom};
use waitroom::settings::Mode;

use crate::EdgeError;

const IDLE_AFTER: Duration = Duration::from_secs(60);
const MAX_EVENTS: usize = 10_000;

struct Entry {
    snapshot: Option<Arc<Snapshot>>,
    used: Instant,
}

pub struct Snapshots {
    room: Waitroom,
    entries: RwLock<HashMap<EventSlug, Entry>>,
}

impl Snapshots {
    pub fn new(room: Waitroom) -> Self {
        Self {
            room,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached snapshot, or a fresh one for an event not seen yet.
    pub async fn get(&self, event: &EventSlug) -> Result<Arc<Snapshot>, EdgeError> {
        {
            let entries = self.entries.read().expect("snapshot lock");
            if let Some(e) = entries.get(event) {
                // Marking use needs the write lock; a slightly stale `used` is harmless,
                // so only refresh it when it is getting old.
                let snap = e.snapshot.clone();
                let stale_use = e.used.elapsed() > IDLE_AFTER / 4;
                drop(entries);
                if stale_use
                    && let Some(e) = self.entries.write().expect("snapshot lock").get_mut(event)
                {
                    e.used = Instant::now();
                }
                return snap.ok_or(EdgeError::UnknownEvent);
            }
        }
        let fetched = self.fetch(event).await?;
        let mut entries = self.entries.write().expect("snapshot lock");
        if entries.len() >= MAX_EVENTS {
            entries.retain(|_, e| e.snapshot.is_some());
        }
        entries.insert(
            event.clone(),
            Entry {
                snapshot: fetched.clone(),
                used: Instant::now(),
            },
        );
        fetched.ok_or(EdgeError::UnknownEvent)
    }

    async fn fetch(&self, event: &EventSlug) -> Result<Option<Arc<Snapshot>>, EdgeError> {
        match self.room.snapshot(event).await {
            Ok(s) => Ok(Some(Arc::new(s))),
            Err(waitroom::Error::UnknownEvent) => Ok(None),
            Err(e) => Err(EdgeError::Unavailable(e)),
        }
    }

    /// Re-reads every event used recently and forgets idle ones.
    pub async fn refresh(&self) {
        let events: Vec<EventSlug> = {
            let mut entries = self.entries.write().expect("snapshot lock");
            entries.retain(|_, e| e.used.elapsed() < IDLE_AFTER);
            entries.keys().cloned().collect()
        };
        for event in events {
            match self.fetch(&event).await {
                Ok(snapshot) => {
                    if let Some(e) = self.entries.write().expect("snapshot lock").get_mut(&event) {
                        e.snapshot = match (snapshot, e.snapshot.take()) {
                            // Redis answers but has forgotten an event it knew a moment
                            // ago (restarted without persistence): hold everyone where
                            // they are, paused, until the console restores the queue,
                            // rather than telling people the event does not exist.
                            (None, Some(last)) => {
                                if last.settings.mode != Mode::Paused {
                                    tracing::warn!(%event, "queue state missing in Redis; paused until restored");
                                }
                                let mut held = (*last).clone();
                                held.settings.mode = Mode::Paused;
                                Some(Arc::new(held))
                            }
                            (fresh, _) => fresh,
                        };
                    }
                }
                // Keep serving the last good snapshot; readiness reports Redis itself.
                Err(e) => tracing::warn!(%event, error = %e, "snapshot refresh failed"),
            }
        }
    }

    pub fn room(&self) -> &Waitroom {
        &self.room
    }
}
