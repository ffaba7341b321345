//! The orders service's router: buyer API, buyer pages, the payment webhook, probes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{
    BytesRejection, FormRejection, JsonRejection, PathRejection, QueryRejection,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use platform::metrics::HttpMetrics;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;
use waitroom::queue::Waitroom;
use waitroom::settings::Mode;
use waitroom::tokens::{AdmissionClaims, TokenError, TokenVerifier};

use crate::buyers::{BuyerName, Email};
use crate::catalog::Catalog;
use crate::checkout::{self, CheckoutView};
use crate::config::OrdersConfig;
use crate::events::{Event, PublicEvent, Tier};
use crate::holds::{HoldCreated, HoldDesk, HoldRequest};
use crate::payments::PaymentProvider;
use crate::settlement::{self, Source};
use crate::{Error, admissions, dead_ends, holds, jobs, pages, webhooks};
use contract::states::{EventStatus, HoldStatus, OrderStatus, TicketStatus};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<OrdersConfig>,
    pub metrics: HttpMetrics,
    pub holds: HoldDesk,
    pub catalog: Catalog,
    pub sellout: admissions::SellOutChecks,
    pub provider: Arc<dyn PaymentProvider>,
    /// The provider's recent answers about intents, for the order page.
    pub intent_states: crate::payments::RecentStates,
    pub room: Waitroom,
    pub verifier: TokenVerifier,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(platform::probes::routes())
        .route("/api/events/{slug}", get(event_json))
        .route("/api/events/{slug}/holds", post(create_hold))
        .route("/api/holds/{hold_id}", delete(release_hold))
        .route("/api/holds/{hold_id}/checkout", post(checkout_hold))
        .route("/api/orders/{order_id}", get(order_json))
        .route("/api/payments/webhook", post(webhook))
        .route("/e/{slug}", get(event_page))
        .route("/e/{slug}/hold", post(hold_form))
        .route("/e/{slug}/holds/{hold_id}", get(hold_page))
        .route("/e/{slug}/holds/{hold_id}/pay", post(pay_form))
        .route("/e/{slug}/holds/{hold_id}/release", post(release_form))
        .route("/orders/{order_id}", get(order_page))
        .route("/orders/{order_id}/receipt", get(receipt_page))
        .route("/orders/{order_id}/calendar.ics", get(order_calendar))
        .route("/orders/{order_id}/names", post(names_form))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            platform::metrics::track,
        ))
        // Through the extractors, so an oversized body gets the API's error shape.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
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

async fn load_event(s: &AppState, slug: &str) -> Result<(Event, Vec<Tier>), Error> {
    let listing = s.catalog.get(slug).await?;
    Ok((listing.event.clone(), listing.tiers.clone()))
}

/// The admission this request carries, verified again here (the gateway checked it too,
/// but orders trusts no hop). `None` when the event's queue is off.
fn admission(
    s: &AppState,
    event: &Event,
    headers: &HeaderMap,
) -> Result<Option<AdmissionClaims>, Error> {
    if event.queue_mode == Mode::Off {
        return Ok(None);
    }
    let cookie_name = format!("fg_a_{}", event.slug);
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            headers
                .get_all(axum::http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == cookie_name)
                .map(|(_, v)| v)
        })
        .ok_or(TokenError::Missing)?;
    Ok(Some(
        s.verifier.verify_admission(token.trim(), &event.slug())?,
    ))
}

