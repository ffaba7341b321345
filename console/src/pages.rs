//! The back office, rendered on the server: login, the search box, an order's page
//! with its timeline, diagnosis and one-step fixes. Every form carries the session's
//! CSRF token and a fresh action key (so a double-click does the work once).
//!
//! The pages here render from `templates/` (`login.html`, `search.html`, `order.html`)
//! through `html::render`: the handlers hand the templates plain data (the view
//! structs below) and the templates escape every field they print. Page handlers take
//! [`SignedIn`]; form handlers take [`CsrfForm`] (its token already checked).
//!
//! `layout`, `signed_in`, `banners`, `refusal_note`, `refused_class` and `typed_or`
//! are the hand-escaped way the event pages still build their markup; nothing here
//! uses them any more.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use contract::states::{DeliveryStatus, OrderStatus, TicketStatus};
use minijinja::context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{CsrfForm, Operator, Role, SignedIn};
use crate::html;
use crate::labels;
use crate::moment::{self, Moment, Precision};
use crate::search;
use crate::sessions::{self, Login};
use crate::support::{
    self, CancelOrderBody, EmailBody, FixBody, OrderDetail, RefundBody, TransferBody,
};

pub(crate) use crate::html::error_page;

/// A form the server refused, shown again on its page: which form, why, and what was
/// typed (so nothing has to be typed twice). The page answers with the refusal's own
/// status: 403 (role, expired form), 404, 409 (the order's state or the refund
/// policy), 422 (the input).
#[derive(Serialize)]
pub(crate) struct Retry {
    /// The form's name on its page (`refund`, `email`, `transfer:{ticket}`, ...).
    pub form: String,
    #[serde(skip)]
    pub status: StatusCode,
    pub message: String,
    pub typed: HashMap<String, String>,
}

impl Retry {
    pub(crate) fn new(
        form: impl Into<String>,
        e: &ConsoleError,
        typed: HashMap<String, String>,
    ) -> Self {
        e.log();
        let (status, _, message) = e.public();
        Retry {
            form: form.into(),
            status,
            message,
            typed,
        }
    }

    /// The refusal alone, for when its page cannot be shown.
    pub(crate) fn page(&self, operator: &Operator) -> Response {
        crate::html::message(self.status, "Not done", Some(operator), &self.message)
    }

    /// What was typed into `field` of `form`, if this is that form.
    pub(crate) fn typed(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form)
            .then(|| self.typed.get(field).map(String::as_str))
            .flatten()
    }
}

/// What a fix's `?done=` says on the page.
fn done_text(done: &str) -> &str {
    match done {
        "resend" => "the confirmation is on its way again, with the current links",
        "email" => {
            "the address is corrected; new links are on their way and the old address is told"
        }
        "refund" => "refund started; the buyer is told by email",
        "cancel" => "the order is cancelled; the buyer is told by email",
        "transfer" => "the ticket is transferred; both people are told by email",
        other => other,
    }
}

pub(crate) fn money(cents: i64, currency: &str) -> String {
    platform::html::money(cents, currency)
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub email: String,
    pub password: String,
}

pub async fn login_page() -> Response {
    login_html(StatusCode::OK, None)
}

fn login_html(status: StatusCode, error: Option<&str>) -> Response {
    html::render_with(
        status,
        "login.html",
        None,
        context! { title => "Sign in", error },
    )
}

fn client(headers: &HeaderMap) -> String {
    // The gateway sets X-Forwarded-For to the client it decided on; the console is not
    // reachable except through it (or on loopback).
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("direct")
        .trim()
        .to_owned()
}

pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    match sessions::login(&s.db, &f.email, &f.password, &client(&headers)).await {
        Ok(Login::Ok(session)) => {
            // Whatever session this browser had before is over: the new id replaces it,
            // and a stolen or planted copy of the old one must not outlive the swap.
            if let Some(old) = session_cookie(&headers)
                && let Err(e) = sessions::logout(&s.db, &old).await
            {
                tracing::warn!(error = %e, "revoking the replaced session failed");
            }
            let cookie = sessions::cookie(
                &session.id,
                sessions::LIFETIME_HOURS * 3600,
                s.secure_cookies,
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/console/")).into_response()
        }
        Ok(Login::Refused) => {
            login_html(StatusCode::UNAUTHORIZED, Some("Wrong email or password."))
        }
        Ok(Login::Throttled) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, sessions::THROTTLE_SECONDS.to_string())],
            login_html(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed attempts. Wait 15 minutes and try again."),
            ),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The session id this browser presents, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == sessions::COOKIE)
        })
        .map(|(_, v)| v.to_owned())
}

