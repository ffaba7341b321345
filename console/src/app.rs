//! The console's router and shared state.

use axum::Router;
use axum::routing::{get, post};
use platform::metrics::HttpMetrics;
use sqlx::PgPool;
use waitroom::queue::Waitroom;

use crate::support::{CancelOrderBody, EmailBody, RefundBody, RescheduleBody, TransferBody};
use crate::{admission, event_pages, event_setup, events, pages, people, roster, search, support};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// Where reads that decide nothing go (search, the live figures): the read
    /// replica when one is configured, else `db`. The order page and every fix read
    /// the primary: right after a fix, the page must show it.
    pub reads: PgPool,
    /// Whether `reads` is a replica (pages then say how far behind it is).
    pub reads_replica: bool,
    pub room: Waitroom,
    pub metrics: HttpMetrics,
    /// The base of the links buyers open (`FLOODGATE_PUBLIC_URL`, no trailing `/`).
    pub public_url: std::sync::Arc<str>,
    /// Set `Secure` on the session cookie (the public URL is https).
    pub secure_cookies: bool,
    /// The live control room's per-event feeds.
    pub live: crate::live::Hub,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/events", get(events::list).post(events::create))
        .route("/events/{event}", get(events::show))
        .route(
            "/events/{event}/admission",
            get(admission::show).put(admission::update),
        )
        .route("/search", get(search::api))
        .route("/orders/{id}", get(support::show))
        .route("/orders/{id}/refund", post(support::fix::<RefundBody>))
        .route("/orders/{id}/resend", post(support::resend))
        .route("/orders/{id}/cancel", post(support::fix::<CancelOrderBody>))
        .route("/orders/{id}/email", post(support::fix::<EmailBody>))
        .route("/tickets/{id}/transfer", post(support::fix::<TransferBody>))
        .route(
            "/events/{event}/reschedule",
            post(support::fix::<RescheduleBody>),
        )
        .route("/events/{event}/cancel", post(support::cancel_event))
        .route(
            "/events/{event}/resend-undelivered",
            post(support::resend_undelivered),
        );
    let pages = Router::new()
        .route("/console", get(pages::search_page))
        .route("/console/", get(pages::search_page))
        .route("/console/login", get(pages::login_page).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/orders/{id}", get(pages::order_page))
        .route("/console/orders/{id}/refund", post(pages::refund_form))
        .route("/console/orders/{id}/resend", post(pages::resend_form))
        .route("/console/orders/{id}/cancel", post(pages::cancel_form))
        .route("/console/orders/{id}/email", post(pages::email_form))
        .route("/console/tickets/{id}/transfer", post(pages::transfer_form))
        .route(
            "/console/people",
            get(people::page).post(people::invite_form),
        )
        .route("/console/people/{id}/events", post(people::events_form))
        .route(
            "/console/invite/{token}",
            get(people::accept_page).post(people::accept_form),
        )
        .route("/console/events", get(event_pages::list_page))
        .route(
            "/console/events/new",
            get(event_setup::new_page).post(event_setup::create_form),
        )
        .route(
            "/console/events/{event}/edit",
            get(event_setup::edit_page).post(event_setup::edit_form),
        )
        .route(
            "/console/events/{event}/queue",
            post(event_setup::queue_form),
        )
        .route("/console/events/{event}", get(event_pages::event_page))
        .route(
            "/console/events/{event}/orders.csv",
            get(roster::orders_csv),
        )
        .route(
            "/console/events/{event}/attendees.csv",
            get(roster::attendees_csv),
        )
        .route(
            "/console/events/{event}/incidents",
            get(event_pages::incidents_page),
        )
        .route(
            "/console/events/{event}/reschedule",
            post(event_pages::reschedule_form),
        )
        .route(
            "/console/events/{event}/cancel",
            post(event_pages::cancel_form),
        )
        .route(
            "/console/events/{event}/resend-undelivered",
            post(event_pages::resend_undelivered_form),
        );
    Router::new()
        .merge(platform::probes::routes())
        .nest("/console/api", api)
        .merge(pages)
        .merge(crate::live::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            platform::metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(state)
}

impl platform::probes::Probe for AppState {
    async fn ready(&self) -> Result<(), &'static str> {
        platform::db::reachable(&self.db).await?;
        self.room.ping().await.map_err(|_| "redis unreachable")
    }

    fn registry(&self) -> &prometheus::Registry {
        &self.metrics.registry
    }
}
