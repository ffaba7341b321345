//! The development SMTP sink: `smtp-sink` accepts mail on SMTP_SINK_LISTEN
//! (127.0.0.1:2525), keeps each message as an .eml file in SMTP_SINK_DIR
//! (target/stack/mail) and lists them over HTTP on SMTP_SINK_HTTP (127.0.0.1:2580):
//! `GET /messages`, `GET /messages/{id}` (raw), `PUT /refusing` (`true`/`false`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use fulfilment::sink::Sink;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::logs::init();
    use platform::env::var;
    let sink = Sink::start(
        &var("SMTP_SINK_LISTEN", "127.0.0.1:2525"),
        Some(var("SMTP_SINK_DIR", "target/stack/mail").into()),
    )
    .await?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/messages", get(list))
        .route("/messages/{id}", get(raw))
        .route("/refusing", put(refusing))
        .with_state(sink.clone());
    let http = var("SMTP_SINK_HTTP", "127.0.0.1:2580");
    tracing::info!(smtp = %sink.addr, %http, "smtp sink listening");
    axum::serve(tokio::net::TcpListener::bind(&http).await?, app).await?;
    Ok(())
}

async fn list(State(sink): State<Sink>) -> axum::Json<Vec<serde_json::Value>> {
    axum::Json(
        sink.messages()
            .iter()
            .map(|m| {
                serde_json::json!({"id": m.id, "from": m.from, "to": m.to, "received_at": m.received_at,
                                   "subject": m.header("Subject"), "message_id": m.header("Message-ID")})
            })
            .collect(),
    )
}

async fn raw(State(sink): State<Sink>, Path(id): Path<u64>) -> impl IntoResponse {
    match sink.messages().into_iter().find(|m| m.id == id) {
        Some(m) => (StatusCode::OK, m.raw).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn refusing(State(sink): State<Sink>, body: String) -> StatusCode {
    sink.set_refusing(body.trim() == "true");
    StatusCode::NO_CONTENT
}
