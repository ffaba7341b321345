//! Starting fulfilment: the one path the binary, the tests and the bench take, so what
//! they run is what production runs and nobody assembles an [`AppState`] by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::app::{AppState, Metrics, router, run_workers};
use crate::config::FulfilmentConfig;
use crate::mail::Mailer;
use crate::meetings::{GoogleMeet, Jitsi, Meetings, Zoom};

/// Postgres connections of one fulfilment process.
const POOL_SIZE: u32 = 10;

/// A built fulfilment service, bound and ready to serve `/join`.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and builds the service.
    pub async fn build(config: FulfilmentConfig) -> anyhow::Result<Self> {
        let listener = platform::listener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Self::on(listener, config).await
    }

    /// Builds the service on a listener already bound (a test that must know its
    /// address before it writes the config, for `public_url`).
    pub async fn on(listener: TcpListener, config: FulfilmentConfig) -> anyhow::Result<Self> {
        let db = platform::db::connect_migrated(&config.database_url, POOL_SIZE).await?;
        let meetings = Meetings {
            jitsi: Jitsi {
                base: config.jitsi_base.clone(),
                secret: config.link_secret.clone(),
            },
            zoom: Zoom {
                api_base: config.zoom_api_base.clone(),
                token: config.zoom_token.clone(),
                http: reqwest::Client::new(),
            },
            google_meet: GoogleMeet,
        };
        let state = AppState {
            db,
            mailer: Arc::new(Mailer::new(&config.smtp_url, &config.mail_from)?),
            meetings: Arc::new(meetings),
            metrics: Metrics::new(),
            wake: Arc::default(),
            config: Arc::new(config),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// The service's state (pool, mailer, config), for tests and the bench.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves `/join` until `shutdown` stops. With `config.workers`, the JetStream
    /// consumer (restarted if it fails) and the sender, reconciler and reminders run
    /// beside it, and every one of them stops with it.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self { listener, state } = self;
        let mut tasks = tokio::task::JoinSet::new();
        if state.config.workers {
            let js = async_nats::jetstream::new(
                contract::stream::connect(&state.config.nats_url)
                    .await
                    .context("connecting to NATS")?,
            );
            tasks.spawn(run_workers(state.clone(), shutdown.clone()));
            tasks.spawn(consume(state.clone(), js, shutdown.clone()));
        }
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.stopped())
            .await?;
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Runs the service on its own task (tests, the bench); it stops with `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        tokio::spawn(self.run_until_stopped(shutdown))
    }
}

/// The consumer, started again a second after it fails, until `shutdown` stops.
async fn consume(state: AppState, js: async_nats::jetstream::Context, shutdown: Shutdown) {
    while !shutdown.is_stopped() {
        match crate::consumer::run(state.clone(), js.clone(), shutdown.clone().stopped()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "consumer stopped; restarting");
                tokio::select! {
                    _ = shutdown.clone().stopped() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
