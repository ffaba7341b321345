//! The control room page: a server-rendered shell (the event, its settings, tiers and
//! recent changes as they are when the page loads) that `control-room.js` brings to
//! life from the live feed. Staff get the controls, which call the admission API;
//! hosts get the same charts and the funnel, read-only.
//!
//! The page runs no inline script or style, so its Content-Security-Policy allows only
//! its own origin. Assets are compiled into the binary and served with a version query
//! so a new build is never hidden behind a cached old file.

use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use platform::html::escape;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit;
use crate::auth::{Operator, STAFF};

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

fn number(label: &str, id: &str, hint: &str) -> String {
    format!(
        "<div class=\"figure\"><dt>{label}</dt><dd id=\"{id}\">—</dd>\
         <dd class=\"hint\" id=\"{id}-hint\">{hint}</dd></div>"
    )
}

fn chart(id: &str, title: &str, description: &str) -> String {
    format!(
        "<figure class=\"chart-card\"><figcaption id=\"{id}-title\">{title}</figcaption>\
         <div class=\"chart\" id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title\" \
         aria-describedby=\"{id}-desc\"></div><p class=\"chart-desc\" id=\"{id}-desc\">{description}</p></figure>"
    )
}

fn controls(settings: &AdmissionSettings) -> String {
    let rate = settings.rate_per_minute;
    let max = settings.max_active;
    // The slider spans up to three times today's rate (at least 1,200/min); the number
    // box beside it takes any value, and the slider grows to match.
    let range_max = (rate.saturating_mul(3).div_ceil(100) * 100).clamp(1_200, 1_000_000);
    format!(
        r#"<section class="card controls" aria-labelledby="controls-h">
<h2 id="controls-h">Steer admission</h2>
<form id="steer" novalidate>
  <div class="field">
    <label for="rate">Admission rate <span class="unit">per minute</span></label>
    <div class="rate-row">
      <input type="range" id="rate-range" min="0" max="{range_max}" step="10" value="{rate}" aria-label="Admission rate slider" aria-controls="rate">
      <input type="number" id="rate" name="rate_per_minute" min="0" max="1000000" step="1" value="{rate}" inputmode="numeric" aria-describedby="suggest">
    </div>
    <p id="suggest" class="suggest" aria-live="polite">Checkout keeps up with — orders/min.</p>
  </div>
  <div class="field">
    <label for="max-active">Max active <span class="unit">in checkout at once</span></label>
    <input type="number" id="max-active" name="max_active" min="1" max="1000000" step="1" value="{max}" inputmode="numeric">
  </div>
  <button type="submit" id="apply">Apply…</button>
</form>
<div class="mode-buttons" role="group" aria-label="Queue mode">
  <button type="button" id="pause" data-mode="paused">Pause</button>
  <button type="button" id="resume" data-mode="on">Resume</button>
  <button type="button" id="open-now" data-mode="open">Open now</button>
  <button type="button" id="sold-out" data-mode="sold_out" class="danger">Sold out</button>
  <button type="button" id="close" data-mode="closed" class="danger">Close</button>
</div>
<p id="steer-result" class="result" role="status" aria-live="polite"></p>
</section>
<dialog id="confirm" aria-labelledby="confirm-h">
  <form method="dialog" id="confirm-form">
    <h2 id="confirm-h">Confirm the change</h2>
    <p id="confirm-what"></p>
    <label for="reason">Reason <span class="unit">(kept in the audit log)</span></label>
    <input id="reason" name="reason" required maxlength="500" autocomplete="off">
    <div class="dialog-buttons">
      <button type="button" id="confirm-cancel" class="secondary">Cancel</button>
      <button type="submit" id="confirm-ok">Apply now</button>
    </div>
  </form>
</dialog>"#
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// `host`: staff see the page as a host does (read-only), e.g. to share a screen.
    pub view: Option<String>,
}

/// `GET /console/events/{event}/live`.
pub async fn page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(event): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    let operator = match operator {
        Ok(o) => o,
        Err(ConsoleError::Unauthenticated) => {
            return Redirect::to("/console/login").into_response();
        }
        Err(e) => return e.into_response(),
    };
    let read_only = params.view.as_deref() == Some("host");
    match render(&s, &operator, &event, read_only).await {
        Ok(html) => (
            [
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            html,
        )
            .into_response(),
        Err(ConsoleError::Orders(orders::Error::NotFound(_))) => (
            StatusCode::NOT_FOUND,
            Html("<!doctype html><title>Not found</title><p>No such event.</p>".to_owned()),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn render(
    s: &AppState,
    operator: &Operator,
    event: &str,
    read_only: bool,
) -> Result<Html<String>, ConsoleError> {
    let (slug, found) = crate::auth::visible_event(&s.db, operator, event).await?;
    let settings = match s.room.settings(&slug).await {
        Ok(Some(live)) => live,
        _ => found.admission(),
    };
    let tiers = orders::events::tiers(&s.db, found.id).await?;
    let can_steer = operator.require(STAFF).is_ok() && !read_only;

    let tier_rows: String = tiers
        .iter()
        .map(|t| {
            format!(
                "<tr data-tier=\"{code}\"><th scope=\"row\">{name} <span class=\"muted\">{code}</span></th>\
                 <td class=\"num\" data-f=\"sold\">{sold}</td><td class=\"num\" data-f=\"held\">{held}</td>\
                 <td class=\"num\" data-f=\"capacity\">{cap}</td>\
                 <td><span class=\"meter\" aria-hidden=\"true\"><span class=\"sold\"></span>\
                 <span class=\"held\"></span></span></td></tr>",
                code = escape(&t.code),
                name = escape(&t.name),
                sold = t.sold,
                held = t.held,
                cap = t.capacity,
            )
        })
        .collect();

    let funnel: String = [
        ("arrived", "Arrived"),
        ("queued", "Waiting now"),
        ("admitted", "Admitted"),
        ("held", "Held seats"),
        ("paid", "Paid"),
        ("delivered", "Delivered"),
    ]
    .iter()
    .map(|(key, label)| {
        format!(
            "<li data-step=\"{key}\"><span class=\"step\">{label}</span><b id=\"f-{key}\">—</b>\
             <span class=\"bar\" aria-hidden=\"true\"><span></span></span></li>"
        )
    })
    .collect();

    let audit_section = if can_steer {
        let tz = crate::moment::zone(&found.timezone);
        // Refused attempts (`*.refused`) are in the audit trail, but they changed nothing.
        let mut rows = audit::for_event(&s.db, found.id, 20).await?;
        rows.retain(|r| !r.action.ends_with(".refused"));
        let body: String = if rows.is_empty() {
            "<li class=\"muted\">No changes yet.</li>".into()
        } else {
            rows.iter()
                .map(|r| {
                    let what = if r.action == "admission.update" {
                        crate::live::summarise(&r.action, r.before.as_ref(), r.after.as_ref())
                    } else {
                        r.action.clone()
                    };
                    let why = r
                        .reason
                        .as_deref()
                        .map(|x| format!(" <span class=\"why\">— {}</span>", escape(x)))
                        .unwrap_or_default();
                    format!(
                        "<li><span class=\"meta\">{at} · {actor}</span>\
                         <span class=\"what\">{what}</span>{why}</li>",
                        at = crate::moment::html(r.at, tz, crate::moment::Precision::Second),
                        actor = escape(&r.actor),
                        what = escape(&what),
                    )
                })
                .collect()
        };
        format!(
            "<section class=\"card audit\" aria-labelledby=\"audit-h\"><h2 id=\"audit-h\">Changes</h2>\
             <ol class=\"audit\" id=\"audit\">{body}</ol></section>"
        )
    } else {
        String::new()
    };

    let numbers = [
        number("Waiting", "n-waiting", "people in line"),
        number("Arrivals", "n-arrivals", "per minute"),
        number("Admitted", "n-admitted", "per minute"),
        number("Active", "n-active", "of max"),
        number("Paid", "n-paid", "orders per minute"),
        number("No-shows", "n-noshows", "admitted, never came"),
        number("Payments failed", "n-failed", "last minute"),
        number("Emails", "n-emails", "pending · failed"),
    ]
    .concat();

    let charts = [
        chart(
            "chart-waiting",
            "Queue depth",
            "People waiting in line over the last 30 minutes.",
        ),
        chart(
            "chart-rates",
            "Arrivals and admissions per minute",
            "Arrivals, admissions and the configured rate; paid orders per minute for comparison.",
        ),
        chart(
            "chart-active",
            "Active checkouts",
            "Admission slots in use against the configured maximum.",
        ),
        chart(
            "chart-sales",
            "Seats sold per tier",
            "Cumulative seats sold, by tier.",
        ),
        chart(
            "chart-failures",
            "Failures",
            "Failed payments per minute; emails waiting and given up.",
        ),
    ]
    .concat();

    let csrf = operator.csrf.as_deref().unwrap_or("");
    let role_note = if can_steer {
        format!(
            "<p class=\"view-switch\"><a href=\"/console/events/{}/live?view=host\">See the host view</a></p>",
            escape(slug.as_str())
        )
    } else if read_only {
        format!(
            "<p class=\"banner\">Host view: what hosts see, read-only. \
             <a href=\"/console/events/{}/live\">Back to the control room</a></p>",
            escape(slug.as_str())
        )
    } else {
        "<p class=\"banner\">Read-only view: you can watch the on-sale; changes are made by the operators.</p>".into()
    };
    let mode = settings.mode;
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<link rel="icon" href="data:,">
<title>{title} · Control room · Floodgate console</title>
<link rel="stylesheet" href="/console/assets/uplot.min.css?v={v}">
<link rel="stylesheet" href="/console/assets/control-room.css?v={v}">
<script src="/console/assets/uplot.min.js?v={v}" defer></script>
<script src="/console/assets/control-room.js?v={v}" defer></script>
</head>
<body>
<header class="top"><strong>Floodgate console</strong><a href="/console/">Search</a>
<span class="muted">{who} · {role}</span></header>
<main id="room" data-event="{slug}" data-tz="{tz}" data-can-steer="{can_steer}" data-mode="{mode}"
      data-rate="{rate}" data-max-active="{max}">
<div class="title-row">
  <h1>{title} <span class="muted">· control room</span></h1>
  <span id="mode" class="mode mode-{mode}">{mode_label}</span>
  <span id="conn" class="conn" role="status">Connecting…</span>
</div>
{role_note}
<p id="stale" class="banner bad" role="alert" hidden></p>
<section class="numbers" aria-labelledby="now-h">
  <h2 id="now-h" class="visually-hidden">Right now</h2>
  <dl>{numbers}</dl>
  <p id="live-summary" class="visually-hidden" aria-live="polite" aria-atomic="true"></p>
</section>
<div class="layout{layout_class}">
<div class="charts">{charts}</div>
{controls}
<aside class="side">
<section class="card" aria-labelledby="funnel-h"><h2 id="funnel-h">Funnel</h2><ol class="funnel" id="funnel">{funnel}</ol></section>
<section class="card" aria-labelledby="tiers-h"><h2 id="tiers-h">Tiers</h2>
<table class="tiers"><thead><tr><th scope="col">Tier</th><th scope="col" class="num">Sold</th>
<th scope="col" class="num">Held</th><th scope="col" class="num">Capacity</th><th scope="col"><span class="visually-hidden">Fill</span></th></tr></thead>
<tbody id="tiers">{tier_rows}</tbody></table></section>
{audit_section}
</aside>
</div>
</main>
</body>
</html>"#,
        title = escape(&found.title),
        tz = escape(&found.timezone),
        who = escape(&operator.name),
        role = operator.role.as_str(),
        slug = escape(slug.as_str()),
        v = &*ASSET_VERSION,
        csrf = escape(csrf),
        mode = mode.as_str(),
        mode_label = mode_label(mode),
        layout_class = if can_steer { "" } else { " read-only" },
        rate = settings.rate_per_minute,
        max = settings.max_active,
        controls = if can_steer {
            controls(&settings)
        } else {
            String::new()
        },
    );
    Ok(Html(body))
}
