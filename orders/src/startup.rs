//! Starting the orders service: the one path the binary, the tests and the benches take
//! (in the manner of zero2prod's `Application`), so what the tests run is what
//! production runs and nobody assembles an [`AppState`] by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use platform::metrics::HttpMetrics;
use platform::shutdown::Shutdown;
use tokio::net::TcpListener;
use waitroom::queue::Waitroom;
use waitroom::tokens::TokenVerifier;

use crate::app::{AppState, router};
use crate::catalog::Catalog;
use crate::config::OrdersConfig;
use crate::holds::HoldDesk;
use crate::jobs;
use crate::payments::StripeApi;

/// Postgres connections of one orders process.
const POOL_SIZE: u32 = 20;

/// A built orders service, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and builds the service.
    pub async fn build(config: OrdersConfig, verifier: TokenVerifier) -> anyhow::Result<Self> {
        let listener = platform::listener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Self::on(listener, config, verifier).await
    }

    /// Builds the service on a listener already bound (a test that must know its
    /// address before it writes the config, for `public_url`).
    pub async fn on(
        listener: TcpListener,
        config: OrdersConfig,
        verifier: TokenVerifier,
    ) -> anyhow::Result<Self> {
        let db = platform::db::connect_migrated(&config.database_url, POOL_SIZE).await?;
        let room = Waitroom::connect(&config.redis)
            .await
            .context("connecting to Redis")?;
        let p = &config.payments;
        let provider = Arc::new(StripeApi::new(
            p.provider,
            &p.api_base,
            &p.pay_base,
            p.secret_key.expose(),
        ));
        let state = AppState {
            holds: HoldDesk::with_writers(db.clone(), config.hold_writers_per_tier)
                .per_buyer(config.holds_per_buyer),
            sellout: Default::default(),
            catalog: Catalog::new(db.clone()),
            db,
            config: Arc::new(config),
            metrics: HttpMetrics::new("orders"),
            provider,
            intent_states: Default::default(),
            room,
            verifier,
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// The running service's state (its pool, queue, provider), for tests and benches.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` stops, draining requests; with `config.workers`, the
    /// sweeper, reconciler and job runner run beside it and stop with it.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let Self { listener, state } = self;
        let workers = state
            .config
            .workers
            .then(|| tokio::spawn(jobs::run_workers(state.clone(), shutdown.clone())));
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.stopped())
            .await;
        if let Some(w) = workers {
            let _ = w.await;
        }
        served
    }

    /// Runs the service on its own task (tests, benches); it stops with `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(self.run_until_stopped(shutdown))
    }
}
