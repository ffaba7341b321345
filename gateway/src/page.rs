//! The waiting-room page, rendered at the edge. It is complete without JavaScript (a
//! meta refresh at the poll interval); with JavaScript it polls status in place,
//! announces changes through an `aria-live` region and moves on when admitted.

use std::sync::LazyLock;

use minijinja::Environment;
use serde::Serialize;
use waitroom::EventSlug;

/// Built once: every page view and every poll that falls back to the page renders it.
static PAGE: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = platform::html::templates();
    env.add_template("waiting.html", include_str!("../assets/waiting.html"))
        .expect("the waiting page compiles");
    env
});

pub struct View<'a> {
    pub event: &'a EventSlug,
    pub title: Option<&'a str>,
    pub state: &'a str,
    pub position: Option<u64>,
    pub ahead: Option<u64>,
    /// The wait as a range, `(min, max)` seconds ([`waitroom::estimate`]).
    pub eta: Option<(u64, u64)>,
    pub progress_percent: u8,
    pub retry_after_ms: u64,
}

/// What the template prints, each value as shown.
#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    event: &'a str,
    state: &'a str,
    position: String,
    ahead: String,
    eta: String,
    progress: u8,
    retry_ms: u64,
    /// Raw figures for the script's countdown between polls (empty when unknown).
    position_n: String,
    eta_min: String,
    eta_max: String,
    refresh_seconds: u64,
}

fn minutes_text(m: u64) -> String {
    if m < 60 {
        format!("{m} min")
    } else {
        format!("{} h {} min", m / 60, m % 60)
    }
}

/// The wait as people say it: "under 1 min", "about 3 min", "2–4 min". The script's
/// `eta()` says the same.
fn eta_text(eta: Option<(u64, u64)>) -> String {
    match eta {
        None => "—".into(),
        Some((_, hi)) if hi < 60 => "under 1 min".into(),
        Some((lo, hi)) => {
            let (lo, hi) = ((lo / 60).max(1), hi.div_ceil(60));
            if lo >= hi {
                format!("about {}", minutes_text(hi))
            } else if hi < 60 {
                format!("{lo}–{hi} min")
            } else {
                format!("{}–{}", minutes_text(lo), minutes_text(hi))
            }
        }
    }
}

pub fn render(v: &View<'_>) -> String {
    let num = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    let eta = if v.state == "waiting" {
        eta_text(v.eta)
    } else {
        "—".into()
    };
    platform::html::render(
        &PAGE,
        "waiting.html",
        Page {
            title: v.title.unwrap_or(v.event.as_str()),
            event: v.event.as_str(),
            state: v.state,
            position: num(v.position.filter(|&p| p > 0)),
            ahead: num(v.ahead.filter(|_| v.state != "admitted")),
            eta,
            progress: v.progress_percent.min(100),
            retry_ms: v.retry_after_ms,
            position_n: v.position.map_or_else(String::new, |p| p.to_string()),
            eta_min: v.eta.map_or_else(String::new, |e| e.0.to_string()),
            eta_max: v.eta.map_or_else(String::new, |e| e.1.to_string()),
            refresh_seconds: v.retry_after_ms.div_ceil(1000).max(1),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_and_escapes_the_title() {
        let e = EventSlug::parse("gig").unwrap();
        let html = render(&View {
            event: &e,
            title: Some("<Rock & Roll>"),
            state: "waiting",
            position: Some(42),
            ahead: Some(41),
            eta: Some((100, 157)),
            progress_percent: 30,
            retry_after_ms: 4_200,
        });
        assert!(html.contains("&lt;Rock &amp; Roll&gt;"));
        assert!(!html.contains("<Rock"));
        assert!(html.contains(r#"<dd id="position">42</dd>"#));
        assert!(
            html.contains(r#"content="5""#),
            "meta refresh follows retry_after"
        );
        assert!(html.contains(r#"<dd id="eta">1–3 min</dd>"#), "{html}");
        assert!(
            html.contains(r#"data-position="42" data-eta-min="100" data-eta-max="157""#),
            "the countdown starts from the rendered place and wait"
        );
        assert!(!html.contains("{{"), "unfilled placeholder");
    }

    #[test]
    fn the_wait_reads_as_a_range_in_plain_minutes() {
        for (eta, text) in [
            (None, "—"),
            (Some((20, 25)), "under 1 min"),
            (Some((40, 70)), "1–2 min"),
            (Some((130, 170)), "2–3 min"),
            (Some((120, 120)), "about 2 min"),
            (Some((3_000, 3_500)), "50–59 min"),
            (Some((3_000, 4_000)), "50 min–1 h 7 min"),
            (Some((3_700, 4_800)), "1 h 1 min–1 h 20 min"),
        ] {
            assert_eq!(eta_text(eta), text, "{eta:?}");
        }
    }

    #[test]
    fn a_script_in_the_event_title_is_text() {
        let e = EventSlug::parse("gig").unwrap();
        let html = render(&View {
            event: &e,
            title: Some("<script>alert('x')</script>"),
            state: "paused",
            position: Some(3),
            ahead: Some(2),
            eta: None,
            progress_percent: 10,
            retry_after_ms: 1_000,
        });
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
        assert_eq!(
            html.matches(escaped).count(),
            2,
            "the title and the heading"
        );
        assert!(!html.contains("<script>alert"));
        assert!(html.contains(
            r#"aria-live="polite">The queue is paused for a moment. You keep your place.</p>"#
        ));
    }
}
