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
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use contract::states::{EventStatus, TicketStatus};
use minijinja::{Environment, context};
use uuid::Uuid;

use crate::app::AppState;
use crate::deliveries::local_time;
use crate::links;
use crate::meetings::Attendee;
use contract::calendar::{self, Invite};

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
    /// When the event last changed: the calendar entry's version.
    event_updated_at: DateTime<Utc>,
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
                  e.timezone, e.meeting, e.status AS "event_status: EventStatus",
                  e.updated_at AS event_updated_at
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
            event_updated_at: r.event_updated_at,
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

/// `(name, source)` for a page template, compiled into the binary. The pages live
/// under `templates/pages/`, beside the e-mails, in their own environment.
macro_rules! page_template {
    ($name:literal) => {
        (
            concat!("pages/", $name),
            include_str!(concat!("../templates/pages/", $name)),
        )
    };
}

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = platform::html::buyer_templates();
    for (name, source) in [
        page_template!("unavailable.html"),
        page_template!("almost_there.html"),
        page_template!("not_recognised.html"),
        page_template!("too_early.html"),
        page_template!("ended.html"),
        page_template!("replaced.html"),
        page_template!("transferred.html"),
        page_template!("refunded.html"),
        page_template!("revoked.html"),
        page_template!("cancelled.html"),
    ] {
        env.add_template(name, source)
            .expect("fulfilment's page templates compile");
    }
    env
});

fn page(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    let html = platform::html::render(&PAGES, &format!("pages/{name}"), context);
    (status, Html(html)).into_response()
}

/// The page for a link that does not open the meeting: what is wrong, plainly.
fn refusal(f: &Found, token: &str, opens: DateTime<Utc>) -> Response {
    let (status, name) = match f.verdict {
        Verdict::TooEarly => (StatusCode::OK, "too_early.html"),
        Verdict::Ended => (StatusCode::GONE, "ended.html"),
        Verdict::Replaced => (StatusCode::GONE, "replaced.html"),
        Verdict::Transferred => (StatusCode::GONE, "transferred.html"),
        Verdict::Refunded => (StatusCode::GONE, "refunded.html"),
        Verdict::Revoked => (StatusCode::GONE, "revoked.html"),
        Verdict::Cancelled => (StatusCode::GONE, "cancelled.html"),
        Verdict::Enter | Verdict::Unknown => (StatusCode::NOT_FOUND, "not_recognised.html"),
    };
    page(
        status,
        name,
        context! {
            title => f.title,
            opens => local_time(opens, &f.timezone),
            opens_at => opens.to_rfc3339(),
            timezone => f.timezone,
            starts => local_time(f.starts_at, &f.timezone),
            starts_at => f.starts_at.to_rfc3339(),
            token,
            help => false,
        },
    )
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
                "unavailable.html",
                context! {},
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
            "not_recognised.html",
            context! { help => true },
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
                        "almost_there.html",
                        context! {},
                    )
                }
            }
        }
        _ => {
            let opens = f.starts_at
                - chrono::Duration::from_std(s.config.window_before).unwrap_or_default();
            refusal(&f, &token, opens)
        }
    }
}

pub async fn calendar_file(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match look_up(&s, &token, Utc::now()).await {
        Ok(Some(f)) if matches!(f.verdict, Verdict::Enter | Verdict::TooEarly) => {
            let link = links::url(&s.config.public_url, &token);
            let ics = calendar::ics(&Invite {
                uid: calendar::uid(f.ticket_id),
                sequence: calendar::sequence(f.event_updated_at),
                title: &f.title,
                starts_at: f.starts_at,
                ends_at: f.ends_at,
                link: &link,
                personal: true,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(title: &str, verdict: Verdict) -> Found {
        Found {
            link_id: Uuid::nil(),
            ticket_id: Uuid::nil(),
            holder_name: "Ada".into(),
            holder_email: "ada@example.org".into(),
            event_id: Uuid::nil(),
            title: title.into(),
            starts_at: Utc::now(),
            ends_at: Utc::now(),
            timezone: "Europe/Amsterdam".into(),
            meeting: serde_json::Value::Null,
            event_updated_at: Utc::now(),
            verdict,
        }
    }

    fn body(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let bytes = futures::executor::block_on(axum::body::to_bytes(r.into_body(), usize::MAX))
            .expect("a rendered page");
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    #[test]
    fn a_script_in_the_event_title_is_text() {
        let title = "<script>alert('x')</script> & co";
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co";
        for (verdict, status, times) in [
            (Verdict::TooEarly, StatusCode::OK, 2),
            (Verdict::Ended, StatusCode::GONE, 2),
            (Verdict::Cancelled, StatusCode::GONE, 1),
        ] {
            let (got, html) = body(refusal(&found(title, verdict), "tok", Utc::now()));
            assert_eq!(got, status);
            assert!(!html.contains("<script>alert"), "{html}");
            assert_eq!(html.matches(escaped).count(), times, "{html}");
        }
    }

    #[test]
    fn too_early_says_when_the_doors_open_and_links_the_calendar() {
        let f = found("Gig", Verdict::TooEarly);
        let (_, html) = body(refusal(
            &f,
            "tok-1",
            f.starts_at - chrono::Duration::hours(1),
        ));
        assert!(html.contains("<h1>Gig</h1>"), "{html}");
        assert!(html.contains("<p>Your ticket is valid."));
        assert!(html.contains(r#"<a href="/join/tok-1/calendar.ics">"#));
        assert!(html.contains("<dt>Doors open</dt>"), "{html}");
        assert!(html.contains("<dt>Starts</dt>"), "{html}");
        // Without the script the page names the zone its times are in.
        assert!(
            html.contains(r#"<p class="small" id="zone">Times in Europe/Amsterdam, the event's time zone.</p>"#),
            "{html}"
        );
        assert!(
            html.contains("resolvedOptions().timeZone"),
            "the script is the page's own: {html}"
        );
    }

    #[test]
    fn every_other_verdict_has_its_page() {
        for (verdict, status, heading) in [
            (
                Verdict::Replaced,
                StatusCode::GONE,
                "This link was replaced",
            ),
            (
                Verdict::Transferred,
                StatusCode::GONE,
                "This ticket was transferred",
            ),
            (
                Verdict::Refunded,
                StatusCode::GONE,
                "This ticket was refunded",
            ),
            (
                Verdict::Revoked,
                StatusCode::GONE,
                "This ticket is no longer valid",
            ),
            (
                Verdict::Unknown,
                StatusCode::NOT_FOUND,
                "This link is not recognised",
            ),
        ] {
            let (got, html) = body(refusal(&found("Gig", verdict), "tok", Utc::now()));
            assert_eq!(got, status);
            assert!(html.contains(&format!("<h1>{heading}</h1>")), "{html}");
        }
        for (name, heading) in [
            ("unavailable.html", "Try again in a moment"),
            ("almost_there.html", "Almost there"),
            ("not_recognised.html", "This link is not recognised"),
        ] {
            let (_, html) = body(page(StatusCode::OK, name, context! { help => true }));
            assert!(html.contains(&format!("<h1>{heading}</h1>")), "{html}");
        }
    }
}
