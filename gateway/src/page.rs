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
    pub eta_seconds: Option<u64>,
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
    eta_seconds: String,
    refresh_seconds: u64,
}

fn eta_text(eta: Option<u64>) -> String {
    match eta {
        None => "—".into(),
        Some(s) if s < 60 => "under 1 min".into(),
        Some(s) => {
            let m = (s + 30) / 60;
            if m < 60 {
                format!("{m} min")
            } else {
                format!("{} h {} min", m / 60, m % 60)
            }
        }
    }
}

pub fn render(v: &View<'_>) -> String {
    let num = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    let eta = if v.state == "waiting" {
        eta_text(v.eta_seconds)
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
            eta_seconds: v.eta_seconds.map_or_else(String::new, |e| e.to_string()),
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
            eta_seconds: Some(125),
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
        assert!(html.contains("2 min"));
        assert!(
            html.contains(r#"data-position="42" data-eta="125""#),
            "the countdown starts from the rendered place and wait"
        );
        assert!(!html.contains("{{"), "unfilled placeholder");
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
            eta_seconds: None,
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
