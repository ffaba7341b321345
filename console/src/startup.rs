//! Starting the console: the one path the binary, the tests and the search bench take,
//! so what they run is what production runs and nobody assembles an [`AppState`] by hand.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use platform::metrics::HttpMetrics;
use platform::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;
use waitroom::queue::Waitroom;

use crate::app::{AppState, router};
use crate::config::ConsoleConfig;
use crate::live::Hub;

/// Postgres connections of one console process (the live feeds have their own).
pub const POOL_SIZE: u32 = 10;

/// How often the live metrics are exported for Prometheus.
const EXPORT_EVERY: Duration = Duration::from_secs(15);

/// A built console, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    workers: bool,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and builds the console.
    pub async fn build(config: ConsoleConfig) -> anyhow::Result<Self> {
        let listener = platform::listener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let db = connect(&config).await?;
        Self::on(listener, db, config).await
    }

    /// Builds the console on a bound listener and a migrated pool (tests and the bench
    /// keep their own handle on the database).
    pub async fn on(
        listener: TcpListener,
        db: PgPool,
        config: ConsoleConfig,
    ) -> anyhow::Result<Self> {
        let room = Waitroom::connect(&config.redis)
            .await
            .context("connecting to Redis")?;
        let metrics = HttpMetrics::new("console");
        let live = Hub::new(&metrics.registry, config.feed_linger);
        let reads = match &config.database_read_url {
            Some(url) => platform::db::connect(url, POOL_SIZE)
                .await
                .context("connecting to the read replica")?,
            None => db.clone(),
        };
        let state = AppState {
            reads_replica: config.database_read_url.is_some(),
            reads,
            db,
            room,
            metrics,
            live,
            public_url: config.public_url.trim_end_matches('/').into(),
            secure_cookies: config.secure_cookies,
        };
        Ok(Self {
            listener,
            state,
            workers: config.workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// The console's state (pool, queue, live feeds), for tests and the bench.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` stops; with `config.workers`, the admission mirror and
    /// the live metrics export run beside it and stop with it.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let Self {
            listener,
            state,
            workers,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        if workers {
            tasks.spawn(until(
                shutdown.clone(),
                crate::admission::mirror_forever(state.clone(), crate::admission::MIRROR_EVERY),
            ));
            tasks.spawn(until(
                shutdown.clone(),
                crate::live::export_forever(state.clone(), EXPORT_EVERY),
            ));
        }
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.stopped())
            .await;
        while tasks.join_next().await.is_some() {}
        served
    }

    /// Runs the console on its own task (tests); it stops with `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(self.run_until_stopped(shutdown))
    }
}

/// The console's pool, migrated (also for its command-line tasks).
pub async fn connect(config: &ConsoleConfig) -> anyhow::Result<PgPool> {
    Ok(platform::db::connect_migrated(&config.database_url, POOL_SIZE).await?)
}

/// Runs a periodic task until `shutdown` stops; its step under way is dropped at an
/// await point, which these tasks (a read-and-upsert mirror, a metrics export) allow.
async fn until(shutdown: Shutdown, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = shutdown.stopped() => {}
        _ = task => {}
    }
}
