//! The waiting-room page, rendered at the edge. It is complete without JavaScript (a
//! meta refresh at the poll interval); with JavaScript it polls status in place,
//! announces changes through an `aria-live` region and moves on when admitted.

use platform::html::escape;
use waitroom::EventSlug;

const TEMPLATE: &str = include_str!("../assets/waiting.html");

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

fn headline(state: &str) -> &'static str {
    match state {
        "waiting" => "You're in line.",
        "paused" => "The queue is paused for a moment. You keep your place.",
        "prequeue" => {
            "The sale has not opened yet. Everyone here now gets a random place at opening."
        }
        "admitted" => "It's your turn! Taking you to the event…",
        "sold_out" => "Sold out. Thank you for waiting.",
        "closed" => "This sale is closed.",
        _ => "No queue right now.",
    }
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
    TEMPLATE
        .replace("{{title}}", &escape(v.title.unwrap_or(v.event.as_str())))
        .replace("{{event}}", v.event.as_str())
        .replace("{{state}}", &escape(v.state))
        .replace("{{headline}}", headline(v.state))
        .replace("{{position}}", &num(v.position.filter(|&p| p > 0)))
        .replace("{{ahead}}", &num(v.ahead.filter(|_| v.state != "admitted")))
        .replace("{{eta}}", &eta)
        .replace("{{progress}}", &v.progress_percent.min(100).to_string())
        .replace("{{retry_ms}}", &v.retry_after_ms.to_string())
        // Raw figures for the script's countdown between polls (empty when unknown).
        .replace(
            "{{position_n}}",
            &v.position.map_or_else(String::new, |p| p.to_string()),
        )
        .replace(
            "{{eta_seconds}}",
            &v.eta_seconds.map_or_else(String::new, |e| e.to_string()),
        )
        .replace(
            "{{refresh_seconds}}",
            &v.retry_after_ms.div_ceil(1000).max(1).to_string(),
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
}
