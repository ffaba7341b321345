//! The console's router and shared state.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use orders::telemetry::HttpMetrics;
use sqlx::PgPool;
use waitroom::queue::Waitroom;

use crate::{admission, events};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub room: Waitroom,
    pub metrics: HttpMetrics,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/events", get(events::list).post(events::create))
        .route("/events/{event}", get(events::show))
        .route(
            "/events/{event}/admission",
            get(admission::show).put(admission::update),
        );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .nest("/console/api", api)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            orders::telemetry::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(state)
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let db = sqlx::query("SELECT 1").execute(&s.db).await.is_ok();
    let redis = s.room.ping().await.is_ok();
    if db && redis {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "dependencies unreachable")
    }
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}
