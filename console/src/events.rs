//! Creating and listing events. An event is written to Postgres with its audit row in
//! one transaction, and its queue settings are mirrored to Redis before that commits,
//! so an event never exists without the waiting room knowing it (a Redis failure rolls
//! the creation back).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use orders::events::{self, Event, NewEventRequest, Tier};
use serde::Serialize;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Operator, STAFF};
use crate::error::{ApiJson, ApiPath};

#[derive(Serialize)]
pub struct EventView {
    #[serde(flatten)]
    pub event: Event,
    pub tiers: Vec<TierView>,
}

#[derive(Serialize)]
pub struct TierView {
    #[serde(flatten)]
    pub tier: Tier,
    pub available: i32,
}

impl EventView {
    fn new(event: Event, tiers: Vec<Tier>) -> Self {
        Self {
            event,
            tiers: tiers
                .into_iter()
                .map(|t| TierView {
                    available: t.available(),
                    tier: t,
                })
                .collect(),
        }
    }
}

pub async fn create(
    State(s): State<AppState>,
    operator: Operator,
    ApiJson(request): ApiJson<NewEventRequest>,
) -> Result<(StatusCode, Json<EventView>), ConsoleError> {
    Ok((
        StatusCode::CREATED,
        Json(create_with(&s, &operator, request).await?),
    ))
}

/// Creates an event (the API and the set-up page): validated, written with its audit
/// row, its queue settings mirrored to Redis before the commit.
pub async fn create_with(
    s: &AppState,
    operator: &Operator,
    request: NewEventRequest,
) -> Result<EventView, ConsoleError> {
    operator.require(STAFF)?;
    check_title(&request.title)?;
    let new = request.parse()?;
    let mut tx = s.db.begin().await?;
    let event = events::create(&mut tx, &new).await?;
    audit::record(
        &mut tx,
        operator,
        Entry {
            action: "event.create",
            event_id: Some(event.id),
            subject: &event.slug,
            before: None,
            after: Some(serde_json::to_value(&event).expect("event serialises")),
            reason: None,
        },
    )
    .await?;
    s.room.apply_settings(&new.slug, &new.admission).await?;
    s.room.set_title(&new.slug, &new.title).await?;
    tx.commit().await?;
    tracing::info!(event = %new.slug, "event created");
    let tiers = events::tiers(&s.db, event.id).await?;
    Ok(EventView::new(event, tiers))
}

/// An event's title goes into calendar invites, email subjects and the waiting room's
/// pages: a line break or other control character in it is refused here, where the
/// operator typing it is told, rather than being escaped in every one of those
/// places and shown as `\n`. (The `.ics` writer escapes anyway, for events stored
/// before this check.)
pub fn check_title(title: &str) -> Result<(), ConsoleError> {
    let control = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if title.contains(control) {
        return Err(ConsoleError::ControlCharacters("title"));
    }
    Ok(())
}

pub async fn list(
    State(s): State<AppState>,
    operator: Operator,
) -> Result<Json<Vec<Event>>, ConsoleError> {
    // Hosts see only their own events: another event's meeting details are not theirs.
    let mut all = events::list(&s.db).await?;
    all.retain(|e| operator.may_see(e.id));
    Ok(Json(all))
}

pub async fn show(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<EventView>, ConsoleError> {
    let (_, event) = crate::auth::visible_event(&s.db, &operator, &slug).await?;
    let tiers = events::tiers(&s.db, event.id).await?;
    Ok(Json(EventView::new(event, tiers)))
}
