//! The fulfilment service's state, router and background loops.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus::{IntCounter, Registry};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::FulfilmentConfig;
use crate::mail::Mailer;
use crate::meetings::Meetings;
use crate::{deliveries, join, reminders};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub sent: IntCounter,
    pub failed: IntCounter,
    pub bounced: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let sent = IntCounter::new(
            "floodgate_fulfilment_emails_sent_total",
            "Emails accepted by SMTP",
        )
        .expect("metric");
        let failed = IntCounter::new(
            "floodgate_fulfilment_email_failures_total",
            "Failed send attempts",
        )
        .expect("metric");
        let bounced = IntCounter::new(
            "floodgate_fulfilment_emails_bounced_total",
            "Emails the server refused permanently (no retry)",
        )
        .expect("metric");
        for c in [&sent, &failed, &bounced] {
            registry.register(Box::new(c.clone())).expect("register");
        }
        Self {
            registry,
            sent,
            failed,
            bounced,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<FulfilmentConfig>,
    pub mailer: Arc<Mailer>,
    pub meetings: Arc<Meetings>,
    pub metrics: Metrics,
    /// Wakes the sender when something was queued, so mail leaves at once.
    pub wake: Arc<Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(platform::probes::routes())
        .route("/join/{token}", get(join::join))
        .route("/join/{token}/calendar.ics", get(join::calendar_file))
        .with_state(state)
}

impl platform::probes::Probe for AppState {
    async fn ready(&self) -> Result<(), &'static str> {
        platform::db::reachable(&self.db).await
    }

    fn registry(&self) -> &Registry {
        &self.metrics.registry
    }
}

/// The sender, the reconciler and the reminders, until the process ends.
pub async fn run_workers(s: AppState, shutdown: platform::shutdown::Shutdown) {
    let mut reconcile = tokio::time::interval(Duration::from_secs(10));
    let mut remind = tokio::time::interval(Duration::from_secs(5));
    let stopped = shutdown.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = s.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = reconcile.tick() => if let Err(e) = deliveries::reconcile(&s).await {
                tracing::warn!(error = %e, "reconciler failed");
            },
            _ = remind.tick() => if let Err(e) = reminders::run_due(&s, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "reminders failed");
            },
        }
        // Drain whatever is due, in batches.
        loop {
            match deliveries::send_due(&s, 32).await {
                Ok(32) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sender failed");
                    break;
                }
            }
        }
    }
}
