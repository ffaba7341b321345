//! The console's pages, rendered from the templates in `console/templates/` with
//! minijinja: every `.html` template escapes what it prints, so a buyer's name or an
//! event title typed as markup shows as text (a forgotten `escape()` call was stored
//! XSS in the back office). One base layout (`layout.html`, the header with the
//! operator and the sign-out form) and the pieces every page shares (`macros.html`).
//!
//! The templates are compiled into the binary: a deployment cannot lose them, and a
//! template that does not parse fails the first test that renders it.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::ConsoleError;
use crate::auth::Operator;

/// Each template by its name, as pages and `{% extends %}` / `{% import %}` name it.
const TEMPLATES: &[(&str, &str)] = &[
    ("console.css", include_str!("../templates/console.css")),
    ("layout.html", include_str!("../templates/layout.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("order.html", include_str!("../templates/order.html")),
    ("people.html", include_str!("../templates/people.html")),
    ("invite.html", include_str!("../templates/invite.html")),
    ("search.html", include_str!("../templates/search.html")),
    (
        "event_macros.html",
        include_str!("../templates/event_macros.html"),
    ),
    ("events.html", include_str!("../templates/events.html")),
    ("event.html", include_str!("../templates/event.html")),
    (
        "incidents.html",
        include_str!("../templates/incidents.html"),
    ),
    (
        "event_form.html",
        include_str!("../templates/event_form.html"),
    ),
    (
        "event_edit.html",
        include_str!("../templates/event_edit.html"),
    ),
    (
        "control_room.html",
        include_str!("../templates/control_room.html"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // minijinja's default: escape for `.html` (and friends), nothing for `.css`.
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("console template {name}: {e}"));
    }
    env
});

/// The operator as the layout shows them: name, role and the session's CSRF token for
/// the sign-out form.
#[derive(Serialize)]
struct Who<'a> {
    name: &'a str,
    role: &'static str,
    csrf: &'a str,
}

/// `template` rendered with `ctx`, plus `operator` (the header's "who is signed in";
/// `None` on the sign-in page). A template that fails to render is a bug: it is logged
/// and the operator sees a plain 500 page, never half a page.
pub(crate) fn render(template: &str, operator: Option<&Operator>, ctx: Value) -> Response {
    let who = operator.map(|o| Who {
        name: &o.name,
        role: o.role.as_str(),
        csrf: o.csrf.as_deref().unwrap_or(""),
    });
    let rendered = ENV
        .get_template(template)
        .and_then(|t| t.render(context! { operator => who, ..ctx }));
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template, "rendering a console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Something went wrong</title><p>Something went wrong on our side.</p>"),
            )
                .into_response()
        }
    }
}

/// As [`render`], answered with `status`.
pub(crate) fn render_with(
    status: StatusCode,
    template: &str,
    operator: Option<&Operator>,
    ctx: Value,
) -> Response {
    let mut page = render(template, operator, ctx);
    if page.status() == StatusCode::OK {
        *page.status_mut() = status;
    }
    page
}

/// A page that says one thing, with `status`: a heading, the message, the way back.
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    operator: Option<&Operator>,
    message: &str,
) -> Response {
    render_with(
        status,
        "message.html",
        operator,
        context! { title, message },
    )
}

/// A page (not JSON) for an error a page or a form ran into, with the error's own
/// status: 404 for what is not there (or not the operator's to see), 403 for a role or
/// an expired form, 422 for what cannot be done as asked, 5xx saying nothing inside.
pub(crate) fn error_page(operator: Option<&Operator>, e: &ConsoleError) -> Response {
    e.log();
    let (status, _, text) = e.public();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        s if s.is_client_error() => "Not done",
        _ => "Something went wrong",
    };
    message(status, title, operator, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn operator(name: &str) -> Operator {
        Operator {
            token_id: uuid::Uuid::nil(),
            name: name.into(),
            role: Role::Operator,
            events: vec![],
            csrf: Some("t\"ok".into()),
        }
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn what_operators_and_buyers_typed_is_escaped() {
        let page = message(
            StatusCode::CONFLICT,
            "<b>t</b>",
            Some(&operator("<script>alert(1)</script>")),
            "it's <img src=x onerror=alert(1)>",
        );
        assert_eq!(page.status(), StatusCode::CONFLICT);
        let html = body(page).await;
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>t"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("value=\"t&quot;ok\""), "{html}");
        assert!(
            html.contains("--accent"),
            "the stylesheet is inlined: {html}"
        );
    }

    #[test]
    fn every_template_is_compiled_in_and_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for file in std::fs::read_dir(dir).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "templates/{name} is not in TEMPLATES"
            );
        }
        for (name, _) in TEMPLATES {
            ENV.get_template(name).unwrap();
        }
    }

    #[tokio::test]
    async fn the_sign_in_page_says_why_it_refused() {
        let page = render_with(
            StatusCode::UNAUTHORIZED,
            "login.html",
            None,
            context! { title => "Sign in", error => "Wrong <email> or password." },
        );
        assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
        let html = body(page).await;
        assert!(
            html.contains(
                "<p class=\"banner bad\" role=\"alert\">Wrong &lt;email&gt; or password.</p>"
            ),
            "{html}"
        );
    }
}
