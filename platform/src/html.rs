//! HTML escaping for the places that still write markup by hand (the waiting page, the
//! sandbox's hosted page); pages rendered from templates escape by themselves.

/// Escapes text for HTML element and (quoted) attribute context.
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

/// An amount in minor units with its currency code: `EUR 12.50`.
pub fn money(cents: i64, currency: &str) -> String {
    format!("{} {}.{:02}", currency, cents / 100, cents % 100)
}

/// The buyer-facing page: the one layout of every page a buyer sees outside the
/// waiting room (orders' event, checkout and order pages, fulfilment's `/join` pages),
/// readable on a phone and complete without JavaScript.
pub fn buyer_page(title: &str, body: &str) -> String {
    buyer_page_with_head(title, "", body)
}

/// As [`buyer_page`], with extra markup in `<head>` (trusted: written by the caller).
pub fn buyer_page_with_head(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
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
form.buy { display: grid; gap: .9rem; margin-top: 1.5rem; padding: 1.25rem; border-radius: 12px;
           border: 1px solid color-mix(in srgb, CanvasText 15%, transparent); }
label { display: grid; gap: .3rem; font-weight: 600; font-size: .95rem; }
input, select { font: inherit; font-weight: 400; background: Canvas; color: CanvasText; padding: .55rem .6rem; border-radius: 8px; border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); }
button.wide { width: 100%; }
a.quiet, button.quiet { background: none; color: var(--accent); padding: .5rem 0; font-weight: 500; }
.small { font-size: .85rem; color: var(--muted); margin-top: 2rem; word-break: break-all; }
button { font: inherit; font-weight: 600; padding: .75rem 1rem; border: 0; border-radius: 10px; background: var(--accent); color: white; cursor: pointer; }
.error { background: color-mix(in srgb, #dc2626 12%, Canvas); border-left: 4px solid #dc2626; padding: .75rem 1rem; border-radius: 6px; }
.ok { background: color-mix(in srgb, #16a34a 12%, Canvas); border-left: 4px solid #16a34a; padding: .75rem 1rem; border-radius: 6px; }
.ticket { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 1.1rem; letter-spacing: .04em; }
@media (prefers-color-scheme: dark) { :root { --muted: #a1a8b3; --accent: #4d84f7; } }
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }
}