async fn event_json(
    State(s): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<PublicEvent>, Error> {
    let (event, tiers) = load_event(&s, &slug).await?;
    Ok(Json(PublicEvent::new(&event, &tiers)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    pub tier: String,
    pub quantity: i64,
    pub email: String,
    pub name: String,
}

async fn hold(
    s: &AppState,
    slug: &str,
    headers: &HeaderMap,
    body: HoldBody,
) -> Result<HoldCreated, Error> {
    let (event, tiers) = load_event(s, slug).await?;
    let claims = admission(s, &event, headers)?;
    let now = chrono::Utc::now();
    if event.status != EventStatus::Scheduled || event.ends_at <= now {
        return Err(Error::Conflict("not_on_sale", "this event is not on sale"));
    }
    // The window is the organiser's; the catalog's copy may be a second old, which is
    // as close as a sale's opening needs to be.
    if event.sales_open_at.is_some_and(|open| now < open) {
        return Err(Error::Conflict(
            "sales_not_open",
            "sales for this event have not opened yet",
        ));
    }
    if event.sales_close_at.is_some_and(|close| now >= close) {
        return Err(Error::Conflict(
            "sales_closed",
            "sales for this event have closed",
        ));
    }
    let tier = tiers
        .iter()
        .find(|t| t.code == body.tier)
        .ok_or_else(|| Error::Invalid(format!("no tier {:?} in this event", body.tier)))?;
    if body.quantity < 1 || body.quantity > i64::from(tier.max_per_order) {
        return Err(Error::Invalid(format!(
            "quantity must be between 1 and {}",
            tier.max_per_order
        )));
    }
    let email = Email::parse(&body.email)?;
    let name = BuyerName::parse(&body.name)?;
    let (jti, seq) = match &claims {
        Some(c) => (c.jti.clone(), Some(c.seq as i64)),
        // Queue off: no admission to limit holds by.
        None => (Uuid::new_v4().to_string(), None),
    };
    let result = s
        .holds
        .hold(HoldRequest {
            event_id: event.id,
            tier_id: tier.id,
            quantity: body.quantity as i32,
            jti,
            seq,
            email,
            name,
            ttl_seconds: event.hold_ttl_seconds,
        })
        .await;
    if matches!(result, Err(Error::SoldOut)) && s.sellout.due(event.id) {
        // Maybe that was the last seat anywhere: let the queue know.
        if let Err(e) = admissions::sync_sold_out(s, event.id, &event.slug()).await {
            tracing::warn!(error = %e, "sold-out sync failed");
        }
    }
    result
}

async fn create_hold(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, Error> {
    let Json(body) = body.map_err(json_rejection)?;
    // `2.0` is an integer to the OpenAPI document's JSON Schema, so it is one here.
    let body: HoldBody = platform::json::read(body).map_err(Error::BadRequest)?;
    match hold(&s, &slug, &headers, body).await {
        Ok(h) => Ok((StatusCode::CREATED, Json(h)).into_response()),
        // A buyer whose 201 got lost retries: tell them which hold is theirs.
        Err(Error::HoldExists) => {
            let (event, _) = load_event(&s, &slug).await?;
            let existing = match admission(&s, &event, &headers)? {
                Some(claims) => {
                    sqlx::query_scalar!(
                        r#"SELECT id FROM holds
                           WHERE event_id = $1 AND admission_jti = $2 AND status = 'active'"#,
                        event.id,
                        claims.jti
                    )
                    .fetch_optional(&s.db)
                    .await?
                }
                None => None,
            };
            let e = Error::HoldExists;
            Ok((
                e.status(),
                Json(serde_json::json!({
                    "error": e.code(),
                    "message": e.public_message(),
                    "hold_id": existing,
                })),
            )
                .into_response())
        }
        Err(e) => Err(e),
    }
}

pub fn json_rejection(r: JsonRejection) -> Error {
    match r.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge,
        _ => Error::BadRequest(r.body_text()),
    }
}

// Malformed ids, queries and bodies on the API answer in the API's error shape, not
// axum's plain-text rejections.
fn path_rejection(r: PathRejection) -> Error {
    Error::BadRequest(r.body_text())
}

fn query_rejection(r: QueryRejection) -> Error {
    Error::BadRequest(r.body_text())
}

fn bytes_rejection(r: BytesRejection) -> Error {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge,
        _ => Error::BadRequest(r.body_text()),
    }
}

/// The admission needed to act on a hold: its event's, when the queue is on.
async fn hold_admission(
    s: &AppState,
    hold_id: Uuid,
    headers: &HeaderMap,
) -> Result<Option<String>, Error> {
    let slug = sqlx::query_scalar!(
        "SELECT e.slug FROM holds h JOIN events e ON e.id = h.event_id WHERE h.id = $1",
        hold_id
    )
    .fetch_optional(&s.db)
    .await?
    .ok_or(Error::NotFound("hold"))?;
    let (event, _) = load_event(s, &slug).await?;
    Ok(admission(s, &event, headers)?.map(|c| c.jti))
}

async fn release_hold(
    State(s): State<AppState>,
    hold_id: Result<Path<Uuid>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, Error> {
    let Path(hold_id) = hold_id.map_err(path_rejection)?;
    let jti = hold_admission(&s, hold_id, &headers).await?;
    let closed = holds::release(&s.db, hold_id, jti.as_deref()).await?;
    if let Err(e) = admissions::hold_closed(&s, &closed).await {
        tracing::warn!(error = %e, "queue update after release failed");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn checkout_hold(
    State(s): State<AppState>,
    hold_id: Result<Path<Uuid>, PathRejection>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<CheckoutView>), Error> {
    let Path(hold_id) = hold_id.map_err(path_rejection)?;
    let jti = hold_admission(&s, hold_id, &headers).await?;
    Ok((
        StatusCode::CREATED,
        Json(checkout::checkout(&s, hold_id, jti.as_deref()).await?),
    ))
}

#[derive(Debug, Deserialize)]
struct OrderTokenQuery {
    order_token: Option<String>,
    /// Set by the redirect after the ticket names were saved: the page says so.
    #[serde(default)]
    named: Option<String>,
}

async fn order_view(
    s: &AppState,
    order_id: Uuid,
    token: Option<&str>,
) -> Result<pages::OrderView, Error> {
    let token = token.ok_or(Error::Forbidden("the order token is required"))?;
    if !checkout::token_matches(&s.config.order_token_secret, order_id, token) {
        // Same answer for unknown orders and wrong tokens: ids are not an oracle.
        return Err(Error::NotFound("order"));
    }
    let order = sqlx::query!(
        r#"SELECT o.status AS "status: OrderStatus", o.amount_cents, o.currency, o.quantity,
                  o.refunded_cents, o.payment_intent_id, o.paid_at IS NOT NULL AS "ever_paid!",
                  o.paid_at, o.buyer_email, o.buyer_name, o.created_at,
                  t.name AS tier_name, e.title, e.slug, e.starts_at, e.ends_at, e.timezone,
                  e.organiser, e.organiser_email, e.updated_at AS event_updated_at,
                  h.expires_at AS held_until
           FROM orders o JOIN tiers t ON t.id = o.tier_id JOIN events e ON e.id = o.event_id
                JOIN holds h ON h.id = o.hold_id
           WHERE o.id = $1"#,
        order_id
    )
    .fetch_optional(&s.db)
    .await?
    .ok_or(Error::NotFound("order"))?;
    let tickets = sqlx::query_as!(
        pages::TicketView,
        r#"SELECT t.id, t.code, t.status AS "status: TicketStatus", t.holder_name,
                  t.holder_email = o.buyer_email AS "mine!"
           FROM tickets t JOIN orders o ON o.id = t.order_id
           WHERE t.order_id = $1 ORDER BY t.seat_no"#,
        order_id
    )
    .fetch_all(&s.db)
    .await?;
    Ok(pages::OrderView {
        order_id,
        status: order.status,
        amount_cents: order.amount_cents,
        refunded_cents: order.refunded_cents,
        currency: order.currency,
        quantity: order.quantity,
        tier: order.tier_name,
        event_title: order.title,
        event_slug: order.slug,
        starts_at: order.starts_at,
        timezone: order.timezone,
        tickets,
        deliveries: Vec::new(),
        pay_url: order
            .payment_intent_id
            .as_deref()
            .map(|id| s.provider.pay_url(id)),
        ever_paid: order.ever_paid,
        payment_intent_id: order.payment_intent_id,
        held_until: order.held_until,
        payment: pages::Payment::Unasked,
        buyer_email: order.buyer_email,
        buyer_name: order.buyer_name,
        ordered_at: order.created_at,
        paid_at: order.paid_at,
        organiser: order.organiser,
        organiser_email: order.organiser_email,
        token: token.to_owned(),
        ends_at: order.ends_at,
        event_updated_at: order.event_updated_at,
        names_saved: false,
    })
}

/// Whether an order waiting for payment has been paid at the provider (the news is on
/// its way) or not (the buyer came back without paying, or the card was declined): the
/// page must not say "waiting for your payment" when nothing is coming.
async fn payment_state(s: &AppState, view: &pages::OrderView) -> pages::Payment {
    let Some(intent_id) = view
        .payment_intent_id
        .as_deref()
        .filter(|_| view.status == OrderStatus::PendingPayment)
    else {
        return pages::Payment::Unasked;
    };
    let status = match s.intent_states.get(intent_id) {
        Some(status) => status,
        None => match s.provider.intent(intent_id).await {
            Ok(i) => {
                s.intent_states.remember(intent_id, &i.status);
                i.status
            }
            Err(e) => {
                tracing::warn!(error = %e, "payment state unknown for the order page");
                return pages::Payment::Unasked;
            }
        },
    };
    match status.as_str() {
        "succeeded" | "processing" => pages::Payment::Confirming,
        _ => pages::Payment::NotPaid,
    }
}

async fn order_json(
    State(s): State<AppState>,
    order_id: Result<Path<Uuid>, PathRejection>,
    q: Result<Query<OrderTokenQuery>, QueryRejection>,
) -> Result<Json<pages::OrderView>, Error> {
    let Path(order_id) = order_id.map_err(path_rejection)?;
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(
        order_view(&s, order_id, q.order_token.as_deref()).await?,
    ))
}

async fn webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let body = body.map_err(bytes_rejection)?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    webhooks::verify(
        s.config.payments.webhook_secret.expose(),
        signature,
        &body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| Error::BadSignature(e.to_string()))?;
    let event: webhooks::WebhookEvent = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("webhook body: {e}")))?;
    let outcome =
        settlement::apply_event(&s.db, s.provider.name(), &event, Source::Webhook).await?;
    jobs::after_settlement(&s, &outcome).await;
    Ok(Json(
        serde_json::json!({ "received": true, "outcome": outcome }),
    ))
}

// ---- buyer pages: the same operations, as forms, with HTML errors --------------------

/// A buyer page that cannot go on: plain words and the one thing to do
/// ([`dead_ends`]), with the API's status code.
fn page_error(s: &AppState, e: Error, at: dead_ends::Context<'_>) -> Response {
    let status = e.status();
    if status.is_server_error() {
        tracing::error!(error = %e, "page failed");
    }
    let d = dead_ends::dead_end(&e, at);
    let mut response = (status, Html(pages::error(&d))).into_response();
    if let (true, Some(slug)) = (d.forget_turn, at.slug) {
        let secure = if s.config.public_url.starts_with("https:") {
            "; Secure"
        } else {
            ""
        };
        // The gateway's queue and admission cookies (same name, path and flags), expired.
        for name in [format!("fg_q_{slug}"), format!("fg_a_{slug}")] {
            let cookie = format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}");
            if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
                response
                    .headers_mut()
                    .append(axum::http::header::SET_COOKIE, v);
            }
        }
    }
    response
}

