//! The fulfilment service: JetStream consumer, email sender, `/join` (FULFILMENT_LISTEN).

use std::sync::Arc;

use fulfilment::app::{AppState, Metrics, router, run_workers};
use fulfilment::config::FulfilmentConfig;
use fulfilment::mail::Mailer;
use fulfilment::meetings::{GoogleMeet, Jitsi, Meetings, Zoom};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = FulfilmentConfig::from_env()?;
    let db = orders::db::connect(&config.database_url, 10).await?;
    orders::db::migrate(&db).await?;
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
    let js = async_nats::jetstream::new(async_nats::connect(&state.config.nats_url).await?);
    let listener = orders::listener::bind(&state.config.listen).await?;
    tracing::info!(listen = %state.config.listen, "fulfilment starting");
    tokio::spawn(run_workers(state.clone()));
    let consumer_state = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = fulfilment::consumer::run(
                consumer_state.clone(),
                js.clone(),
                std::future::pending(),
            )
            .await
            {
                tracing::warn!(error = %e, "consumer stopped; restarting");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
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
