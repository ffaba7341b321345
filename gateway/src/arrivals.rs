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
//! Fairness: one task takes arrivals off the channel in the order they came and Redis
//! numbers each batch consecutively in that order, so no joiner overtakes an earlier
//! one at the edge.

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};
use waitroom::EventSlug;
use waitroom::queue::{JOIN_BATCH_MAX, Joined, Waitroom};

use crate::EdgeError;

type Reply = oneshot::Sender<Result<Joined, waitroom::Error>>;

struct Arrival {
    event: EventSlug,
    visitor: String,
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
    pub fn start(room: Waitroom) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let batch_sizes = crate::telemetry::join_batch_histogram();
        tokio::spawn(batch_joins(room, rx, batch_sizes.clone()));
        Self { tx, batch_sizes }
    }

    /// Takes a place for `visitor`, batched with whoever else arrives meanwhile.
    pub async fn join(&self, event: &EventSlug, visitor: String) -> Result<Joined, EdgeError> {
        let (reply, answer) = oneshot::channel();
        let arrival = Arrival {
            event: event.clone(),
            visitor,
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

async fn batch_joins(room: Waitroom, mut rx: mpsc::Receiver<Arrival>, sizes: Histogram) {
    let mut taken = Vec::with_capacity(JOIN_BATCH_MAX);
    while rx.recv_many(&mut taken, JOIN_BATCH_MAX).await > 0 {
        // Nearly always one event, so a linear scan; several are split keeping each
        // one's order.
        let mut by_event: Vec<(EventSlug, Vec<String>, Vec<Reply>)> = Vec::new();
        for a in taken.drain(..) {
            match by_event.iter_mut().find(|(e, _, _)| *e == a.event) {
                Some((_, visitors, replies)) => {
                    visitors.push(a.visitor);
                    replies.push(a.reply);
                }
                None => by_event.push((a.event, vec![a.visitor], vec![a.reply])),
            }
        }
        for (event, visitors, replies) in by_event {
            sizes.observe(visitors.len() as f64);
            match room.join_many(&event, visitors).await {
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
    }
}