fn at(slug: &str) -> dead_ends::Context<'_> {
    dead_ends::Context {
        slug: Some(slug),
        resume: None,
    }
}

/// Where the buyer's turn already has something going: its live order (to pay), or
/// its active hold (to finish checking out).
async fn in_progress(s: &AppState, event: &Event, headers: &HeaderMap) -> Option<String> {
    let jti = admission(s, event, headers).ok()??.jti;
    let row = sqlx::query!(
        r#"SELECT h.id AS hold_id, o.id AS "order_id?"
           FROM holds h LEFT JOIN orders o ON o.hold_id = h.id AND o.status = 'pending_payment'
           WHERE h.event_id = $1 AND h.admission_jti = $2 AND h.status IN ('active', 'converted')
           ORDER BY h.created_at DESC LIMIT 1"#,
        event.id,
        jti
    )
    .fetch_optional(&s.db)
    .await
    .ok()??;
    Some(match row.order_id {
        Some(order_id) => format!(
            "/orders/{order_id}?order_token={}",
            checkout::order_token(&s.config.order_token_secret, order_id)
        ),
        None => format!("/e/{}/holds/{}", event.slug, row.hold_id),
    })
}

async fn event_page(State(s): State<AppState>, Path(slug): Path<String>) -> Response {
    match load_event(&s, &slug).await {
        Ok((event, tiers)) => {
            Html(pages::event(&PublicEvent::new(&event, &tiers), None, None)).into_response()
        }
        Err(e) => page_error(&s, e, at(&slug)),
    }
}

