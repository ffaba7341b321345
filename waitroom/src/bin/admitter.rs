//! The admitter process: `admitter` (reads REDIS_URL, ADMITTER_LISTEN, ...).
//! Run several for failover; only the lease holder admits.

use std::sync::Arc;

use waitroom::admission::Admitter;
use waitroom::config::AdmitterConfig;
use waitroom::queue::Waitroom;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::logs::init();
    let cfg = AdmitterConfig::from_env()?;
    let room = Waitroom::connect(&cfg.redis).await?;
    let admitter = Arc::new(Admitter::new(room.clone(), cfg.lease));
    tracing::info!(owner = admitter.owner(), listen = %cfg.listen, "admitter starting");

    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    let health = waitroom::health::router(room.clone(), admitter.clone());
    let server = tokio::spawn(async move { axum::serve(listener, health).await });

    admitter.run(cfg.tick, platform::shutdown::signal()).await;
    server.abort();
    Ok(())
}
