//! Webhook events: their shape, their signature and their delivery.
//!
//! Events are queued in the order the ledger produced them (under its lock) and a
//! dispatcher task makes each event's first attempt in that order, so with the
//! reordering fault off the receiver sees them in order. A failed delivery retries
//! on a task of its own with exponential backoff (200 ms doubling to 30 s, ten
//! attempts), as Stripe retries, so one failing event never holds up the rest.
//! The price of the ordering: a receiver that hangs holds up the events behind it,
//! for at most the 10 s attempt limit each. Every attempt is recorded for
//! `GET /admin/webhooks`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Secret;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::objects::new_id;

/// The `Stripe-Signature` header value for `body` sent at `timestamp` (unix
/// seconds): `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

pub const FIRST_RETRY: Duration = Duration::from_millis(200);
pub const MAX_RETRY: Duration = Duration::from_secs(30);
pub const MAX_ATTEMPTS: u32 = 10;
/// One attempt's limit; a receiver slower than this counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait after failed attempt `n` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_RETRY)
}

#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub kind: &'static str,
    pub created: i64,
    /// The object as it was when the event happened (`data.object`).
    pub object: Value,
}

impl Event {
    pub fn new(kind: &'static str, object: Value, now: i64) -> Self {
        Self {
            id: new_id("evt"),
            kind,
            created: now,
            object,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "event",
            "type": self.kind,
            "created": self.created,
            "livemode": false,
            "data": {"object": self.object},
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Every attempt failed.
    Failed,
    /// The drop fault swallowed the event; no attempt was made.
    Dropped,
}

/// One delivery of one event (two per event under `duplicate_webhooks`).
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 1, or 2 for the duplicate.
    pub copy: u8,
    pub state: DeliveryState,
    pub delivered: bool,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

struct Job {
    body: Bytes,
    slot: usize,
    event_id: String,
    kind: &'static str,
}

struct Queued {
    jobs: Vec<Job>,
    due: Instant,
    /// Set under `out_of_order_webhooks`: deliver on a task of its own after this.
    reorder_hold: Option<Duration>,
}

/// The sending side, held by the state.
pub struct Webhooks {
    queue: mpsc::UnboundedSender<Queued>,
    log: Log,
    metrics: Metrics,
}

impl Webhooks {
    /// Starts the dispatcher; must be called inside a Tokio runtime. It stops when
    /// this value is dropped.
    pub fn start(url: String, secret: Secret, metrics: Metrics) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let log = Log::default();
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent("floodgate-sandbox (Stripe-shaped webhooks)")
            .build()
            .expect("HTTP client");
        let deliverer = Deliverer {
            client,
            url: Arc::from(url),
            secret,
            log: log.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(dispatch(rx, deliverer));
        Self {
            queue,
            log,
            metrics,
        }
    }

    /// Queues an event under the current faults. Called with the ledger lock held,
    /// so the queue order is the order of the changes; it never blocks.
    pub fn enqueue(&self, event: &Event, faults: &Faults) {
        let body = Bytes::from(serde_json::to_vec(&event.to_json()).expect("JSON"));
        let dropped = faults.webhook_drop_rate.roll();
        let copies: u8 = if faults.duplicate_webhooks && !dropped {
            2
        } else {
            1
        };
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut jobs = Vec::new();
        for copy in 1..=copies {
            log.push(Delivery {
                event_id: event.id.clone(),
                kind: event.kind,
                copy,
                state: if dropped {
                    DeliveryState::Dropped
                } else {
                    DeliveryState::Pending
                },
                delivered: false,
                attempts: 0,
                last_status: None,
                last_error: None,
            });
            jobs.push(Job {
                body: body.clone(),
                slot: log.len() - 1,
                event_id: event.id.clone(),
                kind: event.kind,
            });
        }
        drop(log);
        if dropped {
            self.metrics.webhook("dropped");
            tracing::info!(event_id = %event.id, event_type = event.kind, "drop fault: webhook event will never be delivered");
            return;
        }
        let queued = Queued {
            jobs,
            due: Instant::now() + faults.webhook_delay(),
            reorder_hold: faults.reorder_hold(),
        };
        if self.queue.send(queued).is_err() {
            tracing::warn!(event_id = %event.id, "webhook dispatcher has stopped; event not queued");
        }
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the dispatcher is still running (readiness).
    pub fn running(&self) -> bool {
        !self.queue.is_closed()
    }
}

async fn dispatch(mut rx: mpsc::UnboundedReceiver<Queued>, deliverer: Deliverer) {
    while let Some(queued) = rx.recv().await {
        tokio::time::sleep_until(queued.due).await;
        for job in queued.jobs {
            match queued.reorder_hold {
                Some(hold) => {
                    let deliverer = deliverer.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(hold).await;
                        deliverer.keep_trying(job, 0).await;
                    });
                }
                // The first attempt is made here, in queue order; only retries leave
                // the line.
                None => {
                    if !deliverer.attempt(&job).await {
                        tokio::spawn(deliverer.clone().keep_trying(job, 1));
                    }
                }
            }
        }
    }
}

#[derive(Clone)]
struct Deliverer {
    client: reqwest::Client,
    url: Arc<str>,
    secret: Secret,
    log: Log,
    metrics: Metrics,
}

impl Deliverer {
    /// Attempts after the first `done` until one succeeds or all are spent.
    async fn keep_trying(self, job: Job, done: u32) {
        let mut attempt = done;
        loop {
            if attempt >= MAX_ATTEMPTS {
                self.metrics.webhook("failed");
                self.update(job.slot, |d| d.state = DeliveryState::Failed);
                tracing::warn!(event_id = %job.event_id, event_type = job.kind, attempts = attempt, "webhook delivery gave up");
                return;
            }
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt += 1;
            if self.attempt(&job).await {
                return;
            }
        }
    }

    /// One signed POST; records the outcome and says whether it was a 2xx.
    async fn attempt(&self, job: &Job) -> bool {
        // Signed at each attempt, as Stripe does, so the timestamp is fresh for the
        // receiver's tolerance window.
        let signature = sign(
            self.secret.expose(),
            chrono::Utc::now().timestamp(),
            &job.body,
        );
        let result = self
            .client
            .post(&*self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Stripe-Signature", signature)
            .body(job.body.clone())
            .send()
            .await;
        let (ok, status, error) = match result {
            Ok(response) => (
                response.status().is_success(),
                Some(response.status().as_u16()),
                None,
            ),
            Err(e) => (false, None, Some(e.to_string())),
        };
        // Counted before the record changes, so whoever sees the record delivered
        // also finds it counted.
        self.metrics.webhook_attempt(ok);
        if ok {
            self.metrics.webhook("delivered");
        }
        let attempts = self.update(job.slot, |d| {
            d.attempts += 1;
            d.last_status = status;
            d.last_error = error.clone();
            if ok {
                d.state = DeliveryState::Delivered;
                d.delivered = true;
            }
        });
        if ok {
            tracing::info!(event_id = %job.event_id, event_type = job.kind, attempts, "webhook delivered");
        } else {
            tracing::warn!(event_id = %job.event_id, event_type = job.kind, attempts, status, error, "webhook attempt failed");
        }
        ok
    }

    /// Changes one delivery record; returns its attempt count afterwards.
    fn update(&self, slot: usize, change: impl FnOnce(&mut Delivery)) -> u32 {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let delivery = &mut log[slot];
        change(delivery);
        delivery.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(9), MAX_RETRY);
        assert_eq!(backoff(40), MAX_RETRY);
    }
}