async fn hold_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<HoldBody>, FormRejection>,
) -> Response {
    let body = match form {
        Ok(Form(b)) => b,
        Err(r) => return page_error(&s, Error::BadRequest(r.body_text()), at(&slug)),
    };
    let prefill = pages::Prefill {
        tier: body.tier.clone(),
        quantity: body.quantity,
        name: body.name.clone(),
        email: body.email.clone(),
    };
    match hold(&s, &slug, &headers, body).await {
        Ok(h) => Redirect::to(&format!("/e/{slug}/holds/{}", h.hold_id)).into_response(),
        // What the buyer typed can be put right on the same form.
        Err(e @ (Error::SoldOut | Error::Invalid(_))) => match load_event(&s, &slug).await {
            Ok((event, tiers)) => (
                e.status(),
                Html(pages::event(
                    &PublicEvent::new(&event, &tiers),
                    Some(&e.public_message()),
                    Some(&prefill),
                )),
            )
                .into_response(),
            Err(e) => page_error(&s, e, at(&slug)),
        },
        Err(e @ (Error::HoldExists | Error::OrderPending)) => {
            let resume = match load_event(&s, &slug).await {
                Ok((event, _)) => in_progress(&s, &event, &headers).await,
                Err(_) => None,
            };
            let here = dead_ends::Context {
                slug: Some(&slug),
                resume: resume.as_deref(),
            };
            page_error(&s, e, here)
        }
        Err(e) => page_error(&s, e, at(&slug)),
    }
}

