//! The live control room's feed: one snapshot a second per watched event, shared by
//! everyone watching it.
//!
//! `GET /console/api/events/{event}/live` is a Server-Sent Events stream. The first
//! message (`history`) carries the last 30 minutes as columns for the charts plus the
//! latest snapshot; then one `snapshot` message a second; a `problem` message when a
//! store could not be read (the page says the figures are stale, the stream stays open).
//!
//! The cost does not grow with the audience: the [`Hub`] runs **one feed task per
//! watched event**, started by the first viewer and stopped when the last one has been
//! gone for the hub's linger (so a page reload does not lose the in-memory history).
//! Each second the feed makes one Redis call ([`Waitroom::figures`], a single script)
//! and one aggregate Postgres query, serialises the snapshot once, and publishes it on a
//! `tokio::sync::watch` channel; a viewer's stream only clones an `Arc` of the latest
//! frame. A slow viewer skips frames instead of holding anyone up. Starting a feed also
//! reads the per-minute counters and sales of the last 30 minutes once, so the charts
//! are never empty.
//!
//! Rates: `arrivals_per_min` and `admitted_per_min` are measured over the feed's last
//! 10 s of samples of the per-minute counters (so a rate change shows within seconds),
//! falling back to a sliding minute built from the two newest minute buckets while a
//! feed is younger than that. `holds_converted_per_min` is paid orders in the last 60 s:
//! the rate checkout actually keeps up with.
//!
//! The same figures are exported as Prometheus metrics (`floodgate_queue_*`,
//! `floodgate_tier_*`, `floodgate_orders_paid_total`, ...) by the feeds and, for
//! events nobody watches, by [`export_forever`] every 15 s.
//!
//! Layout: [`snapshot`] (what one second shows), [`history`] (the charts' memory and
//! its backfill), [`hub`] (the feeds and the export), [`metrics`] (the same figures for
//! Prometheus); the handlers are here.

mod history;
mod hub;
mod metrics;
mod snapshot;

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, AuditRow};
use crate::auth::{Operator, visible_event};
use crate::error::{ApiPath, ApiQuery};

/// How far back the charts reach.
const WINDOW_SECONDS: i64 = 30 * 60;
/// The window over which live per-minute rates are measured.
const RATE_WINDOW_MS: i64 = 10_000;
/// A feed needs this much of its own history before it trusts its window rate.
const RATE_MIN_SPAN_MS: i64 = 4_000;

/// The routes of the live control room: the feed, the page, its assets, the audit list.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/api/events/{event}/live", get(stream))
        .route("/console/api/events/{event}/audit", get(audit_log))
        .route(
            "/console/events/{event}/live",
            get(crate::control_room::page),
        )
        .route("/console/assets/{file}", get(crate::control_room::asset))
}

pub use hub::{Hub, Subscription, export_forever, export_once};
pub(crate) use snapshot::summarise;
pub use snapshot::{CheckoutPace, Funnel, LiveSnapshot, Marker, TierFigures};

/// `GET /console/api/events/{event}/live`: the Server-Sent Events stream.
pub async fn stream(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(event): ApiPath<String>,
) -> Result<Response, ConsoleError> {
    let (slug, _) = visible_event(&s.db, &operator, &event).await?;
    let subscription = s.live.subscribe(&s.reads, &s.room, &slug);
    let events = futures::stream::unfold(subscription, |mut sub| async move {
        let (kind, data) = sub.next().await?;
        Some((Ok(SseEvent::default().event(kind).data(&*data)), sub))
    });
    Ok(sse(events))
}

fn sse(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    (
        // Proxies must not buffer the stream (nginx honours this header).
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        // Below the gateway's 30 s upstream read timeout.
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<i64>,
}

/// `GET /console/api/events/{event}/audit`: the event's operator changes, newest first.
pub async fn audit_log(
    State(s): State<AppState>,
    operator: Operator,
    ApiPath(event): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ConsoleError> {
    let (_, found) = visible_event(&s.db, &operator, &event).await?;
    let rows = audit::for_event(&s.db, found.id, q.limit.unwrap_or(50).clamp(1, 500)).await?;
    // An address fix's row names the addresses: a host sees them as the event allows.
    let shown = crate::privacy::Shown::for_event(&s.db, &operator, found.id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|mut row| {
                for v in [&mut row.before, &mut row.after].into_iter().flatten() {
                    shown.json(v);
                }
                shown.text_in(&mut row.reason);
                AuditEntry {
                    summary: summarise(&row.action, row.before.as_ref(), row.after.as_ref()),
                    row,
                }
            })
            .collect(),
    ))
}

/// An audit row with its human summary.
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    #[serde(flatten)]
    pub row: AuditRow,
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::json;
    use waitroom::figures::Figures;
    use waitroom::settings::AdmissionSettings;

    use super::history::{FeedState, counter_growth};
    use super::summarise;

    fn figures(minute: i64, arrivals: [u64; 2], admitted: [u64; 2], at_ms: i64) -> Figures {
        Figures {
            settings: AdmissionSettings::default(),
            head: 0,
            tail: 0,
            claimed: 0,
            active: 0,
            unclaimed: 0,
            observed_per_min: 0.0,
            prequeue: 0,
            drawn: false,
            minute,
            arrivals,
            admitted,
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
        }
    }

    #[test]
    fn minute_buckets_are_stitched_across_a_minute_boundary() {
        assert_eq!(counter_growth(10, [5, 40], 10, [9, 40]), 4);
        assert_eq!(counter_growth(10, [5, 40], 11, [3, 8]), 3 + 3);
        assert_eq!(counter_growth(10, [5, 40], 14, [3, 8]), 11);
    }

    #[test]
    fn window_rates_follow_a_change_within_seconds() {
        let mut st = FeedState::default();
        let base = 600_000 * 60; // a minute boundary, in ms
        // 60/min admitted for 10 s (1 per second)...
        for i in 0..=10 {
            let f = figures(
                base / 60_000 + i / 60,
                [0, 0],
                [i as u64, 0],
                base + i * 1000,
            );
            st.rates(&f);
        }
        let (_, adm) = st.rates(&figures(base / 60_000, [0, 0], [11, 0], base + 11_000));
        assert!((adm - 60.0).abs() < 1.0, "{adm}");
        // ...then 600/min (10 per second): within 5 s the rate is well above 300.
        let mut admitted = 11;
        let mut last = 0.0;
        for i in 12..=16 {
            admitted += 10;
            last = st
                .rates(&figures(
                    base / 60_000,
                    [0, 0],
                    [admitted, 0],
                    base + i * 1000,
                ))
                .1;
        }
        assert!(last > 300.0, "{last}");
    }

    #[test]
    fn a_young_feed_uses_the_sliding_minute() {
        let mut st = FeedState::default();
        // 30 s into a minute: all of this minute plus half of the previous one.
        let (arr, _) = st.rates(&figures(100, [10, 40], [0, 0], (100 * 60 + 30) * 1000));
        assert!((arr - 30.0).abs() < 0.01, "{arr}");
    }

    #[test]
    fn changes_are_summarised_field_by_field() {
        let before = json!({"mode": "on", "rate_per_minute": 120, "max_active": 50});
        let after = json!({"mode": "paused", "rate_per_minute": 600, "max_active": 50});
        assert_eq!(
            summarise("admission.update", Some(&before), Some(&after)),
            "mode on → paused, rate 120 → 600/min"
        );
        assert_eq!(
            summarise("event.create", None, Some(&after)),
            "event create"
        );
    }
}
