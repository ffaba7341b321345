//! The orders service (reads DATABASE_URL, ORDERS_LISTEN, PAYMENTS_*, ...).

use std::sync::Arc;

use orders::app::{AppState, router};
use orders::config::OrdersConfig;
use orders::holds::HoldDesk;
use orders::payments::StripeApi;
use orders::telemetry::HttpMetrics;
use waitroom::queue::Waitroom;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = OrdersConfig::from_env()?;
    let db = orders::db::connect(&config.database_url, 20).await?;
    orders::db::migrate(&db).await?;
    let room = Waitroom::connect(&config.redis).await?;
    let verifier = waitroom::config::verifier_from_env()?;
    let p = &config.payments;
    let provider = Arc::new(StripeApi::new(
        p.provider,
        &p.api_base,
        &p.pay_base,
        p.secret_key.expose(),
    ));
    let listener = orders::listener::bind(&config.listen).await?;
    tracing::info!(listen = %config.listen, provider = p.provider, "orders starting");
    let state = AppState {
        holds: HoldDesk::with_writers(db.clone(), config.hold_writers_per_tier)
            .per_buyer(config.holds_per_buyer),
        sellout: Default::default(),
        catalog: orders::catalog::Catalog::new(db.clone()),
        db,
        config: Arc::new(config),
        metrics: HttpMetrics::new("orders"),
        provider,
        room,
        verifier,
    };
    if state.config.workers {
        tokio::spawn(orders::jobs::run_workers(state.clone()));
    }
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