pub async fn logout(State(s): State<AppState>, headers: HeaderMap, _: CsrfForm) -> Response {
    if let Some(id) = session_cookie(&headers) {
        let _ = sessions::logout(&s.db, &id).await;
    }
    (
        [(
            header::SET_COOKIE,
            sessions::cookie("", 0, s.secure_cookies),
        )],
        Redirect::to("/console/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
}

/// One search hit as the results table shows it.
#[derive(Serialize)]
struct HitView<'a> {
    id: Uuid,
    email: &'a str,
    name: &'a str,
    slug: &'a str,
    event: &'a str,
    status: &'static str,
    /// Why it was found, in words ("name", "ticket holder").
    matched: Vec<&'static str>,
    amount: String,
    at: Moment,
}

impl<'a> From<&'a search::Hit> for HitView<'a> {
    fn from(h: &'a search::Hit) -> Self {
        HitView {
            id: h.order_id,
            email: &h.buyer_email,
            name: &h.buyer_name,
            slug: &h.event_slug,
            event: &h.event_title,
            status: labels::order_status(h.status),
            matched: h.matched.iter().map(|m| m.words()).collect(),
            amount: money(h.amount_cents, &h.currency),
            at: moment::at(
                h.created_at,
                moment::zone(&h.event_timezone),
                Precision::Minute,
            ),
        }
    }
}

pub async fn search_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Query(p): Query<SearchParams>,
) -> Response {
    let q = p.q.unwrap_or_default();
    // A host starts on their events (where their own search box is): "Find a buyer"
    // among events they cannot see is not where their work begins.
    if operator.role == Role::Host && q.trim().is_empty() {
        return Redirect::to("/console/events").into_response();
    }
    // `hits` is none until something was searched for.
    let (hits, error) = if q.trim().is_empty() {
        (None, None)
    } else {
        match search::find(&s, &operator, &q).await {
            Ok(hits) => (Some(hits), None),
            Err(e) => {
                e.log();
                (None, Some(e.public().2))
            }
        }
    };
    let hits: Option<Vec<HitView>> = hits
        .as_ref()
        .map(|hits| hits.iter().map(HitView::from).collect());
    // Results from a read replica say how old they may be: an order paid a moment ago
    // can be missing from a replica that is behind.
    let behind = match (s.reads_replica, &hits) {
        (true, Some(_)) => match platform::db::replica_lag(&s.reads).await {
            Ok(lag) => lag.map(|l| l.as_secs_f64().round() as u64),
            Err(e) => {
                tracing::warn!(error = %e, "reading the replica's lag failed");
                None
            }
        },
        _ => None,
    };
    // A host who found nothing may have typed part of an address their events keep
    // from hosts: those are found by the whole address only, and the page says so.
    let whole_addresses = match &hits {
        Some(h) if h.is_empty() && operator.role == Role::Host => {
            crate::privacy::masked_events(&s.reads, &operator)
                .await
                .map(|m| !m.is_empty())
                .unwrap_or(false)
        }
        _ => false,
    };
    html::render(
        "search.html",
        Some(&operator),
        context! { title => "Search", q, hits, error, behind, whole_addresses },
    )
}

#[derive(Deserialize)]
pub struct Flash {
    pub done: Option<String>,
    pub error: Option<String>,
}

impl Flash {
    /// Nothing to report (a page shown again with a refused form).
    pub(crate) fn none() -> Self {
        Flash {
            done: None,
            error: None,
        }
    }

    /// The flash as the `banners` macro of `templates/macros.html` reads it: `done` in words.
    pub(crate) fn view(&self) -> minijinja::Value {
        context! {
            done => self.done.as_deref().map(done_text),
            error => self.error,
        }
    }
}

pub async fn order_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(id): Path<Uuid>,
    Query(flash): Query<Flash>,
) -> Response {
    render_order(&s, &operator, id, &flash, None).await
}

/// The order's page, with a refused form shown again if there is one (and its status).
async fn render_order(
    s: &AppState,
    operator: &Operator,
    id: Uuid,
    flash: &Flash,
    retry: Option<&Retry>,
) -> Response {
    match support::detail(s, operator, id).await {
        Ok(d) => html::render_with(
            retry.map_or(StatusCode::OK, |r| r.status),
            "order.html",
            Some(operator),
            order_context(&d, operator, flash, retry),
        ),
        // A refusal for an order this operator may not see: the refusal, without the order.
        Err(_) if retry.is_some() => retry.map(|r| r.page(operator)).expect("a retry"),
        Err(e) => error_page(Some(operator), &e),
    }
}

