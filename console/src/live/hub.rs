//! The hub: one feed task per watched event, shared by every viewer, stopped after the
//! linger once nobody watches; and the export of the same figures for events nobody
//! watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{IntGauge, Registry};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use waitroom::EventSlug;
use waitroom::queue::Waitroom;

use super::history::{FeedState, Point, backfill};
use super::metrics::LiveMetrics;
use super::snapshot::{self, Marker, build_snapshot, read_sales};
use crate::ConsoleError;
use crate::app::AppState;

/// A published frame: an SSE event name and its JSON, serialised once for everyone.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) kind: &'static str,
    pub(super) data: Arc<str>,
}

pub(super) struct Feed {
    pub(super) slug: EventSlug,
    pub(super) tx: watch::Sender<Option<Arc<Frame>>>,
    pub(super) state: Mutex<FeedState>,
}

/// The per-event feeds. The map is behind a std `Mutex`: it is held only to look up,
/// insert or remove an entry (never across an `.await`), and holding it while the last
/// viewer check runs is what makes "start on first viewer, stop after the last"
/// race-free.
#[derive(Clone)]
pub struct Hub {
    feeds: Arc<Mutex<HashMap<EventSlug, Arc<Feed>>>>,
    /// The feeds' own few connections, made from the console pool's settings on first
    /// use: a slow aggregate never takes a connection an operator's request needs, and
    /// a small pool keeps every connection's prepared statements warm.
    pool: Arc<OnceLock<PgPool>>,
    linger: Duration,
    metrics: LiveMetrics,
}

/// Connections for all live feeds together (one aggregate query per feed per second).
pub(super) const FEED_CONNECTIONS: u32 = 3;

impl Default for Hub {
    fn default() -> Self {
        Self::new(&Registry::new(), Duration::from_secs(15))
    }
}

impl Hub {
    /// A hub whose metrics go into `registry`; a feed keeps running for `linger` after
    /// its last viewer left (a page reload keeps its history).
    pub fn new(registry: &Registry, linger: Duration) -> Self {
        Self {
            feeds: Arc::default(),
            pool: Arc::default(),
            linger,
            metrics: LiveMetrics::new(registry),
        }
    }

    /// How many feeds are running (tests, metrics).
    pub fn running(&self) -> usize {
        self.feeds.lock().expect("hub lock").len()
    }

    pub(super) fn pool(&self, db: &PgPool) -> PgPool {
        self.pool
            .get_or_init(|| {
                PgPoolOptions::new()
                    .max_connections(FEED_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with((*db.connect_options()).clone())
            })
            .clone()
    }

    pub(super) fn is_running(&self, slug: &EventSlug) -> bool {
        self.feeds.lock().expect("hub lock").contains_key(slug)
    }

    /// Joins the event's feed, starting it if nobody was watching.
    pub fn subscribe(&self, db: &PgPool, room: &Waitroom, slug: &EventSlug) -> Subscription {
        let mut feeds = self.feeds.lock().expect("hub lock");
        let feed = feeds
            .entry(slug.clone())
            .or_insert_with(|| {
                let feed = Arc::new(Feed {
                    slug: slug.clone(),
                    tx: watch::Sender::new(None),
                    state: Mutex::new(FeedState::default()),
                });
                tokio::spawn(run_feed(
                    self.clone(),
                    self.pool(db),
                    room.clone(),
                    feed.clone(),
                ));
                self.metrics.feeds.inc();
                tracing::info!(event = %slug, "live feed started");
                feed
            })
            .clone();
        let rx = feed.tx.subscribe();
        drop(feeds);
        let viewers = self.metrics.viewers.with_label_values(&[slug.as_str()]);
        viewers.inc();
        Subscription {
            rx,
            feed,
            history_sent: false,
            _viewer: ViewerGuard(viewers),
        }
    }

    /// Removes the feed if still nobody watches; the check and the removal happen under
    /// the lock `subscribe` takes.
    pub(super) fn retire(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = self.feeds.lock().expect("hub lock");
        if feed.tx.receiver_count() > 0 {
            return false;
        }
        if feeds.get(&feed.slug).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(&feed.slug);
        }
        self.metrics.feeds.dec();
        tracing::info!(event = %feed.slug, "live feed stopped");
        true
    }
}

pub(super) struct ViewerGuard(IntGauge);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One viewer's place on a feed.
pub struct Subscription {
    rx: watch::Receiver<Option<Arc<Frame>>>,
    feed: Arc<Feed>,
    history_sent: bool,
    _viewer: ViewerGuard,
}

