//! Buyer pages, rendered on the server: complete without JavaScript, readable on a phone.

use crate::events::PublicEvent;

/// Escapes text for HTML element and attribute context.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn money(cents: i64, currency: &str) -> String {
    format!("{} {}.{:02}", currency, cents / 100, cents % 100)
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --muted: #6b7280; --accent: #2f6fed; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 40rem; margin: 0 auto; padding: 2rem 1.25rem; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: .25rem 0 .5rem; }
.when { color: var(--muted); margin: 0 0 1.5rem; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .6rem .4rem; border-bottom: 1px solid color-mix(in srgb, CanvasText 12%, transparent); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.soldout { color: #b91c1c; font-weight: 600; }
"#;

pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

pub fn event(e: &PublicEvent) -> String {
    let tz: chrono_tz::Tz = e.timezone.parse().unwrap_or(chrono_tz::UTC);
    let starts = e.starts_at.with_timezone(&tz);
    let mut rows = String::new();
    for t in &e.tiers {
        let availability = if t.available == 0 {
            "<span class=\"soldout\">Sold out</span>".to_owned()
        } else {
            format!("{} left", t.available)
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&t.name),
            escape(&money(t.price_cents, &t.currency)),
            availability
        ));
    }
    let body = format!(
        "<h1>{}</h1><p class=\"when\">{} ({})</p>\
         <table><thead><tr><th>Ticket</th><th class=\"num\">Price</th><th class=\"num\">Availability</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        escape(&e.title),
        starts.format("%A %-d %B %Y, %H:%M"),
        escape(&e.timezone),
    );
    layout(&e.title, &body)
}