/// The checkout page shows the buyer's name and e-mail, so it asks for the same proof
/// as releasing or paying: the admission the hold was made under (queue on).
async fn hold_page(
    State(s): State<AppState>,
    Path((slug, hold_id)): Path<(String, Uuid)>,
    headers: HeaderMap,
) -> Response {
    let hold = async {
        let jti = hold_admission(&s, hold_id, &headers).await?;
        let h = sqlx::query!(
            r#"SELECT h.quantity, h.status AS "status: HoldStatus", h.expires_at, h.buyer_name,
                      h.buyer_email, t.name AS tier,
                      t.price_cents, t.currency, e.title, e.starts_at, e.timezone, h.admission_jti
               FROM holds h JOIN tiers t ON t.id = h.tier_id JOIN events e ON e.id = h.event_id
               WHERE h.id = $1 AND e.slug = $2"#,
            hold_id,
            slug
        )
        .fetch_optional(&s.db)
        .await?;
        if let Some(h) = &h {
            crate::holds::answers_to(&h.admission_jti, jti.as_deref())?;
        }
        Ok(h)
    }
    .await;
    match hold {
        Ok(Some(h)) => Html(pages::hold(&pages::HoldView {
            slug: &slug,
            hold_id,
            title: &h.title,
            starts_at: h.starts_at,
            timezone: &h.timezone,
            buyer_name: &h.buyer_name,
            buyer_email: &h.buyer_email,
            unit_cents: h.price_cents,
            tier: &h.tier,
            quantity: h.quantity,
            amount_cents: h.price_cents * i64::from(h.quantity),
            currency: &h.currency,
            active: h.status == HoldStatus::Active && h.expires_at > chrono::Utc::now(),
            expires_at: h.expires_at,
        }))
        .into_response(),
        Ok(None) => page_error(&s, Error::NotFound("hold"), at(&slug)),
        Err(e) => page_error(&s, e, at(&slug)),
    }
}

async fn release_form(
    State(s): State<AppState>,
    Path((slug, hold_id)): Path<(String, Uuid)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let jti = hold_admission(&s, hold_id, &headers).await?;
        holds::release(&s.db, hold_id, jti.as_deref()).await
    }
    .await;
    match result {
        Ok(closed) => {
            if let Err(e) = admissions::hold_closed(&s, &closed).await {
                tracing::warn!(error = %e, "queue update after release failed");
            }
            Redirect::to(&format!("/e/{slug}")).into_response()
        }
        Err(e) => page_error(&s, e, at(&slug)),
    }
}

async fn pay_form(
    State(s): State<AppState>,
    Path((slug, hold_id)): Path<(String, Uuid)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let jti = hold_admission(&s, hold_id, &headers).await?;
        checkout::checkout(&s, hold_id, jti.as_deref()).await
    }
    .await;
    match result {
        Ok(view) => Redirect::to(&view.payment.pay_url).into_response(),
        Err(e) => page_error(&s, e, at(&slug)),
    }
}

/// `GET /orders/{id}/receipt`: what was paid, for whom, to whom, and what came back;
/// printable. Only a paid (or later refunded) order has one.
async fn receipt_page(
    State(s): State<AppState>,
    Path(order_id): Path<Uuid>,
    Query(q): Query<OrderTokenQuery>,
) -> Response {
    match order_view(&s, order_id, q.order_token.as_deref()).await {
        Ok(view) if view.paid_at.is_some() => Html(pages::receipt(&view)).into_response(),
        Ok(view) => {
            Redirect::to(&format!("/orders/{order_id}?order_token={}", view.token)).into_response()
        }
        Err(e) => page_error(&s, e, dead_ends::Context::default()),
    }
}

