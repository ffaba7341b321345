//! `/join/{token}`: the access link from the email.
//!
//! A valid ticket inside its window is redirected to the meeting. Everything else gets
//! a page that says plainly what is wrong — too early (with the start in the event's
//! and the visitor's own time zone, and a calendar link), replaced by a newer link,
//! transferred, refunded, cancelled, over — and never a redirect. Every visit is
//! recorded for the console's "why can't they join?" view, with a coarse client name
//! instead of an IP address.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use contract::states::{EventStatus, TicketStatus};
use uuid::Uuid;

use crate::app::AppState;
use crate::calendar::{self, Invite};
use crate::deliveries::local_time;
use crate::links;
use crate::meetings::Attendee;

/// What a link is good for right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Enter,
    TooEarly,
    Ended,
    Replaced,
    Transferred,
    Refunded,
    Revoked,
    Cancelled,
    Unknown,
}

impl Verdict {
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Enter => "entered",
            Verdict::TooEarly => "too_early",
            Verdict::Ended => "ended",
            Verdict::Replaced => "replaced",
            Verdict::Transferred => "transferred",
            Verdict::Refunded => "refunded",
            Verdict::Revoked => "revoked",
            Verdict::Cancelled => "event_cancelled",
            Verdict::Unknown => "unknown",
        }
    }
}

struct Found {
    link_id: Uuid,
    ticket_id: Uuid,
    holder_name: String,
    holder_email: String,
    event_id: Uuid,
    title: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    timezone: String,
    meeting: serde_json::Value,
    verdict: Verdict,
}

async fn look_up(
    s: &AppState,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Found>, sqlx::Error> {
    if token.len() > 100 {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"SELECT l.id AS link_id, l.revoked_at, t.id AS ticket_id, t.status AS "ticket_status: TicketStatus",
                  t.holder_name, t.holder_email, e.id AS event_id, e.title, e.starts_at, e.ends_at,
                  e.timezone, e.meeting, e.status AS "event_status: EventStatus"
           FROM access_links l JOIN tickets t ON t.id = l.ticket_id JOIN events e ON e.id = t.event_id
           WHERE l.token_hash = $1"#,
        links::hash(token)
    )
    .fetch_optional(&s.db)
    .await?;
    Ok(row.map(|r| {
        let opens =
            r.starts_at - chrono::Duration::from_std(s.config.window_before).unwrap_or_default();
        let verdict = match (r.ticket_status, r.revoked_at.is_some()) {
            (TicketStatus::Transferred, _) => Verdict::Transferred,
            (TicketStatus::Refunded, _) => Verdict::Refunded,
            (TicketStatus::Revoked, _) => Verdict::Revoked,
            (TicketStatus::Valid, true) => Verdict::Replaced,
            _ if r.event_status == EventStatus::Cancelled => Verdict::Cancelled,
            _ if now < opens => Verdict::TooEarly,
            _ if now > r.ends_at => Verdict::Ended,
            _ => Verdict::Enter,
        };
        Found {
            link_id: r.link_id,
            ticket_id: r.ticket_id,
            holder_name: r.holder_name,
            holder_email: r.holder_email,
            event_id: r.event_id,
            title: r.title,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            timezone: r.timezone,
            meeting: r.meeting,
            verdict,
        }
    }))
}

/// A browser family, not a fingerprint.
fn client_family(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let family = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.is_empty() {
        "none"
    } else {
        "other"
    };
    let mobile = if ua.contains("Mobile") { " mobile" } else { "" };
    format!("{family}{mobile}")
}

fn escape(s: &str) -> String {
    platform::html::escape(s)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(platform::html::buyer_page(title, body))).into_response()
}