impl Subscription {
    /// The next message for this viewer: first the history (once the feed has produced
    /// its first snapshot), then each new frame. `None` when the feed is gone.
    pub async fn next(&mut self) -> Option<(&'static str, Arc<str>)> {
        if !self.history_sent {
            self.rx.wait_for(Option::is_some).await.ok()?;
            self.history_sent = true;
            let history = self.feed.state.lock().expect("feed lock").history();
            return Some(("history", history.into()));
        }
        self.rx.changed().await.ok()?;
        let frame = self.rx.borrow_and_update().clone()?;
        Some((frame.kind, frame.data.clone()))
    }
}

pub(super) async fn run_feed(hub: Hub, db: PgPool, room: Waitroom, feed: Arc<Feed>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since: Option<Instant> = None;
    let mut started = false;
    loop {
        tick.tick().await;
        if feed.tx.receiver_count() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= hub.linger && hub.retire(&feed) {
                return;
            }
        } else {
            idle_since = None;
        }
        match step(&hub, &db, &room, &feed, !started).await {
            Ok(()) => started = true,
            Err(e) => {
                tracing::warn!(event = %feed.slug, error = %e, "live feed could not read");
                let data: Arc<str> = json!({
                    "error": "unavailable",
                    "message": "the figures could not be read; showing the last known",
                    "at": Utc::now(),
                })
                .to_string()
                .into();
                feed.tx.send_replace(Some(Arc::new(Frame {
                    kind: "problem",
                    data,
                })));
            }
        }
    }
}

/// One second of a feed: read both stores, build, remember and publish the snapshot.
pub(super) async fn step(
    hub: &Hub,
    db: &PgPool,
    room: &Waitroom,
    feed: &Feed,
    first: bool,
) -> Result<(), ConsoleError> {
    let after_audit = feed.state.lock().expect("feed lock").last_audit_id;
    let (figures, sales) = tokio::join!(
        room.figures(&feed.slug),
        read_sales(db, &feed.slug, after_audit)
    );
    hub.metrics.read("redis", figures.is_ok());
    hub.metrics.read("postgres", sales.is_ok());
    let (figures, sales) = (figures?, sales?);
    if sales.event_id.is_none() {
        return Err(orders::Error::NotFound("event").into());
    }
    let backfilled = if first {
        backfill(db, room, &feed.slug, &figures, &sales).await?
    } else {
        Vec::new()
    };
    hub.metrics.export(&feed.slug, &figures, &sales);
    let mut state = feed.state.lock().expect("feed lock");
    if first {
        state.tiers = sales
            .tiers
            .iter()
            .map(|t| (t.code.clone(), t.name.clone()))
            .collect();
        state.points.extend(backfilled);
    }
    let changes: Vec<Marker> = sales.changes.iter().map(snapshot::marker).collect();
    if let Some(last) = changes.last() {
        state.last_audit_id = last.id;
    }
    state.markers.extend(changes.iter().cloned());
    let rates = state.rates(&figures);
    let snapshot = build_snapshot(&feed.slug, &figures, &sales, rates, changes);
    state.push(Point::live(&snapshot));
    let data: Arc<str> = serde_json::to_string(&snapshot)
        .expect("snapshot serialises")
        .into();
    state.latest = Some(data.clone());
    drop(state);
    feed.tx.send_replace(Some(Arc::new(Frame {
        kind: "snapshot",
        data,
    })));
    Ok(())
}

/// Exports the figures of events nobody is watching, every `every`, so that alerts work
/// whether or not anyone has the control room open. Watched events export each second
/// from their feed.
pub async fn export_forever(s: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        tick.tick().await;
        export_once(&s, &owner, every).await;
    }
}

/// One round of the export, by the console `owner` if it holds (or can take) the
/// exporter lease. With two consoles behind the load balancer, both would export
/// the same per-event figures and a dashboard's `sum` would read twice the queue and
/// twice the sales; one exports (a lease of three rounds, so a dead one is replaced
/// within 45 s) and the other exports none of them. Redis away: keep doing as before.
pub async fn export_once(s: &AppState, owner: &str, every: Duration) {
    match s
        .room
        .lease("console-metrics-exporter", owner, every * 3)
        .await
    {
        Ok(held) => s.live.metrics.set_exporting(held),
        Err(e) => tracing::warn!(error = %e, "metrics export: the exporter lease is unreadable"),
    }
    if !s.live.metrics.exporting() {
        return;
    }
    let db = s.live.pool(&s.reads);
    {
        let events = match s.room.events().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "metrics export: cannot list events");
                return;
            }
        };
        for slug in events {
            if s.live.is_running(&slug) {
                continue;
            }
            let (figures, sales) =
                tokio::join!(s.room.figures(&slug), read_sales(&db, &slug, i64::MAX));
            s.live.metrics.read("redis", figures.is_ok());
            s.live.metrics.read("postgres", sales.is_ok());
            if let (Ok(f), Ok(sales)) = (figures, sales) {
                s.live.metrics.export(&slug, &f, &sales);
            }
        }
    }
}