/// `GET /orders/{id}/calendar.ics`: the order page's "Add to calendar" — an entry per
/// ticket the buyer holds, under the UID and SEQUENCE the confirmation email and the
/// ticket's `/join` page use, so adding more than one of them never duplicates it.
async fn order_calendar(
    State(s): State<AppState>,
    Path(order_id): Path<Uuid>,
    Query(q): Query<OrderTokenQuery>,
) -> Response {
    use contract::calendar::{self, Invite};
    match order_view(&s, order_id, q.order_token.as_deref()).await {
        Ok(view) if view.paid_at.is_some() => {
            // The token was just checked; the link carries the same one.
            let page =
                contract::order_link::page_url(&s.config.public_url, order_id, "", &view.token);
            let invites: Vec<Invite> = view
                .tickets
                .iter()
                .filter(|t| t.mine && t.status == TicketStatus::Valid)
                .map(|t| Invite {
                    uid: calendar::uid(t.id),
                    sequence: calendar::sequence(view.event_updated_at),
                    title: &view.event_title,
                    starts_at: view.starts_at,
                    ends_at: view.ends_at,
                    link: &page,
                    personal: false,
                })
                .collect();
            if invites.is_empty() {
                return page_error(&s, Error::NotFound("order"), dead_ends::Context::default());
            }
            (
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "text/calendar; charset=utf-8",
                    ),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"tickets.ics\"",
                    ),
                ],
                calendar::calendar(&invites),
            )
                .into_response()
        }
        Ok(_) => page_error(&s, Error::NotFound("order"), dead_ends::Context::default()),
        Err(e) => page_error(&s, e, dead_ends::Context::default()),
    }
}

/// The names typed on the order page, one per ticket (`name_{code}`).
#[derive(Debug, Deserialize)]
struct TicketNames {
    #[serde(flatten)]
    names: std::collections::HashMap<String, String>,
}

/// `POST /orders/{id}/names`: puts a name on each ticket the buyer still holds (a
/// ticket given to someone else carries theirs). Audited on the order; an empty name
/// gives the ticket the buyer's name back.
async fn names_form(
    State(s): State<AppState>,
    Path(order_id): Path<Uuid>,
    Query(q): Query<OrderTokenQuery>,
    Form(form): Form<TicketNames>,
) -> Response {
    let result = async {
        let view = order_view(&s, order_id, q.order_token.as_deref()).await?;
        let mut changed = Vec::new();
        for t in view
            .tickets
            .iter()
            .filter(|t| t.mine && t.status == TicketStatus::Valid)
        {
            let Some(typed) = form.names.get(&format!("name_{}", t.code)) else {
                continue;
            };
            let name = match typed.trim() {
                "" => view.buyer_name.clone(),
                n => BuyerName::parse(n)?.as_str().to_owned(),
            };
            if name != t.holder_name {
                changed.push((t.id, t.code.clone(), t.holder_name.clone(), name));
            }
        }
        let mut tx = s.db.begin().await?;
        for (id, code, before, after) in &changed {
            sqlx::query!(
                r#"UPDATE tickets SET holder_name = $2
                   WHERE id = $1 AND status = 'valid'"#,
                id,
                after
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                r#"INSERT INTO order_events (order_id, actor, action, before, after)
                   VALUES ($1, 'buyer', 'ticket.name', $2, $3)"#,
                order_id,
                serde_json::json!({"code": code, "name": before}),
                serde_json::json!({"code": code, "name": after}),
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok::<_, Error>(view.token)
    }
    .await;
    match result {
        Ok(token) => Redirect::to(&format!(
            "/orders/{order_id}?order_token={token}&named=1#tickets"
        ))
        .into_response(),
        Err(e) => page_error(&s, e, dead_ends::Context::default()),
    }
}

async fn order_page(
    State(s): State<AppState>,
    Path(order_id): Path<Uuid>,
    Query(q): Query<OrderTokenQuery>,
) -> Response {
    match order_view(&s, order_id, q.order_token.as_deref()).await {
        Ok(mut view) => {
            view.payment = payment_state(&s, &view).await;
            view.names_saved = q.named.is_some();
            Html(pages::order(&view)).into_response()
        }
        Err(e) => page_error(&s, e, dead_ends::Context::default()),
    }
}
