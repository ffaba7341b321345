//! The orders service (reads DATABASE_URL, ORDERS_LISTEN, ...).

use std::sync::Arc;

use orders::app::{AppState, router};
use orders::config::OrdersConfig;
use orders::telemetry::HttpMetrics;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = OrdersConfig::from_env();
    let db = orders::db::connect(&config.database_url, 20).await?;
    orders::db::migrate(&db).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    tracing::info!(listen = %config.listen, "orders starting");
    let state = AppState {
        db,
        config: Arc::new(config),
        metrics: HttpMetrics::new("orders"),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