/// The order itself, as the top of its page shows it.
#[derive(Serialize)]
struct OrderView<'a> {
    id: Uuid,
    event_slug: &'a str,
    event_title: &'a str,
    starts: Moment,
    buyer_name: &'a str,
    buyer_email: &'a str,
    status: &'static str,
    tier: &'a str,
    quantity: i32,
    currency: &'a str,
    amount: String,
    /// What was refunded, if anything was.
    refunded: Option<String>,
    ordered: Moment,
    payment_intent_id: Option<&'a str>,
    /// The event's timezone, and "CET, UTC+01:00" now.
    zone: &'a str,
    zone_hint: String,
}

/// "Why can't they join?" and how worrying the answer is (a class: ok, warn, bad).
#[derive(Serialize)]
struct DiagnosisView<'a> {
    tone: &'static str,
    message: &'a str,
}

/// A row of the tickets table.
#[derive(Serialize)]
struct TicketView<'a> {
    id: Uuid,
    code: &'a str,
    status: String,
    holder_email: &'a str,
    /// "live (v2)", or "stopped" / "none" shown muted.
    link: String,
    link_muted: bool,
    last_visit: Option<Moment>,
    last_outcome: String,
    /// The transfer form's name (`transfer:{ticket}`) and its action key, if the
    /// operator may transfer this ticket.
    form: String,
    transfer_key: Option<Uuid>,
}

/// An email as sent (or not yet).
#[derive(Serialize)]
struct MailView<'a> {
    tone: &'static str,
    status: String,
    kind: String,
    to: &'a str,
    at: Moment,
    attempts: i32,
    error: Option<&'a str>,
    subject: &'a str,
    /// The email's HTML, shown in a sandboxed frame (escaped into its `srcdoc`).
    body_html: Option<&'a str>,
}

/// A row of the timeline: when, the tag (its source, or "refused"), the sentence, who.
#[derive(Serialize)]
struct EntryView<'a> {
    at: Moment,
    tag: &'a str,
    summary: &'a str,
    who: String,
}

/// The action keys of the fix forms, fresh for each page (a double-click does the work
/// once).
#[derive(Serialize)]
struct Keys {
    resend: Uuid,
    email: Uuid,
    refund: Uuid,
    cancel: Uuid,
}

/// The fix cards (staff only): which are offered, and what the refund card says.
#[derive(Serialize)]
struct FixesView {
    paid: bool,
    cancellable: bool,
    admin: bool,
    /// "inside" the refund policy; outside it, "admin" (who may override) or "closed".
    policy: &'static str,
    refundable_until: Moment,
    /// What is still refundable, as the amount field takes it ("12.50").
    remaining: String,
    keys: Keys,
}

