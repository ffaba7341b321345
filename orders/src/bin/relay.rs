//! The outbox relay: publishes committed outbox rows to NATS JetStream
//! (reads DATABASE_URL, NATS_URL, FLOODGATE_NATS_STREAM, FLOODGATE_NATS_PREFIX, RELAY_LISTEN).

use axum::Router;
use axum::routing::get;
use orders::outbox::{Relay, StreamConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::logs::init();
    use platform::env::var;
    let db = platform::db::connect(
        &var(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/floodgate",
        ),
        4,
    )
    .await?;
    platform::db::migrate(&db).await?;
    let stream = StreamConfig::from_env().map_err(anyhow::Error::msg)?;
    let relay = Relay::connect(
        db,
        &var("NATS_URL", "nats://127.0.0.1:4222"),
        stream.clone(),
    )
    .await?;
    // `relay delete-stream`: removes the configured stream (throw-away test stacks).
    if std::env::args().nth(1).as_deref() == Some("delete-stream") {
        relay.jetstream().delete_stream(&stream.stream).await?;
        eprintln!("stream {} deleted", stream.stream);
        return Ok(());
    }
    let listen = var("RELAY_LISTEN", "127.0.0.1:8086");
    let listener = platform::listener::bind(&listen).await?;
    tokio::spawn(async move {
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        axum::serve(listener, app).await
    });
    tracing::info!(%listen, "relay starting");
    relay.run(platform::shutdown::signal()).await;
    Ok(())
}
