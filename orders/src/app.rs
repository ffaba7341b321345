//! The orders service's router: buyer API, buyer pages and probes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;

use crate::config::OrdersConfig;
use crate::events::{self, PublicEvent};
use crate::telemetry::HttpMetrics;
use crate::{Error, pages};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<OrdersConfig>,
    pub metrics: HttpMetrics,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/events/{slug}", get(event_json))
        .route("/e/{slug}", get(event_page))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::telemetry::track,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .with_state(state)
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&s.db).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}

async fn load(db: &PgPool, slug: &str) -> Result<PublicEvent, Error> {
    let event = events::by_slug(db, slug)
        .await?
        .ok_or(Error::NotFound("event"))?;
    let tiers = events::tiers(db, event.id).await?;
    Ok(PublicEvent::new(&event, &tiers))
}

async fn event_json(
    State(s): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<PublicEvent>, Error> {
    Ok(Json(load(&s.db, &slug).await?))
}

async fn event_page(
    State(s): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Html<String>, Error> {
    Ok(Html(pages::event(&load(&s.db, &slug).await?)))
}