fn order_context(
    d: &OrderDetail,
    op: &Operator,
    flash: &Flash,
    retry: Option<&Retry>,
) -> minijinja::Value {
    let o = &d.order;
    let tz = moment::zone(&o.timezone);
    let when = |t| moment::at(t, tz, Precision::Minute);
    let when_exactly = |t| moment::at(t, tz, Precision::Second);
    let order = OrderView {
        id: o.id,
        event_slug: &o.event_slug,
        event_title: &o.event_title,
        starts: when(o.starts_at),
        buyer_name: &o.buyer_name,
        buyer_email: &o.buyer_email,
        status: labels::order_status(o.status),
        tier: &o.tier,
        quantity: o.quantity,
        currency: &o.currency,
        amount: money(o.amount_cents, &o.currency),
        refunded: (o.refunded_cents > 0).then(|| money(o.refunded_cents, &o.currency)),
        ordered: when(o.created_at),
        payment_intent_id: o.payment_intent_id.as_deref(),
        zone: &o.timezone,
        zone_hint: moment::zone_hint(tz),
    };
    let diagnosis = DiagnosisView {
        tone: match d.diagnosis.state {
            "ok" => "ok",
            "too_early" | "ended" => "warn",
            _ => "bad",
        },
        message: &d.diagnosis.message,
    };
    let tickets: Vec<TicketView> = d
        .tickets
        .iter()
        .map(|t| {
            let (link, link_muted) = match t.link_generation {
                // The link exists, but /join refuses a ticket that is not valid.
                Some(_) if t.status != TicketStatus::Valid => ("stopped".to_owned(), true),
                Some(g) => (format!("live (v{g})"), false),
                None => ("none".to_owned(), true),
            };
            TicketView {
                id: t.id,
                code: &t.code,
                status: t.status.to_string(),
                holder_email: &t.holder_email,
                link,
                link_muted,
                last_visit: t.last_visit.map(when_exactly),
                last_outcome: t.last_outcome.as_deref().unwrap_or("").replace('_', " "),
                form: format!("transfer:{}", t.id),
                transfer_key: (op.role != Role::Host && t.status == TicketStatus::Valid)
                    .then(Uuid::new_v4),
            }
        })
        .collect();
    let mails: Vec<MailView> = d
        .deliveries
        .iter()
        .map(|m| MailView {
            tone: match m.status {
                DeliveryStatus::Sent => "ok",
                DeliveryStatus::Queued => "warn",
                DeliveryStatus::Failed | DeliveryStatus::Bounced => "bad",
            },
            status: m.status.to_string(),
            kind: match m.kind.as_str() {
                "confirmation" => "Confirmation".to_owned(),
                "email_change" => "Address-change notice".to_owned(),
                "transfer_notice" => "Transfer notice".to_owned(),
                "refund_notice" => "Refund notice".to_owned(),
                "reschedule_notice" => "New-time notice".to_owned(),
                other => other.replace('_', " "),
            },
            to: &m.recipient,
            at: when_exactly(m.sent_at.unwrap_or(m.created_at)),
            attempts: m.attempts,
            error: m.last_error.as_deref(),
            subject: m.subject.as_deref().unwrap_or(""),
            body_html: m.body_html.as_deref(),
        })
        .collect();
    let timeline: Vec<EntryView> = d
        .timeline
        .iter()
        .map(|t| EntryView {
            at: when_exactly(t.at),
            tag: if t.action.ends_with(".refused") {
                "refused"
            } else {
                t.source.as_str()
            },
            summary: &t.summary,
            who: crate::timeline::who(&t.source, &t.actor),
        })
        .collect();
    let fixes = (op.role != Role::Host).then(|| {
        let remaining = o.amount_cents - o.refunded_cents;
        FixesView {
            paid: o.status.is_paid(),
            cancellable: matches!(
                o.status,
                OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
            ),
            admin: op.role == Role::Admin,
            policy: if chrono::Utc::now() <= o.refundable_until {
                "inside"
            } else if op.role == Role::Admin {
                "admin"
            } else {
                "closed"
            },
            refundable_until: when(o.refundable_until),
            remaining: format!("{}.{:02}", remaining / 100, remaining % 100),
            keys: Keys {
                resend: Uuid::new_v4(),
                email: Uuid::new_v4(),
                refund: Uuid::new_v4(),
                cancel: Uuid::new_v4(),
            },
        }
    });
    context! {
        title => format!("Order of {}", o.buyer_name),
        flash => flash.view(),
        retry,
        order,
        diagnosis,
        tickets,
        fixes,
        mails,
        timeline,
    }
}

