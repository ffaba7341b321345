//! HTML for people: the template environment every page is rendered with, the buyer
//! pages' one layout, and escaping.
//!
//! Pages are minijinja templates compiled into the binaries (`include_str!`), so a
//! deployment cannot lose them and a page cannot forget to escape a field: every
//! `.html` template escapes what it interpolates. [`templates`] is the environment
//! each crate starts from and adds its own templates to; [`buyer_templates`] is that
//! with the buyer layout (`buyer/layout.html`, extended by orders' and fulfilment's
//! pages) and the `money` filter. [`render`] renders one page.

use std::fmt;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior};
use serde::Serialize;

/// Escapes text for HTML element and (quoted) attribute context.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    write_escaped(&mut out, s).expect("writing to a String cannot fail");
    out
}

fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&s[plain..i])?;
        out.write_str(entity)?;
        plain = i + 1;
    }
    out.write_str(&s[plain..])
}

/// An amount in minor units with its currency code: `EUR 12.50`.
pub fn money(cents: i64, currency: &str) -> String {
    format!("{} {}.{:02}", currency, cents / 100, cents % 100)
}

/// The environment every crate's pages start from: `.html` templates escape what they
/// print, `{% %}` lines leave no blank lines behind, and printing a name the context
/// does not have is an error (a typo in a template fails its crate's tests instead of
/// showing the buyer an empty field).
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(format_value);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env
}

/// Prints a value, escaped with [`escape`] in HTML templates. minijinja's own escaper
/// also writes `/` as `&#x2f;` and `'` as `&#x27;`; both are safe, but they would put
/// `Europe&#x2f;Amsterdam` and `http:&#x2f;&#x2f;` into the source of pages that
/// tests, scrapers and the console's links read as text, where the hand-written pages
/// sent `/`.
fn format_value(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    if state.auto_escape() != AutoEscape::Html || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    match value.as_str() {
        Some(s) => write_escaped(out, s),
        None => write_escaped(out, &value.to_string()),
    }
    .map_err(minijinja::Error::from)
}

/// [`templates`] with the buyer layout, `buyer/layout.html`, and the `money` filter
/// (`{{ cents|money(currency) }}`): what orders' and fulfilment's buyer pages extend.
pub fn buyer_templates() -> Environment<'static> {
    let mut env = templates();
    env.add_template(
        "buyer/layout.html",
        include_str!("../templates/buyer/layout.html"),
    )
    .expect("the buyer layout compiles");
    env.add_filter("money", money);
    env
}

/// Renders template `name` of `env` with `context`.
///
/// Templates are compiled into the binary and every page is rendered by its crate's
/// tests, so a failure here is a bug in a template. It is logged, and the visitor gets
/// a plain apology rather than a handler that panics and drops the connection.
pub fn render<C: Serialize>(env: &Environment<'_>, name: &str, context: C) -> String {
    env.get_template(name)
        .and_then(|t| t.render(context))
        .unwrap_or_else(|e| {
            tracing::error!(template = name, error = %e, "page failed to render");
            BROKEN_PAGE.to_owned()
        })
}

const BROKEN_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
     <title>Something went wrong</title></head><body><main><h1>Something went wrong</h1>\
     <p>This page could not be shown. Please reload it in a moment.</p></main></body></html>";

#[cfg(test)]
mod tests {
    use minijinja::context;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(super::escape("plain / text"), "plain / text");
    }

    fn page(source: &'static str, ctx: minijinja::Value) -> String {
        let mut env = super::buyer_templates();
        env.add_template("page.html", source).unwrap();
        super::render(&env, "page.html", ctx)
    }

    #[test]
    fn the_buyer_layout_escapes_what_a_page_prints() {
        let html = page(
            r#"{% extends "buyer/layout.html" %}{% block title %}{{ title }}{% endblock %}
               {% block body %}<h1>{{ title }}</h1><a href="{{ url }}">x</a>{% endblock %}"#,
            context! {
                title => "<script>alert('x')</script> Rock & Roll",
                url => "https://shop.example/o/1?a=1&b=\"2\"",
            },
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(
            "<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Rock &amp; Roll</title>"
        ));
        assert!(html.contains("<h1>&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"href="https://shop.example/o/1?a=1&amp;b=&quot;2&quot;""#));
        assert!(
            html.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            )
        );
        assert!(html.ends_with("</main></body>\n</html>"), "{html}");
    }

    #[test]
    fn money_is_a_filter() {
        let html = page(
            "{{ 1250|money('EUR') }} {{ 5|money(c) }}",
            context! { c => "USD" },
        );
        assert_eq!(html, "EUR 12.50 USD 0.05");
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_field() {
        let html = page("<p>{{ nmae }}</p>", context! { name => "Ada" });
        assert_eq!(html, super::BROKEN_PAGE);
        let html = page("{% if nmae %}x{% endif %}ok", context! {});
        assert_eq!(html, "ok", "a test of a missing value is allowed");
    }

    #[test]
    fn text_templates_do_not_escape() {
        let mut env = super::templates();
        env.add_template("a.txt", "{{ s }}").unwrap();
        assert_eq!(super::render(&env, "a.txt", context! { s => "<&>" }), "<&>");
    }
}
