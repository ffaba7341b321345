//! Live admission settings: what the operator turns during an on-sale.
//!
//! A change is validated, written to Postgres with its audit row (before and after),
//! applied to Redis, and only then committed; if Redis refuses, nothing changes. The
//! gateways re-read Redis every 200 ms, so a change bites everywhere within a second.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use waitroom::EventSlug;
use waitroom::queue::Waitroom;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Operator, STAFF};

/// The settings as the API shows them: what is live in Redis, plus the queue's figures.
#[derive(Debug, Serialize)]
pub struct AdmissionView {
    #[serde(flatten)]
    pub settings: AdmissionSettings,
    pub waiting: u64,
    pub admitted_total: u64,
    pub active: u64,
    pub observed_admissions_per_minute: f64,
}

/// A partial change: absent fields keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionChange {
    pub mode: Option<Mode>,
    pub rate_per_minute: Option<u32>,
    pub max_active: Option<u32>,
    pub admission_ttl_seconds: Option<u32>,
    pub opens_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

fn slug(s: &str) -> Result<EventSlug, ConsoleError> {
    EventSlug::parse(s).map_err(|_| orders::Error::NotFound("event").into())
}

async fn view(room: &Waitroom, event: &EventSlug) -> Result<AdmissionView, ConsoleError> {
    let snap = room.snapshot(event).await?;
    Ok(AdmissionView {
        waiting: snap.tail.saturating_sub(snap.head),
        admitted_total: snap.head,
        active: snap.active,
        observed_admissions_per_minute: snap.observed_per_min,
        settings: snap.settings,
    })
}

pub async fn show(
    State(s): State<AppState>,
    operator: Operator,
    Path(event): Path<String>,
) -> Result<Json<AdmissionView>, ConsoleError> {
    let (event, _) = crate::live::visible_event(&s.db, &operator, &event).await?;
    Ok(Json(view(&s.room, &event).await?))
}

pub async fn update(
    State(s): State<AppState>,
    operator: Operator,
    Path(event): Path<String>,
    body: Result<Json<AdmissionChange>, JsonRejection>,
) -> Result<Json<AdmissionView>, ConsoleError> {
    operator.require(STAFF)?;
    let Json(change) = body?;
    let slug = slug(&event)?;
    let mut tx = s.db.begin().await?;
    let stored = orders::events::lock_by_slug(&mut tx, slug.as_str())
        .await?
        .ok_or(orders::Error::NotFound("event"))?;
    // The live mode may differ from the stored one (the admitter opens a pre-queue).
    let before = match s.room.settings(&slug).await? {
        Some(live) => live,
        None => stored.admission(),
    };
    let mut after = AdmissionSettings {
        mode: change.mode.unwrap_or(before.mode),
        rate_per_minute: change.rate_per_minute.unwrap_or(before.rate_per_minute),
        max_active: change.max_active.unwrap_or(before.max_active),
        admission_ttl_seconds: change
            .admission_ttl_seconds
            .unwrap_or(before.admission_ttl_seconds),
        opens_at: change.opens_at.or(before.opens_at),
    };
    // Opening a pre-queue means drawing it: keep the mode and let the admitter draw now,
    // rather than strand the pre-queue entrants without places.
    if before.mode == Mode::Prequeue && after.mode == Mode::On {
        after.mode = Mode::Prequeue;
        after.opens_at = Some(Utc::now());
    }
    after.validate()?;
    orders::events::set_admission(&mut tx, stored.id, &after).await?;
    audit::record(
        &mut tx,
        &operator,
        Entry {
            action: "admission.update",
            event_id: Some(stored.id),
            subject: slug.as_str(),
            before: Some(serde_json::to_value(&before).expect("settings serialise")),
            after: Some(serde_json::to_value(&after).expect("settings serialise")),
            reason: change.reason.as_deref(),
        },
    )
    .await?;
    s.room.apply_settings(&slug, &after).await?;
    tx.commit().await?;
    tracing::info!(event = %slug, mode = %after.mode, rate = after.rate_per_minute, "admission changed");
    Ok(Json(view(&s.room, &slug).await?))
}

/// Keeps Redis knowing every event. An event missing from Redis (a restart without
/// persistence, a failed mirror) is restored *paused* when its queue was admitting:
/// the queue's places are gone, and admitting on fresh counters would let newcomers
/// overtake people who waited. Holders of admission tokens keep buying meanwhile (the
/// gateway checks those without Redis); an operator resumes when ready.
pub async fn mirror(s: &AppState) -> Result<u32, ConsoleError> {
    let mut restored = 0;
    for event in orders::events::list(&s.db).await? {
        let slug = event.slug();
        if s.room.settings(&slug).await?.is_some() {
            continue;
        }
        let mut settings = event.admission();
        if matches!(settings.mode, Mode::On | Mode::Prequeue) {
            settings.mode = Mode::Paused;
        }
        s.room.apply_settings(&slug, &settings).await?;
        s.room.set_title(&slug, &event.title).await?;
        tracing::warn!(event = %slug, mode = %settings.mode, "queue state missing in redis; restored");
        restored += 1;
    }
    Ok(restored)
}

pub async fn mirror_forever(s: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = mirror(&s).await {
            tracing::warn!(error = %e, "admission mirror failed");
        }
    }
}