pub async fn join(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Utc::now();
    let found = match look_up(&s, &token, now).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "join lookup failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<h1>Try again in a moment</h1><p>We could not check your link just now. Please reload this page.</p>",
            );
        }
    };
    let Some(f) = found else {
        let _ = sqlx::query!(
            "INSERT INTO redemptions (outcome, client) VALUES ('unknown', $1)",
            client_family(&headers)
        )
        .execute(&s.db)
        .await;
        return page(
            StatusCode::NOT_FOUND,
            "Link not recognised",
            "<h1>This link is not recognised</h1><p>Please use the most recent email we sent you; if it still does not work, reply to it and we will help.</p>",
        );
    };
    let _ = sqlx::query!(
        "INSERT INTO redemptions (access_link_id, ticket_id, outcome, client) VALUES ($1, $2, $3, $4)",
        f.link_id,
        f.ticket_id,
        f.verdict.outcome(),
        client_family(&headers)
    )
    .execute(&s.db)
    .await;
    let title = escape(&f.title);
    match f.verdict {
        Verdict::Enter => {
            let attendee = Attendee {
                ticket_id: f.ticket_id,
                name: &f.holder_name,
                email: &f.holder_email,
            };
            match s.meetings.join_url(f.event_id, &f.meeting, &attendee).await {
                Ok(url) => Redirect::to(&url).into_response(),
                Err(e) => {
                    tracing::error!(error = %e, "meeting provider failed");
                    page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again in a moment",
                        "<h1>Almost there</h1><p>The meeting could not be reached just now. Please reload in a few seconds.</p>",
                    )
                }
            }
        }
        Verdict::TooEarly => {
            let opens = f.starts_at
                - chrono::Duration::from_std(s.config.window_before).unwrap_or_default();
            page(
                StatusCode::OK,
                &f.title,
                &format!(
                    "<h1>{title}</h1><p>Your ticket is valid. The doors open at <strong>{}</strong> ({}); \
                     the event starts at {}.</p>\
                     <p>In your time zone: <strong><time id=\"local\" datetime=\"{}\">{}</time></strong></p>\
                     <p><a href=\"/join/{}/calendar.ics\">Add it to your calendar</a> and come back through this same link.</p>\
                     <script>var t=document.getElementById('local');t.textContent=new Date(t.dateTime).toLocaleString([], {{dateStyle:'full', timeStyle:'short'}});</script>",
                    escape(&local_time(opens, &f.timezone)),
                    escape(&f.timezone),
                    escape(&local_time(f.starts_at, &f.timezone)),
                    f.starts_at.to_rfc3339(),
                    escape(&local_time(f.starts_at, "UTC")),
                    escape(&token),
                ),
            )
        }
        Verdict::Ended => page(
            StatusCode::GONE,
            &f.title,
            &format!("<h1>{title} has ended</h1><p>Thank you for coming.</p>"),
        ),
        Verdict::Replaced => page(
            StatusCode::GONE,
            "This link was replaced",
            "<h1>This link was replaced</h1><p>We sent you a newer link (after a change to your order or email address). Please use the most recent email from us.</p>",
        ),
        Verdict::Transferred => page(
            StatusCode::GONE,
            "Ticket transferred",
            "<h1>This ticket was transferred</h1><p>It now belongs to someone else, who received their own link.</p>",
        ),
        Verdict::Refunded => page(
            StatusCode::GONE,
            "Ticket refunded",
            "<h1>This ticket was refunded</h1><p>The money went back to the buyer, so the link no longer opens the event.</p>",
        ),
        Verdict::Revoked => page(
            StatusCode::GONE,
            "Ticket cancelled",
            "<h1>This ticket is no longer valid</h1><p>Please contact the organiser if you think this is a mistake.</p>",
        ),
        Verdict::Cancelled => page(
            StatusCode::GONE,
            "Event cancelled",
            &format!("<h1>{title} was cancelled</h1><p>Every buyer is refunded automatically.</p>"),
        ),
        Verdict::Unknown => page(
            StatusCode::NOT_FOUND,
            "Link not recognised",
            "<h1>This link is not recognised</h1>",
        ),
    }
}

pub async fn calendar_file(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match look_up(&s, &token, Utc::now()).await {
        Ok(Some(f)) if matches!(f.verdict, Verdict::Enter | Verdict::TooEarly) => {
            let link = links::url(&s.config.public_url, &token);
            let ics = calendar::ics(&Invite {
                uid: format!("{}@floodgate", f.ticket_id),
                sequence: 0,
                title: &f.title,
                starts_at: f.starts_at,
                ends_at: f.ends_at,
                link: &link,
            });
            (
                [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
                ics,
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
