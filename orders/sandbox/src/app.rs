//! [`Sandbox`], the shared state and the operations the routes call, and [`app()`],
//! the router that puts the route modules together.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Router, middleware};
use serde_json::Value;

use crate::cards::{GENERIC_DECLINE, Verdict};
use crate::config::SandboxConfig;
use crate::faults::{Faults, FaultsPatch};
use crate::journal::Journal;
use crate::ledger::{Confirmation, Idempotent, Ledger, NewIntent, NewRefund, Reply};
use crate::metrics::Metrics;
use crate::objects::PaymentIntent;
use crate::webhooks::{Delivery, Webhooks};
use crate::{Error, admin, api, page};

/// The sandbox: cheap to clone, one per process (or per test).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    faults: RwLock<Faults>,
    /// A std mutex, not Tokio's: every critical section is a short synchronous
    /// update that never awaits, and the lock is what makes an operation, its
    /// idempotency record and its events one step.
    ledger: Mutex<Ledger>,
    journal: Option<Journal>,
    webhooks: Webhooks,
    metrics: Metrics,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Sandbox {
    /// Builds the state (the books read back from the journal, if one is configured)
    /// and starts webhook delivery. Call inside a Tokio runtime.
    pub fn new(config: SandboxConfig) -> std::io::Result<Self> {
        let (journal, ledger) = match &config.state_file {
            Some(path) => {
                let (journal, ledger) = Journal::open(path)?;
                tracing::info!(
                    intents = ledger.intents_len(),
                    "books read back from the journal"
                );
                (Some(journal), ledger)
            }
            None => (None, Ledger::default()),
        };
        let metrics = Metrics::new();
        let webhooks = Webhooks::start(
            config.webhook_url.clone(),
            config.webhook_secret.clone(),
            metrics.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                faults: RwLock::new(config.faults.clone()),
                config,
                ledger: Mutex::new(ledger),
                journal,
                webhooks,
                metrics,
            }),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The live fault knobs (a copy: read once per request).
    pub fn faults(&self) -> Faults {
        self.inner
            .faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_faults(&self, patch: FaultsPatch) -> Faults {
        let mut faults = self
            .inner
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        faults.apply(patch);
        faults.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.webhooks.deliveries()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic inside an operation leaves nothing half-written that matters more
        // than keeping the test double answering, so a poisoned lock is taken over.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a money-moving operation under the lock, with its idempotency record,
    /// and queues the events it produced before letting go.
    fn run(
        &self,
        idem: Option<&Idempotent>,
        op: impl FnOnce(&mut Ledger, &Faults) -> Result<Value, Error>,
    ) -> Result<Reply, Error> {
        let faults = self.faults();
        let mut ledger = self.ledger();
        let result = ledger.idempotent(idem, |l| op(l, &faults));
        let changes = ledger.take_changes();
        if let Some(journal) = &self.inner.journal {
            journal.append(&changes);
        }
        for event in ledger.take_events() {
            self.inner.webhooks.enqueue(&event, &faults);
        }
        result
    }

    pub fn create_intent(&self, new: NewIntent, idem: Option<&Idempotent>) -> Result<Reply, Error> {
        let reply = self.run(idem, |l, _| Ok(l.create_intent(new, now())))?;
        if !reply.replayed {
            self.inner.metrics.intent_created();
        }
        Ok(reply)
    }

    pub fn confirm(
        &self,
        id: &str,
        confirmation: Confirmation,
        idem: Option<&Idempotent>,
    ) -> Result<Reply, Error> {
        let result = self.run(idem, |l, faults| {
            let verdict = confirmation.verdict.unwrap_or_else(|| {
                if faults.decline_rate.roll() {
                    Verdict::Decline(GENERIC_DECLINE)
                } else {
                    Verdict::Approve
                }
            });
            l.confirm(id, verdict, confirmation.return_url, now())
        });
        let outcome = match &result {
            Ok(reply) if reply.replayed => None,
            Ok(_) => Some("succeeded"),
            Err(Error::Declined { .. }) => Some("declined"),
            Err(Error::UnexpectedState { .. }) => Some("refused"),
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            self.inner.metrics.confirm(outcome);
        }
        result
    }

    pub fn cancel(&self, id: &str, idem: Option<&Idempotent>) -> Result<Reply, Error> {
        self.run(idem, |l, _| l.cancel(id, now()))
    }

    pub fn refund(&self, new: NewRefund, idem: Option<&Idempotent>) -> Result<Reply, Error> {
        let reply = self.run(idem, |l, _| l.create_refund(new, now()))?;
        if !reply.replayed {
            self.inner.metrics.refund();
        }
        Ok(reply)
    }

    /// A copy of an intent as it is now.
    pub fn payment_intent(&self, id: &str) -> Result<PaymentIntent, Error> {
        self.ledger().intent(id).cloned()
    }

    pub fn refund_json(&self, id: &str) -> Result<Value, Error> {
        self.ledger().refund(id).map(|r| r.to_json())
    }
}

/// The whole HTTP surface: `/v1` (Stripe-shaped, behind the API key), the hosted
/// page, `/admin`, and the probes.
pub fn app(sandbox: Sandbox) -> Router {
    Router::new()
        .merge(platform::probes::routes())
        .nest("/v1", api::router(sandbox.clone()))
        .merge(page::router())
        .merge(admin::router())
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(log_request))
        .with_state(sandbox)
}

impl platform::probes::Probe for Sandbox {
    async fn ready(&self) -> Result<(), &'static str> {
        if self.inner.webhooks.running() {
            Ok(())
        } else {
            Err("webhook dispatcher stopped")
        }
    }

    fn registry(&self) -> &prometheus::Registry {
        self.inner.metrics.registry()
    }
}

/// One line per request: what a merchant sent and what it got, which is most of
/// what one wants from a test double's log. Paths only; bodies may carry metadata.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
