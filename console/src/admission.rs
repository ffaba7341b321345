//! Live admission settings: what the operator turns during an on-sale.
//!
//! A change is validated, written to Postgres with its audit row (before and after),
//! applied to Redis, and only then committed; if Redis refuses, nothing changes. The
//! gateways re-read Redis every 200 ms, so a change bites everywhere within a second.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use waitroom::EventSlug;
use waitroom::queue::Waitroom;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Operator, STAFF};
use crate::error::{ApiJson, ApiPath};

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
    ApiPath(event): ApiPath<String>,
) -> Result<Json<AdmissionView>, ConsoleError> {
    let (event, _) = crate::auth::visible_event(&s.db, &operator, &event).await?;
    Ok(Json(view(&s.room, &event).await?))
}

pub async fn update(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(event): ApiPath<String>,
    ApiJson(change): ApiJson<AdmissionChange>,
) -> Result<Json<AdmissionView>, ConsoleError> {
    operator.require(STAFF)?;
    Ok(Json(update_with(&s, &operator, &event, change).await?))
}

/// What the queue of an event is set to now: the live settings, or the stored ones
/// when Redis does not know the event (yet, or any more).
pub async fn current(
    s: &AppState,
    event: &orders::events::Event,
) -> Result<AdmissionSettings, ConsoleError> {
    Ok(match s.room.settings(&event.slug()).await? {
        Some(live) => live,
        None => event.admission(),
    })
}

/// Changes an event's admission settings (the API and the event's edit page): stored
/// with its audit row, applied to Redis, then committed.
pub async fn update_with(
    s: &AppState,
    operator: &Operator,
    event: &str,
    change: AdmissionChange,
) -> Result<AdmissionView, ConsoleError> {
    operator.require(STAFF)?;
    let slug = slug(event)?;
    let mut tx = s.db.begin().await?;
    let stored = orders::events::lock_by_slug(&mut tx, slug.as_str())
        .await?
        .ok_or(orders::Error::NotFound("event"))?;
    // The live mode may differ from the stored one (the admitter opens a pre-queue).
    // A queue Redis has lost is restored first, so that this change cannot recreate
    // it with counters from zero.
    if s.room.settings(&slug).await?.is_none() {
        restore(s, &stored).await?;
    }
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
        operator,
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
    view(&s.room, &slug).await
}

/// How often the console marks every live queue and looks for lost ones.
pub const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// Keeps Redis knowing every event, and Postgres knowing where every queue stands.
///
/// A known event's counters are marked (see `waitroom::recovery`). An event missing
/// from Redis (a restart without persistence, a failed mirror) is restored from its
/// mark, and *paused* when its queue was admitting: admitting at once would race the
/// people whose places were lost back to their pages. Holders of admission tokens keep
/// buying meanwhile (orders checks those without Redis); an operator resumes when ready.
pub async fn mirror(s: &AppState) -> Result<u32, ConsoleError> {
    let mut restored = 0;
    for event in orders::events::list(&s.db).await? {
        match s.room.mark(&event.slug()).await? {
            Some(mark) => record_mark(s, &event, mark).await?,
            None => {
                if restore(s, &event).await? {
                    restored += 1;
                }
            }
        }
    }
    Ok(restored)
}

async fn record_mark(
    s: &AppState,
    event: &orders::events::Event,
    mark: waitroom::recovery::Mark,
) -> Result<(), ConsoleError> {
    let stored = sqlx::query!(
        r#"INSERT INTO queue_marks AS m (event_id, admitted_through, tail)
           VALUES ($1, $2, $3)
           ON CONFLICT (event_id) DO UPDATE SET
               -- Marks never move back: lower counters in Redis mean they were lost
               -- and recreated from zero (fixed below), not that places came back.
               admitted_through = GREATEST(m.admitted_through, EXCLUDED.admitted_through),
               tail = GREATEST(m.tail, EXCLUDED.tail),
               joins_per_second = GREATEST(
                   (EXCLUDED.tail - m.tail)
                       / GREATEST(extract(epoch FROM now() - m.marked_at)::float8, 0.001),
                   m.joins_per_second * 0.9),
               marked_at = now()
           RETURNING admitted_through, tail, joins_per_second"#,
        event.id,
        mark.admitted_through as i64,
        mark.tail as i64,
    )
    .fetch_one(&s.db)
    .await?;
    if (stored.tail as u64) > mark.tail {
        // Something recreated the queue from zero before this console restored it:
        // raise the counters before more places are handed out twice.
        let tail = stored.tail as u64 + margin(stored.joins_per_second, MIRROR_EVERY);
        s.room
            .raise_counters(&event.slug(), stored.admitted_through as u64, tail)
            .await?;
        tracing::warn!(event = %event.slug, "queue counters were behind their mark; raised");
    }
    Ok(())
}

/// Places that may have been handed out after the last mark and before the loss: the
/// recent arrival rate over the time since the mark (at most five seconds: an older
/// mark means this console was away, and the rate is no guide then) and one period
/// more, plus fifty. Not more: every empty place the admitter reaches takes an active
/// slot until its admission deadline, so a wide margin stalls the resumed queue. A
/// place beyond the margin is not lost either: its holder's next poll moves the
/// counter past it (the gateway's part of `waitroom::recovery`).
fn margin(joins_per_second: f64, since_mark: Duration) -> u64 {
    let window = since_mark.min(Duration::from_secs(5)) + MIRROR_EVERY;
    (joins_per_second * window.as_secs_f64()).ceil() as u64 + 50
}

/// Restores one event Redis does not know, from its mark; false if another console
/// was quicker.
async fn restore(s: &AppState, event: &orders::events::Event) -> Result<bool, ConsoleError> {
    let slug = event.slug();
    let mut settings = event.admission();
    if matches!(settings.mode, Mode::On | Mode::Prequeue) {
        settings.mode = Mode::Paused;
    }
    let mark = sqlx::query!(
        r#"SELECT admitted_through, tail, joins_per_second,
                  extract(epoch FROM now() - marked_at)::float8 AS "age!"
           FROM queue_marks WHERE event_id = $1"#,
        event.id
    )
    .fetch_optional(&s.db)
    .await?;
    let (through, tail) = match &mark {
        Some(m) => (
            m.admitted_through as u64,
            m.tail as u64 + margin(m.joins_per_second, Duration::from_secs_f64(m.age.max(0.0))),
        ),
        None => (0, 0),
    };
    let restored = s
        .room
        .restore(&slug, &settings, &event.title, through, tail)
        .await?;
    if restored {
        tracing::warn!(
            event = %slug, mode = %settings.mode, admitted_through = through, tail,
            "queue state missing in redis; restored from its mark"
        );
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
