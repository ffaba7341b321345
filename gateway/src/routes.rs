//! What a request is, decided from its method and path alone.

use waitroom::EventSlug;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    OpenApi,
    /// `GET /favicon.ico`, which every browser asks for.
    Favicon,
    /// `GET /queue/{event}`: the waiting page.
    QueuePage(EventSlug),
    /// `POST /queue/{event}/join`.
    Join(EventSlug),
    /// `GET /queue/{event}/status`.
    Status(EventSlug),
    /// `GET /queue/{event}/lottery`: the public pre-queue draw.
    Lottery(EventSlug),
    /// A page or API path that needs an admission while the queue is not `off`.
    Protected {
        event: EventSlug,
        page: bool,
        /// A write to the event's API: a hold (`POST /api/events/{event}/holds`, the
        /// only one today). Any method but GET/HEAD counts, so a path spelling the
        /// upstream happens to route the same way cannot skip the hold limit.
        write: bool,
    },
    /// `POST /api/payments/webhook`: proxied to orders, limited per source.
    Webhook,
    /// `/join/{token}`: access links, proxied but rate limited (guessing defence).
    AccessLink,
    /// Proxied as is to an upstream.
    Upstream(Upstream),
    NotFound,
    /// A known path asked with a method it does not answer; `allow` is what it does.
    MethodNotAllowed {
        allow: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    Orders,
    Console,
    Fulfilment,
}

impl Route {
    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::OpenApi => "openapi",
            Route::Favicon => "favicon",
            Route::QueuePage(_) => "queue_page",
            Route::Join(_) => "join",
            Route::Status(_) => "status",
            Route::Lottery(_) => "lottery",
            Route::Protected { page: true, .. } => "event_page",
            Route::Protected { page: false, .. } => "event_api",
            Route::AccessLink => "access_link",
            Route::Webhook => "webhook",
            Route::Upstream(Upstream::Orders) => "orders",
            Route::Upstream(Upstream::Console) => "console",
            Route::Upstream(Upstream::Fulfilment) => "fulfilment",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    pub fn upstream(&self) -> Option<Upstream> {
        match self {
            Route::Protected { .. } => Some(Upstream::Orders),
            Route::AccessLink => Some(Upstream::Fulfilment),
            Route::Webhook => Some(Upstream::Orders),
            Route::Upstream(u) => Some(*u),
            _ => None,
        }
    }
}

fn slug(s: &str) -> Option<EventSlug> {
    EventSlug::parse(s).ok()
}

/// The methods a read-only path answers.
const READ: &str = "GET, HEAD";

pub fn classify(method: &str, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == "GET" || method == "HEAD";
    let only = |allow: &'static str, r: Route| {
        if allow.split(", ").any(|m| m == method) {
            r
        } else {
            Route::MethodNotAllowed { allow }
        }
    };
    match segments.as_slice() {
        ["healthz"] => only(READ, Route::Healthz),
        ["readyz"] => only(READ, Route::Readyz),
        ["openapi.json"] => only(READ, Route::OpenApi),
        ["favicon.ico"] => only(READ, Route::Favicon),
        ["queue", ev] => slug(ev).map_or(Route::NotFound, |e| only(READ, Route::QueuePage(e))),
        ["queue", ev, "join"] => slug(ev).map_or(Route::NotFound, |e| only("POST", Route::Join(e))),
        ["queue", ev, "status"] => {
            slug(ev).map_or(Route::NotFound, |e| only(READ, Route::Status(e)))
        }
        ["queue", ev, "lottery"] => {
            slug(ev).map_or(Route::NotFound, |e| only(READ, Route::Lottery(e)))
        }
        // The event page is read; the pages under it are read or posted (forms).
        ["e", ev, rest @ ..] => slug(ev).map_or(Route::NotFound, |event| {
            let allow = if rest.is_empty() {
                READ
            } else {
                "GET, HEAD, POST"
            };
            only(
                allow,
                Route::Protected {
                    event,
                    page: true,
                    write: false,
                },
            )
        }),
        ["api", "events", ev, ..] => slug(ev).map_or(Route::NotFound, |event| Route::Protected {
            event,
            page: false,
            write: !get,
        }),
        ["api", "payments", "webhook", ..] => Route::Webhook,
        ["join", ..] => Route::AccessLink,
        ["api", ..] => Route::Upstream(Upstream::Orders),
        ["console", ..] => Route::Upstream(Upstream::Console),
        ["orders", ..] => Route::Upstream(Upstream::Orders),
        ["static", ..] => Route::Upstream(Upstream::Orders),
        [""] => Route::NotFound,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> EventSlug {
        EventSlug::parse(s).unwrap()
    }

    #[test]
    fn classifies_the_public_surface() {
        assert_eq!(classify("GET", "/queue/demo"), Route::QueuePage(ev("demo")));
        assert_eq!(
            classify("POST", "/queue/demo/join"),
            Route::Join(ev("demo"))
        );
        assert_eq!(
            classify("GET", "/queue/demo/join"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        for path in [
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/queue/demo",
            "/e/demo",
        ] {
            assert_eq!(
                classify("TRACE", path),
                Route::MethodNotAllowed { allow: READ },
                "{path}"
            );
        }
        assert_eq!(
            classify("TRACE", "/e/demo/hold"),
            Route::MethodNotAllowed {
                allow: "GET, HEAD, POST"
            }
        );
        assert_eq!(
            classify("GET", "/queue/demo/status"),
            Route::Status(ev("demo"))
        );
        assert_eq!(
            classify("GET", "/e/demo"),
            Route::Protected {
                event: ev("demo"),
                page: true,
                write: false,
            }
        );
        assert_eq!(
            classify("POST", "/api/events/demo/holds"),
            Route::Protected {
                event: ev("demo"),
                page: false,
                write: true,
            }
        );
        assert_eq!(
            classify("GET", "/api/events/demo"),
            Route::Protected {
                event: ev("demo"),
                page: false,
                write: false,
            }
        );
        assert_eq!(classify("POST", "/api/payments/webhook"), Route::Webhook);
        assert_eq!(classify("GET", "/metrics"), Route::NotFound);
        assert_eq!(classify("GET", "/favicon.ico"), Route::Favicon);
        assert_eq!(
            classify("POST", "/favicon.ico"),
            Route::MethodNotAllowed { allow: READ }
        );
        assert_eq!(
            classify("DELETE", "/api/holds/1"),
            Route::Upstream(Upstream::Orders)
        );
        assert_eq!(
            classify("GET", "/console/api/events"),
            Route::Upstream(Upstream::Console)
        );
        assert_eq!(classify("GET", "/join/abc"), Route::AccessLink);
        assert_eq!(
            classify("GET", "/orders/0190"),
            Route::Upstream(Upstream::Orders)
        );
        assert_eq!(classify("GET", "/queue/Bad%20Slug"), Route::NotFound);
        assert_eq!(classify("GET", "/etc/passwd"), Route::NotFound);
    }
}
