//! A short-lived in-memory copy of events and their tiers.
//!
//! During an on-sale every hold request needs the event's definition (its tiers, limits,
//! hold TTL, queue mode) and none of it changes from one second to the next. Reading it
//! from Postgres per request would spend the connection pool on reads while the hold
//! writers need it for the one write that matters; so definitions are cached for
//! [`FRESH_FOR`]. The counts in a cached tier are for display only — holding never
//! trusts them, the writer re-reads the row under its lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::Error;
use crate::events::{self, Event, Tier};

pub const FRESH_FOR: Duration = Duration::from_secs(1);

pub struct Listing {
    pub event: Event,
    pub tiers: Vec<Tier>,
}

/// Slug -> when it was read, and what.
type Entries = HashMap<String, (Instant, Arc<Listing>)>;

#[derive(Clone)]
pub struct Catalog {
    db: PgPool,
    entries: Arc<RwLock<Entries>>,
    /// One loader at a time: when a thousand requests miss together (the first second
    /// of an on-sale), one reads Postgres and the rest wait for its answer.
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl Catalog {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            entries: Arc::default(),
            loading: Arc::default(),
        }
    }

    fn cached(&self, slug: &str) -> Option<Arc<Listing>> {
        match self.entries.read().expect("catalog lock").get(slug) {
            Some((at, listing)) if at.elapsed() < FRESH_FOR => Some(listing.clone()),
            _ => None,
        }
    }

    pub async fn get(&self, slug: &str) -> Result<Arc<Listing>, Error> {
        if let Some(listing) = self.cached(slug) {
            return Ok(listing);
        }
        // A string that cannot be a slug names no event; it need not cost a query (nor,
        // with a NUL in it, fail inside Postgres).
        if waitroom::EventSlug::parse(slug).is_err() {
            return Err(Error::NotFound("event"));
        }
        let _loading = self.loading.lock().await;
        if let Some(listing) = self.cached(slug) {
            return Ok(listing);
        }
        let event = events::by_slug(&self.db, slug)
            .await?
            .ok_or(Error::NotFound("event"))?;
        let tiers = events::tiers(&self.db, event.id).await?;
        let listing = Arc::new(Listing { event, tiers });
        let mut entries = self.entries.write().expect("catalog lock");
        // Unknown slugs are not cached, so the map only ever holds real events.
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(slug.to_owned(), (Instant::now(), listing.clone()));
        Ok(listing)
    }
}
