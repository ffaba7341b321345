//! Arrivals gathered into batches: every visitor who asks for a place while the
//! previous Redis call is in flight gets it from the next call, one Lua step for all
//! of them (`Waitroom::join_many`).
//!
//! Why: at the opening minute joins are the edge's only Redis traffic of any volume,
//! and each one used to be its own `EVALSHA` — a frame through the gateway's one I/O
//! thread and a script run in Redis, both on the same two saturated cores as
//! everything else. Batching costs a lone joiner nothing (an idle batcher sends at
//! once) and a crowd one call per round trip instead of one per joiner.
//!
//! Fairness: one task takes arrivals off the channel in the order they came and hands
//! them to their event's lane, which sends its batches one after another; Redis
//! numbers each batch consecutively in that order, so no joiner overtakes an earlier
//! one at the edge. Events do not wait for each other (one lane each).
//!
//! The per-client join limit is charged in the same call (`Waitroom::join_many_limited`),
//! in the event's shard: every gateway counts the same joins, so two gateways behind a
//! round-robin balancer do not give a script twice the places, and it costs no round
//! trip of its own.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};
use waitroom::EventSlug;
use waitroom::queue::{JOIN_BATCH_MAX, JoinLimit, Joined, Waitroom};

use crate::EdgeError;

type Reply = oneshot::Sender<Result<Joined, waitroom::Error>>;

struct Arrival {
    event: EventSlug,
    visitor: String,
    /// The client's limit bucket; `None` for one never limited.
    client: Option<String>,
    reply: Reply,
}

/// The sending side; cheap to share between Pingora's threads.
pub struct Arrivals {
    tx: mpsc::Sender<Arrival>,
    /// Visitors per Redis call: how much batching the crowd gets.
    pub batch_sizes: Histogram,
}

/// Arrivals waiting for the batcher beyond this get an immediate 503 rather than a
/// growing wait: far more than one batch per event, far less than memory would bear.
const BACKLOG: usize = 16 * JOIN_BATCH_MAX;

impl Arrivals {
    /// Starts the batching task on the current Tokio runtime, which should be the
    /// one the Redis client's connection lives on (the gateway's I/O runtime).
    /// `per_client_per_min` is the shared join limit (`None`: joins are not limited
    /// per client here).
    pub fn start(room: Waitroom, per_client_per_min: Option<NonZeroU32>) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let batch_sizes = crate::telemetry::join_batch_histogram();
        let lanes = Lanes {
            room,
            sizes: batch_sizes.clone(),
            per_client_per_min,
        };
        tokio::spawn(batch_joins(lanes, rx));
        Self { tx, batch_sizes }
    }

    /// Takes a place for `visitor`, batched with whoever else arrives meanwhile;
    /// `client` is the limit bucket it is charged to (`None`: never limited).
    pub async fn join(
        &self,
        event: &EventSlug,
        visitor: String,
        client: Option<String>,
    ) -> Result<Joined, EdgeError> {
        let (reply, answer) = oneshot::channel();
        let arrival = Arrival {
            event: event.clone(),
            visitor,
            client,
            reply,
        };
        self.tx.try_send(arrival).map_err(|e| {
            EdgeError::Busy(match e {
                mpsc::error::TrySendError::Full(_) => "join backlog full",
                mpsc::error::TrySendError::Closed(_) => "join batcher stopped",
            })
        })?;
        match answer.await {
            Ok(joined) => Ok(joined?),
            Err(_) => Err(EdgeError::Busy("join batcher dropped a join")),
        }
    }
}

/// How long one event's batch may take (a script and, on a cluster, the `WAIT` for a
/// replica): past it its joiners get a 503 and the lane moves on.
const JOIN_TIMEOUT: Duration = Duration::from_millis(800);
/// A lane with no arrivals for this long ends (its event's sale is over or quiet).
const LANE_IDLE: Duration = Duration::from_secs(60);

/// Hands each arrival to its event's lane, in the order they came. Each event has its
/// own lane (a task and a channel), so its batches go to Redis one after another —
/// no joiner overtakes an earlier one — while events on other shards go on at their
/// own pace: a slow or failed shard holds up only the events it stores.
async fn batch_joins(how: Lanes, mut rx: mpsc::Receiver<Arrival>) {
    let mut lanes: HashMap<EventSlug, mpsc::Sender<Arrival>> = HashMap::new();
    while let Some(arrival) = rx.recv().await {
        let lane = lanes
            .entry(arrival.event.clone())
            .or_insert_with(|| open_lane(how.clone()));
        let arrival = match lane.try_send(arrival) {
            Ok(()) => continue,
            Err(mpsc::error::TrySendError::Full(a)) => {
                let _ = a.reply.send(Err(waitroom::Error::Protocol(
                    "this event's join backlog is full".into(),
                )));
                continue;
            }
            // The lane ended after being idle: start it again.
            Err(mpsc::error::TrySendError::Closed(a)) => a,
        };
        let fresh = open_lane(how.clone());
        let event = arrival.event.clone();
        let _ = fresh.try_send(arrival);
        lanes.insert(event, fresh);
        lanes.retain(|_, l| !l.is_closed());
    }
}

/// What every lane is started with.
#[derive(Clone)]
struct Lanes {
    room: Waitroom,
    sizes: Histogram,
    per_client_per_min: Option<NonZeroU32>,
}

/// One event's lane: batches of its arrivals, one Redis call each, in order.
fn open_lane(how: Lanes) -> mpsc::Sender<Arrival> {
    let Lanes {
        room,
        sizes,
        per_client_per_min,
    } = how;
    let (tx, mut rx) = mpsc::channel::<Arrival>(BACKLOG);
    tokio::spawn(async move {
        let mut taken = Vec::with_capacity(JOIN_BATCH_MAX);
        loop {
            match tokio::time::timeout(LANE_IDLE, rx.recv_many(&mut taken, JOIN_BATCH_MAX)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let event = taken[0].event.clone();
            let mut visitors = Vec::with_capacity(taken.len());
            let mut clients = Vec::with_capacity(taken.len());
            let mut replies = Vec::with_capacity(taken.len());
            for a in taken.drain(..) {
                visitors.push(a.visitor);
                clients.push(a.client);
                replies.push(a.reply);
            }
            sizes.observe(visitors.len() as f64);
            let limit = per_client_per_min.map(|per_minute| JoinLimit {
                per_minute,
                clients,
            });
            let batch = room.join_many_limited(&event, visitors, limit);
            let joined = tokio::time::timeout(JOIN_TIMEOUT, batch)
                .await
                .unwrap_or_else(|_| Err(waitroom::Error::Protocol("the join timed out".into())));
            match joined {
                Ok(joined) => {
                    for (reply, j) in replies.into_iter().zip(joined) {
                        // A joiner who gave up (client gone) leaves a place unused,
                        // as a single join whose answer was lost would.
                        let _ = reply.send(Ok(j));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}