/// "20", "20.5", "20.00", "20,00" → cents.
pub(crate) fn cents(price: &str) -> Option<i64> {
    let price = price.trim().replace(',', ".");
    let (whole, frac) = price.split_once('.').unwrap_or((&price, ""));
    if whole.is_empty() || frac.len() > 2 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok().filter(|w: &i64| *w >= 0)?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

/// A form field's value, if the form sent it.
fn field(f: &CsrfForm, name: &str) -> Option<String> {
    f.get(name).map(str::to_owned)
}

/// Runs one of an order's fixes from its form (the CSRF token checked by [`CsrfForm`]).
/// Done: back to the order's page (a redirect, so a reload does not post again).
/// Refused: the page again, with the reason above the form, what was typed in it, and
/// the refusal's status.
async fn act(s: AppState, f: CsrfForm, id: Uuid, what: &str) -> Response {
    let operator = &f.operator;
    let result = async {
        let key = f.get("action_key");
        let reason = field(&f, "reason").unwrap_or_default();
        let override_policy = f.get("override_policy") == Some("true");
        match what {
            "resend" => support::resend_with(&s, operator, id, key).await,
            "cancel" => {
                let body = CancelOrderBody {
                    reason,
                    override_policy,
                };
                body.run(&s, operator, id, key).await
            }
            "email" => {
                let body = EmailBody {
                    email: field(&f, "email").unwrap_or_default(),
                    reason: field(&f, "reason").filter(|r| !r.trim().is_empty()),
                };
                body.run(&s, operator, id, key).await
            }
            _ => {
                // `amount` in the currency's units (the page's field), or `amount_cents`.
                let amount_cents = match (
                    f.get("amount").map(str::trim).filter(|a| !a.is_empty()),
                    f.get("amount_cents")
                        .map(str::trim)
                        .filter(|a| !a.is_empty()),
                ) {
                    (Some(a), _) => Some(cents(a).ok_or_else(|| {
                        ConsoleError::Invalid(format!(
                            "the amount \"{a}\" is not an amount like 20.00"
                        ))
                    })?),
                    (None, Some(c)) => Some(c.parse::<i64>().map_err(|_| {
                        ConsoleError::Invalid("the amount is a whole number of cents".into())
                    })?),
                    (None, None) => None,
                };
                let body = RefundBody {
                    amount_cents,
                    reason,
                    override_policy,
                };
                body.run(&s, operator, id, key).await
            }
        }
    }
    .await;
    match result {
        // A resend from the incident view goes back there: the operator is working
        // down its list, and the row they fixed leaves it.
        Ok(_) if what == "resend" && f.get("back") == Some("incidents") => {
            match incidents_of(&s, id).await {
                Ok(path) => Redirect::to(&format!(
                    "{path}?done={}",
                    urlencode("confirmation resent, with the current links")
                ))
                .into_response(),
                Err(e) => error_page(Some(operator), &e),
            }
        }
        Ok(_) => Redirect::to(&format!("/console/orders/{id}?done={what}")).into_response(),
        Err(e) => {
            let CsrfForm { operator, fields } = f;
            let retry = Retry::new(what, &e, fields);
            render_order(&s, &operator, id, &Flash::none(), Some(&retry)).await
        }
    }
}

/// The incident view of the order's event.
async fn incidents_of(s: &AppState, order: Uuid) -> Result<String, ConsoleError> {
    let slug = sqlx::query_scalar!(
        "SELECT e.slug FROM orders o JOIN events e ON e.id = o.event_id WHERE o.id = $1",
        order
    )
    .fetch_one(&s.db)
    .await?;
    Ok(format!("/console/events/{}/incidents", urlencode(&slug)))
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn transfer_form(
    State(s): State<AppState>,
    Path(ticket): Path<Uuid>,
    f: CsrfForm,
) -> Response {
    let operator = &f.operator;
    let order: Option<(Uuid, Uuid)> =
        match sqlx::query_as("SELECT order_id, event_id FROM tickets WHERE id = $1")
            .bind(ticket)
            .fetch_optional(&s.db)
            .await
        {
            // Whether this operator may see it is the transfer's to answer (after the
            // role, as the API does).
            Ok(found) => found,
            Err(e) => return error_page(Some(operator), &ConsoleError::from(e)),
        };
    let Some((order, _)) = order else {
        return error_page(
            Some(operator),
            &ConsoleError::from(orders::Error::NotFound("ticket")),
        );
    };
    let body = TransferBody {
        email: field(&f, "email").unwrap_or_default(),
        name: field(&f, "name").unwrap_or_default(),
        reason: field(&f, "reason").filter(|r| !r.trim().is_empty()),
    };
    let result = body.run(&s, operator, ticket, f.get("action_key")).await;
    match result {
        Ok(_) => Redirect::to(&format!("/console/orders/{order}?done=transfer")).into_response(),
        Err(e) => {
            let CsrfForm { operator, fields } = f;
            let retry = Retry::new(format!("transfer:{ticket}"), &e, fields);
            render_order(&s, &operator, order, &Flash::none(), Some(&retry)).await
        }
    }
}

pub async fn resend_form(State(s): State<AppState>, Path(id): Path<Uuid>, f: CsrfForm) -> Response {
    act(s, f, id, "resend").await
}

pub async fn email_form(State(s): State<AppState>, Path(id): Path<Uuid>, f: CsrfForm) -> Response {
    act(s, f, id, "email").await
}

pub async fn refund_form(State(s): State<AppState>, Path(id): Path<Uuid>, f: CsrfForm) -> Response {
    act(s, f, id, "refund").await
}

pub async fn cancel_form(State(s): State<AppState>, Path(id): Path<Uuid>, f: CsrfForm) -> Response {
    act(s, f, id, "cancel").await
}

#[cfg(test)]
mod tests {
    use super::cents;

    #[test]
    fn amounts_are_read_as_cents() {
        assert_eq!(cents("20"), Some(2000));
        assert_eq!(cents("20.5"), Some(2050));
        assert_eq!(cents("20,05"), Some(2005));
        assert_eq!(cents("0.99"), Some(99));
        assert_eq!(cents("20.555"), None);
        assert_eq!(cents("-1"), None);
        assert_eq!(cents("abc"), None);
        assert_eq!(cents(""), None);
    }
}
