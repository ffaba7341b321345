//! Per-event queue snapshots held in memory, so a status poll costs no Redis round trip.
//!
//! A refresher re-reads every recently used event each `refresh` period; requests read
//! whatever is cached (at most one period plus one round trip old, well inside the
//! 1 s promise for settings changes). Only the first request for an event not yet seen
//! waits for Redis.
//!
//! Only events Redis knows are kept and refreshed. A slug it does not know is
//! remembered apart, for [`UNKNOWN_FOR`], in a cache bounded in entries: probing
//! `/e/<random>` costs one existence check per slug per period and some memory up to
//! the bound, never a bigger set for the refresher to walk every period (before, each
//! probed slug was re-read five times a second for a minute).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use waitroom::EventSlug;
use waitroom::queue::{Snapshot, Waitroom};
use waitroom::settings::Mode;

use crate::EdgeError;

const IDLE_AFTER: Duration = Duration::from_secs(60);
/// Known events kept; past this (more events in use at once than any deployment
/// runs) a new one is answered from Redis without being kept.
const MAX_EVENTS: usize = 10_000;
/// How long "no such event" is believed. Short enough that an event created a moment
/// after someone asked for it is served within the 1 s promise for settings changes.
pub const UNKNOWN_FOR: Duration = Duration::from_secs(1);
/// Unknown slugs remembered; beyond it the least useful are forgotten, and a
/// forgotten one costs one more existence check.
const MAX_UNKNOWN: usize = 10_000;
/// How long one event's re-read may take. Events are re-read concurrently, each within
/// this, so an event whose shard is slow or gone keeps its last snapshot for a period
/// while every event on a healthy shard is refreshed on time (before, one frozen
/// shard held up the loop for the command timeout, 3 s, for every event).
pub const REFRESH_TIMEOUT: Duration = Duration::from_millis(400);

struct Entry {
    snapshot: Arc<Snapshot>,
    used: Instant,
}

pub struct Snapshots {
    room: Waitroom,
    entries: RwLock<HashMap<EventSlug, Entry>>,
    /// Slugs Redis did not know, and when it said so.
    unknown: Cache<EventSlug, Instant>,
}

impl Snapshots {
    pub fn new(room: Waitroom) -> Self {
        Self {
            room,
            entries: RwLock::new(HashMap::new()),
            unknown: Cache::new(MAX_UNKNOWN),
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
                return Ok(snap);
            }
        }
        if self
            .unknown
            .get(event)
            .is_some_and(|at| at.elapsed() < UNKNOWN_FOR)
        {
            return Err(EdgeError::UnknownEvent);
        }
        let Some(fetched) = self.fetch(event).await? else {
            self.unknown.insert(event.clone(), Instant::now());
            return Err(EdgeError::UnknownEvent);
        };
        let mut entries = self.entries.write().expect("snapshot lock");
        if entries.len() >= MAX_EVENTS {
            entries.retain(|_, e| e.used.elapsed() < IDLE_AFTER);
        }
        if entries.len() < MAX_EVENTS {
            entries.insert(
                event.clone(),
                Entry {
                    snapshot: fetched.clone(),
                    used: Instant::now(),
                },
            );
        }
        Ok(fetched)
    }

    /// Events the refresher re-reads each period (tests: probing must not grow it).
    pub fn tracked(&self) -> usize {
        self.entries.read().expect("snapshot lock").len()
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
        let reads = events.into_iter().map(|event| async move {
            let fetched = tokio::time::timeout(REFRESH_TIMEOUT, self.fetch(&event)).await;
            (event, fetched)
        });
        for (event, fetched) in futures::future::join_all(reads).await {
            let Ok(fetched) = fetched else {
                tracing::warn!(%event, "snapshot refresh timed out; serving the last one");
                continue;
            };
            match fetched {
                Ok(snapshot) => {
                    if let Some(e) = self.entries.write().expect("snapshot lock").get_mut(&event) {
                        e.snapshot = match snapshot {
                            Some(fresh) => fresh,
                            // Redis answers but has forgotten an event it knew a moment
                            // ago (restarted without persistence): hold everyone where
                            // they are, paused, until the console restores the queue,
                            // rather than telling people the event does not exist.
                            None => {
                                let last = &e.snapshot;
                                if last.settings.mode != Mode::Paused {
                                    tracing::warn!(%event, "queue state missing in Redis; paused until restored");
                                }
                                let mut held = (**last).clone();
                                held.settings.mode = Mode::Paused;
                                Arc::new(held)
                            }
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
