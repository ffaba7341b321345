//! The control room page: a server-rendered shell (the event, its settings, tiers and
//! recent changes as they are when the page loads) that `control-room.js` brings to
//! life from the live feed. Staff get the controls, which call the admission API;
//! hosts get the same charts and the funnel, read-only.
//!
//! The page (the template `control_room.html`, its own document rather than the
//! console's layout) runs no inline script or style, so its Content-Security-Policy
//! allows only its own origin. Assets are compiled into the binary and served with a version query
//! so a new build is never hidden behind a cached old file.

use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use waitroom::settings::Mode;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit;
use crate::auth::{Operator, STAFF, SignedIn};
use crate::html;
use crate::moment::{self, Moment, Precision};

/// Static files of the page: name, content type, body.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "control-room.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/control-room.js"),
    ),
    (
        "control-room.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/control-room.css"),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/uplot.min.css"),
    ),
];

/// A digest of the assets: it changes whenever one does, so a cached old file is never
/// served to a new page.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (name, _, body) in ASSETS {
        h.update(name.as_bytes());
        h.update(body);
    }
    hex::encode(&h.finalize()[..6])
});

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /console/assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => ConsoleError::from(orders::Error::NotFound("asset")).into_response(),
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Off => "Queue off",
        Mode::Prequeue => "Pre-queue",
        Mode::On => "Admitting",
        Mode::Paused => "Paused",
        Mode::SoldOut => "Sold out",
        Mode::Closed => "Closed",
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// `host`: staff see the page as a host does (read-only), e.g. to share a screen.
    pub view: Option<String>,
}

/// `GET /console/events/{event}/live`.
pub async fn page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(event): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    let read_only = params.view.as_deref() == Some("host");
    match view(&s, &operator, &event, read_only).await {
        Ok(ctx) => {
            let mut page = html::render("control_room.html", Some(&operator), ctx);
            if page.status() == StatusCode::OK {
                let headers = page.headers_mut();
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            page
        }
        Err(e) => html::error_page(Some(&operator), &e),
    }
}

/// A row of the tiers table.
#[derive(Serialize)]
struct TierRow {
    code: String,
    name: String,
    sold: i32,
    held: i32,
    capacity: i32,
}

/// A change in the audit list (staff only).
#[derive(Serialize)]
struct Change {
    at: Moment,
    actor: String,
    what: String,
    why: Option<String>,
}

/// The event's shell as `control_room.html` shows it.
#[derive(Serialize)]
struct RoomEvent {
    slug: String,
    title: String,
    timezone: String,
}

async fn view(
    s: &AppState,
    operator: &Operator,
    event: &str,
    read_only: bool,
) -> Result<minijinja::Value, ConsoleError> {
    let (slug, found) = crate::auth::visible_event(&s.db, operator, event).await?;
    let settings = match s.room.settings(&slug).await {
        Ok(Some(live)) => live,
        _ => found.admission(),
    };
    let tiers: Vec<TierRow> = orders::events::tiers(&s.db, found.id)
        .await?
        .into_iter()
        .map(|t| TierRow {
            code: t.code,
            name: t.name,
            sold: t.sold,
            held: t.held,
            capacity: t.capacity,
        })
        .collect();
    let can_steer = operator.require(STAFF).is_ok() && !read_only;

    let audit: Vec<Change> = if can_steer {
        let tz = moment::zone(&found.timezone);
        // Refused attempts (`*.refused`) are in the audit trail, but they changed nothing.
        let mut rows = audit::for_event(&s.db, found.id, 20).await?;
        rows.retain(|r| !r.action.ends_with(".refused"));
        rows.into_iter()
            .map(|r| Change {
                at: moment::at(r.at, tz, Precision::Second),
                what: if r.action == "admission.update" {
                    crate::live::summarise(&r.action, r.before.as_ref(), r.after.as_ref())
                } else {
                    r.action
                },
                actor: r.actor,
                why: r.reason,
            })
            .collect()
    } else {
        Vec::new()
    };

    let mode = settings.mode;
    let rate = settings.rate_per_minute;
    // The slider spans up to three times today's rate (at least 1,200/min); the number
    // box beside it takes any value, and the slider grows to match.
    let range_max = (rate.saturating_mul(3).div_ceil(100) * 100).clamp(1_200, 1_000_000);
    Ok(context! {
        e => RoomEvent {
            slug: slug.as_str().to_owned(),
            title: found.title,
            timezone: found.timezone,
        },
        v => &*ASSET_VERSION,
        can_steer,
        read_only,
        mode => mode.as_str(),
        mode_label => mode_label(mode),
        rate,
        range_max,
        max_active => settings.max_active,
        tiers,
        audit,
    })
}
