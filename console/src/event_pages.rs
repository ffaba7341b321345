//! The console's event pages: the list of events, one event's page (tiers, refund
//! policy, deliveries) with the event-wide fixes — reschedule, cancel, resend to
//! everyone whose confirmation failed or bounced. The fixes are the same functions as
//! the JSON API (`support::FixBody::run`, `support::*_with`), so the rules (roles, audit,
//! idempotency) are one.
//!
//! Stable hooks for browser tests (keep these when restyling):
//! - `GET /console/events`: `table#events`, one `a.event` per event → its page, or
//!   `#no-events` (for a host: why they see none and whom to ask). A host's start page
//!   (`/console/` without a query sends them here), with a search box over their events.
//!   `form#event-filter` (GET, works without script, bookmarkable): `input[name=q]`
//!   (title or slug, any case, any part of it), `select[name=status]` (`upcoming`,
//!   `past`, `cancelled`, `all`), `input[name=from]` and `input[name=to]` (`YYYY-MM-DD`,
//!   the day the event starts in its own timezone, both ends included); the form keeps
//!   what was typed; `a#clear-filters` (while a filter is set) shows every event
//!   again. Nothing matching: `p#no-match` says so in words ("No events match “jazz”,
//!   past."), with `a#clear-filters-empty` to every event. Input that cannot be read (a
//!   date that is not one, an unknown status) is said in `p.banner.bad[role=alert]` and
//!   that filter is left out.
//! - `GET /console/events/{slug}`: `h1` is the title; `#status` the event's status;
//!   `#edit-event` (staff only: a host cannot edit);
//!   `table#tiers` (one row per tier: name, price, capacity, sold, held, available);
//!   `#refund-policy`; outcome banners `p.banner[role=status]` (done) and
//!   `p.banner.bad[role=alert]` (refused, with the reason).
//!   `#public-link`: the link buyers open (`a` to it, and the URL in a `code`);
//!   `#revenue`: one line per currency, "EUR 380.00 net: EUR 400.00 taken, EUR 20.00
//!   refunded" (money paid, refunds subtracted), or "Nothing paid yet.";
//!   `table#event-orders` (most recent first, 50 a page, `?page=N`): one row per order,
//!   `a.order` → `/console/orders/{id}`, then buyer name and address, status in words,
//!   tickets, tier, amount; `table#attendees` (one row per ticket, by holder name, 50 a
//!   page, `?attendees_page=N`): holder name, holder address, tier, `code`, status in
//!   words; each list's pager `nav.pager` with `a[rel=prev]` / `a[rel=next]`;
//!   `a#export-orders` → `/console/events/{slug}/orders.csv` and `a#export-attendees` →
//!   `/console/events/{slug}/attendees.csv` (`text/csv`, an attachment; every export is
//!   in the audit trail with who took it). A host sees addresses masked (`j•••@example.org`)
//!   unless the event lets its hosts see them (`privacy`), in the lists and the files.
//! - `form#reschedule` (staff), POST `/console/events/{slug}/reschedule`: `input[name=starts_at]`,
//!   `input[name=ends_at]` (text, `YYYY-MM-DD HH:MM` read in the event's own timezone; a `T`
//!   instead of the space, as `datetime-local` sends, and RFC 3339 with an offset are accepted
//!   too), `input[name=reason]`, `input[name=notify]`
//!   (checkbox, checked: buyers get the new time by email), hidden `csrf`, `action_key`;
//!   `button[type=submit]`.
//! - `form#cancel-event` (admin), POST `/console/events/{slug}/cancel`: `input[name=reason]`,
//!   `input[name=confirm]` (must be the event's slug), hidden `csrf`. Safe to submit again:
//!   a re-run refunds whatever the last run could not; `#cancel-progress` lists what is
//!   still unrefunded.
//! - `form#resend-undelivered` (staff), POST `/console/events/{slug}/resend-undelivered`:
//!   hidden `csrf`, `action_key`. `#undelivered` shows how many buyers it would reach.
//! - `GET /console/events/{slug}/incidents` (doors minus one hour, reloading itself every
//!   30 s): `table#incidents` (or `p#incidents` when there is nothing to fix), one row per
//!   buyer who will not get in unless someone acts — a confirmation that failed or
//!   bounced, a visit refused because the link was replaced when the address was
//!   corrected — each with what happened in words, a link to the order and its fix:
//!   a `button` "Resend" (staff; a form POSTing to `/console/orders/{id}/resend` with
//!   `back=incidents`, which comes back here) or an `a.button` "Fix address" (a bounce:
//!   the order's email form). Refusals nobody can fix (too early, a ticket given away)
//!   are only counted, in `#refused-visits`. `form#incident-resend` (staff, when more
//!   than one confirmation did not arrive) is the same POST as `form#resend-undelivered`,
//!   with `back=incidents` so the outcome shows on the incident view.
//!
//! A fix that is done redirects back with `?done=`; a refused one answers with the page
//! again (status 403 for a role, 409 for the event's state, 422 for the input), the
//! reason in `p.banner.bad[role=alert]` and in the form, and what was typed still in the
//! form. A form without the session's CSRF token (an expired or forged one) is a `403`
//! page and nothing is done.

//!
//! The pages are the templates `events.html`, `event.html` and `incidents.html`; what
//! they show is passed as the view structs below, and every value is escaped there.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use contract::states::{EventStatus, OrderStatus};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{CsrfForm, Operator, Role, SignedIn};
use crate::html;
use crate::moment::{self, Moment, Precision};
use crate::pages::{Flash, Retry, money, urlencode};
use crate::privacy::Shown;
use crate::roster;
use crate::support::{self, CancelBody, FixBody, RescheduleBody};

/// The outcome of the last fix as the `banners` macro shows it (`?done=` / `?error=`).
#[derive(Serialize)]
pub(crate) struct Outcome<'a> {
    done: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> From<&'a Flash> for Outcome<'a> {
    fn from(f: &'a Flash) -> Self {
        Outcome {
            done: f.done.as_deref(),
            error: f.error.as_deref(),
        }
    }
}

/// No outcome to show (a refused form shows its own).
const NO_OUTCOME: Outcome<'static> = Outcome {
    done: None,
    error: None,
};

/// A page for `op` from `template`, with a refused form's status when it shows one
/// again; if the page cannot be built, the refusal alone, else the error page.
pub(crate) fn shown(
    op: &Operator,
    retry: Option<&Retry>,
    template: &str,
    built: Result<Value, ConsoleError>,
) -> Response {
    match built {
        Ok(ctx) => html::render_with(
            retry.map_or(StatusCode::OK, |r| r.status),
            template,
            Some(op),
            context! { retry, ..ctx },
        ),
        Err(_) if retry.is_some() => retry.map(|r| r.page(op)).expect("a retry"),
        Err(e) => html::error_page(Some(op), &e),
    }
}

/// A row of the events list.
#[derive(Serialize)]
struct ListedEvent {
    slug: String,
    title: String,
    starts: Moment,
    timezone: String,
    status: String,
    mode: String,
}

/// The events list's filters as the query string has them (all optional, all text:
/// what cannot be read is said on the page, not refused as a bad request).
#[derive(Deserialize, Default)]
pub struct EventFilter {
    q: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Which events by their time and state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    All,
    /// Not cancelled and not over yet (running now included).
    Upcoming,
    /// Not cancelled and over.
    Past,
    Cancelled,
}

impl When {
    const CHOICES: [(When, &'static str, &'static str); 4] = [
        (When::All, "all", "All"),
        (When::Upcoming, "upcoming", "Upcoming"),
        (When::Past, "past", "Past"),
        (When::Cancelled, "cancelled", "Cancelled"),
    ];

    fn parse(s: &str) -> Option<When> {
        match s {
            "" => Some(When::All),
            _ => Self::CHOICES
                .iter()
                .find(|(_, value, _)| *value == s)
                .map(|(w, _, _)| *w),
        }
    }

    fn value(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(w, _, _)| *w == self)
            .map_or("all", |(_, v, _)| v)
    }

    fn admits(self, e: &orders::events::Event, now: DateTime<Utc>) -> bool {
        let cancelled = e.status == EventStatus::Cancelled;
        match self {
            When::All => true,
            When::Upcoming => !cancelled && e.ends_at > now,
            When::Past => !cancelled && e.ends_at <= now,
            When::Cancelled => cancelled,
        }
    }
}

/// A `YYYY-MM-DD` field: nothing, a date, or the sentence that says why it is not one.
fn day(typed: &str, which: &str) -> Result<Option<NaiveDate>, String> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(typed, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            format!("The {which} date “{typed}” is not a date like 2026-12-31, so it was left out.")
        })
}

/// `GET /console/events`: the events the operator may see, searched and filtered.
pub async fn list_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    query: Result<Query<EventFilter>, QueryRejection>,
) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let f = match query {
        Ok(Query(f)) => f,
        Err(_) => {
            problems.push("The filters could not be read; showing every event.".to_owned());
            EventFilter::default()
        }
    };
    let q = f.q.unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let status_typed = f.status.unwrap_or_default();
    let when = When::parse(status_typed.trim()).unwrap_or_else(|| {
        problems.push(format!(
            "“{}” is not a status; choose upcoming, past, cancelled or all.",
            status_typed.trim()
        ));
        When::All
    });
    let (from_typed, to_typed) = (f.from.unwrap_or_default(), f.to.unwrap_or_default());
    let from = day(&from_typed, "from").unwrap_or_else(|p| {
        problems.push(p);
        None
    });
    let to = day(&to_typed, "to").unwrap_or_else(|p| {
        problems.push(p);
        None
    });

    let mut all = match orders::events::list(&s.db).await {
        Ok(all) => all,
        Err(e) => return html::error_page(Some(&operator), &ConsoleError::from(e)),
    };
    all.retain(|e| operator.may_see(e.id));
    // Whether there is anything to filter: a host with no events is told why instead.
    let any = !all.is_empty();
    let now = Utc::now();
    all.retain(|e| {
        let typed = needle.is_empty()
            || e.title.to_lowercase().contains(&needle)
            || e.slug.contains(&needle);
        // The day it starts where it happens: "events on the 5th" means the local 5th.
        let starts = e
            .starts_at
            .with_timezone(&moment::zone(&e.timezone))
            .date_naive();
        typed
            && when.admits(e, now)
            && from.is_none_or(|d| starts >= d)
            && to.is_none_or(|d| starts <= d)
    });
    // What was asked for, in words, for "No events match …".
    let mut asked: Vec<String> = Vec::new();
    if !needle.is_empty() {
        asked.push(format!("“{}”", q.trim()));
    }
    if when != When::All {
        asked.push(when.value().to_owned());
    }
    if let Some(d) = from {
        asked.push(format!("from {d}"));
    }
    if let Some(d) = to {
        asked.push(format!("to {d}"));
    }
    let filtered = !asked.is_empty() || !problems.is_empty();
    let events: Vec<ListedEvent> = all
        .into_iter()
        .map(|e| ListedEvent {
            starts: moment::at(e.starts_at, moment::zone(&e.timezone), Precision::Minute),
            status: e.status.to_string(),
            mode: e.queue_mode.as_str().replace('_', " "),
            slug: e.slug,
            title: e.title,
            timezone: e.timezone,
        })
        .collect();
    let statuses: Vec<(&str, &str)> = When::CHOICES.iter().map(|(_, v, l)| (*v, *l)).collect();
    html::render(
        "events.html",
        Some(&operator),
        context! {
            title => "Events",
            staff => operator.role != Role::Host,
            any,
            events,
            filter => context! {
                q,
                status => when.value(),
                from => from_typed,
                to => to_typed,
            },
            statuses,
            filtered,
            asked,
            problems,
        },
    )
}

#[derive(sqlx::FromRow)]
struct Unrefunded {
    id: Uuid,
    buyer_email: String,
    amount_cents: i64,
    refunded_cents: i64,
    currency: String,
}

/// Which page of each list the event's page shows (`?page=`, `?attendees_page=`);
/// anything but a number is the first page.
#[derive(Deserialize, Default)]
pub struct Paging {
    page: Option<String>,
    attendees_page: Option<String>,
}

/// The pages of the event's two lists.
#[derive(Clone, Copy)]
struct Lists {
    orders: i64,
    attendees: i64,
}

impl Lists {
    const FIRST: Lists = Lists {
        orders: 1,
        attendees: 1,
    };

    fn from(p: &Paging) -> Lists {
        let n = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(1)
        };
        Lists {
            orders: n(&p.page),
            attendees: n(&p.attendees_page),
        }
    }
}

/// `GET /console/events/{slug}`.
pub async fn event_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(slug): Path<String>,
    Query(flash): Query<Flash>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Response {
    let lists = Lists::from(&paging.map(|Query(p)| p).unwrap_or_default());
    Page::Event(lists)
        .render(&s, &operator, &slug, Outcome::from(&flash), None)
        .await
}

/// The event as its page shows it.
#[derive(Serialize)]
struct EventView {
    slug: String,
    title: String,
    status: String,
    starts: Moment,
    ends: Moment,
    timezone: String,
    provider: String,
    mode: String,
}

/// The refund policy: the hours and the moment they end, or the stored policy as it is.
#[derive(Serialize)]
struct PolicyView {
    hours: Option<u64>,
    until: Option<Moment>,
    raw: String,
}

#[derive(Serialize)]
struct TierView {
    name: String,
    price: String,
    capacity: i32,
    sold: i32,
    held: i32,
    available: i32,
}

/// An order a cancellation has not refunded (yet).
#[derive(Serialize)]
struct UnrefundedView {
    id: Uuid,
    email: String,
    left: String,
}

/// The reschedule form's values: the times as they are (a refused form shows what was
/// typed instead), whether buyers are told, the action key.
#[derive(Serialize)]
struct RescheduleView {
    starts: String,
    ends: String,
    notify: bool,
    key: Uuid,
}

async fn event_view(
    s: &AppState,
    op: &Operator,
    slug: &str,
    retry: Option<&Retry>,
    lists: Lists,
) -> Result<Value, ConsoleError> {
    let (_, e) = crate::auth::visible_event(&s.db, op, slug).await?;
    let tiers = orders::events::tiers(&s.db, e.id).await?;
    let tz = moment::zone(&e.timezone);
    let shown = Shown::for_event(&s.db, op, e.id).await?;
    let revenue = roster::revenue(&s.db, e.id).await?;
    let (event_orders, orders_pager) = roster::orders(&s.db, e.id, tz, lists.orders, shown).await?;
    let (attendees, attendees_pager) =
        roster::attendees(&s.db, e.id, lists.attendees, shown).await?;
    let by_status: Vec<(OrderStatus, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM orders WHERE event_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(e.id)
    .fetch_all(&s.db)
    .await?;
    let by_status: Vec<(&str, i64)> = by_status
        .into_iter()
        .map(|(st, n)| (crate::labels::order_status(st), n))
        .collect();
    let undelivered: i64 = sqlx::query_scalar(
        r#"SELECT count(DISTINCT o.id) FROM orders o JOIN deliveries d ON d.order_id = o.id
           WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
             AND d.kind = 'confirmation' AND d.status IN ('failed', 'bounced')
             AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.order_id = o.id
                             AND s.kind = 'confirmation' AND s.status = 'sent')"#,
    )
    .bind(e.id)
    .fetch_one(&s.db)
    .await?;
    let cancelled = e.status == EventStatus::Cancelled;
    // What a cancellation has not refunded yet: its failures, until a re-run settles them.
    let unrefunded: Vec<UnrefundedView> = if cancelled {
        sqlx::query_as::<_, Unrefunded>(
            "SELECT id, buyer_email, amount_cents, refunded_cents, currency FROM orders
             WHERE event_id = $1 AND status IN ('paid', 'partially_refunded') ORDER BY created_at",
        )
        .bind(e.id)
        .fetch_all(&s.db)
        .await?
        .into_iter()
        .map(|o| UnrefundedView {
            id: o.id,
            left: money(o.amount_cents - o.refunded_cents, &o.currency),
            email: shown.email(&o.buyer_email),
        })
        .collect()
    } else {
        Vec::new()
    };

    let hours = e
        .refund_policy
        .get("refundable_until_hours_before")
        .and_then(|h| h.as_u64());
    let policy = PolicyView {
        hours,
        until: hours.map(|h| {
            moment::at(
                e.starts_at - chrono::Duration::hours(h as i64),
                tz,
                Precision::Minute,
            )
        }),
        raw: e.refund_policy.to_string(),
    };
    let tiers: Vec<TierView> = tiers
        .iter()
        .map(|t| TierView {
            name: t.name.clone(),
            price: money(t.price_cents, &t.currency),
            capacity: t.capacity,
            sold: t.sold,
            held: t.held,
            available: t.available(),
        })
        .collect();
    let reschedule = (e.status == EventStatus::Scheduled).then(|| RescheduleView {
        starts: moment::input_value(e.starts_at, tz),
        ends: moment::input_value(e.ends_at, tz),
        // Checked, unless the refused form came back without it.
        notify: retry
            .filter(|r| r.form == "reschedule")
            .is_none_or(|r| r.typed("reschedule", "notify").is_some()),
        key: Uuid::new_v4(),
    });
    let provider = e
        .meeting
        .get("provider")
        .and_then(|p| p.as_str())
        .unwrap_or("?")
        .replace('_', " ");
    let view = EventView {
        slug: e.slug.clone(),
        title: e.title.clone(),
        status: e.status.to_string(),
        starts: moment::at(e.starts_at, tz, Precision::Minute),
        ends: moment::at(e.ends_at, tz, Precision::Minute),
        timezone: e.timezone.clone(),
        provider,
        mode: e.queue_mode.as_str().replace('_', " "),
    };
    Ok(context! {
        title => &e.title,
        e => view,
        policy,
        tiers,
        by_status,
        undelivered,
        cancelled,
        unrefunded,
        staff => op.role != Role::Host,
        admin => op.role == Role::Admin,
        reschedule,
        zone_hint => moment::zone_hint(tz),
        input_format => moment::INPUT_FORMAT,
        resend_key => Uuid::new_v4(),
        public_link => format!("{}/e/{}", s.public_url, e.slug),
        revenue,
        event_orders,
        orders_pager,
        attendees,
        attendees_pager,
        masked => shown == Shown::Masked,
    })
}

type Fields = HashMap<String, String>;

fn get<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
    f.get(k).map(String::as_str)
}

/// Where a form goes next: done → back to `page` with `?done=` (a reload posts nothing
/// again); refused → the page again with the form as it was typed.
async fn answer(
    s: &AppState,
    op: &Operator,
    slug: &str,
    form: &str,
    page: Page,
    result: Result<String, ConsoleError>,
    f: Fields,
) -> Response {
    match result {
        Ok(done) => {
            let path = match page {
                Page::Event(_) => format!("/console/events/{}", urlencode(slug)),
                Page::Incidents => format!("/console/events/{}/incidents", urlencode(slug)),
            };
            Redirect::to(&format!("{path}?done={}", urlencode(&done))).into_response()
        }
        Err(e) => {
            let retry = Retry::new(form, &e, f);
            page.render(s, op, slug, NO_OUTCOME, Some(&retry)).await
        }
    }
}

/// An event's two pages with fixes on them: the event's own and its incident view.
#[derive(Clone, Copy)]
enum Page {
    Event(Lists),
    Incidents,
}

impl Page {
    /// The page, with a refused form shown again if there is one (and its status).
    async fn render(
        self,
        s: &AppState,
        op: &Operator,
        slug: &str,
        flash: Outcome<'_>,
        retry: Option<&Retry>,
    ) -> Response {
        let (built, template) = match self {
            Page::Event(lists) => (event_view(s, op, slug, retry, lists).await, "event.html"),
            Page::Incidents => (incidents_view(s, op, slug).await, "incidents.html"),
        };
        shown(
            op,
            retry,
            template,
            built.map(|ctx| context! { flash, ..ctx }),
        )
    }
}

fn repeated(v: &serde_json::Value) -> bool {
    v.get("repeated").and_then(|r| r.as_bool()) == Some(true)
}

/// `POST /console/events/{slug}/reschedule`.
pub async fn reschedule_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    CsrfForm {
        operator,
        fields: f,
    }: CsrfForm,
) -> Response {
    let result = async {
        operator.require(crate::auth::STAFF)?;
        let (_, event) = crate::auth::visible_event(&s.db, &operator, &slug).await?;
        let tz = moment::zone(&event.timezone);
        let starts_at = moment::parse(get(&f, "starts_at").unwrap_or(""), tz, "the start")?;
        let ends_at = moment::parse(get(&f, "ends_at").unwrap_or(""), tz, "the end")?;
        if ends_at <= starts_at {
            return Err(ConsoleError::Invalid(
                "the end must be after the start".into(),
            ));
        }
        let reason = get(&f, "reason").map(str::trim).unwrap_or("");
        if reason.is_empty() {
            return Err(ConsoleError::Invalid("rescheduling needs a reason".into()));
        }
        let body = RescheduleBody {
            starts_at,
            ends_at,
            notify: f.contains_key("notify"),
            reason: Some(reason.to_owned()),
        };
        let v = body
            .run(&s, &operator, slug.clone(), get(&f, "action_key"))
            .await?;
        Ok(if repeated(&v) {
            "rescheduled (already done)".to_owned()
        } else if v.get("moved").and_then(|m| m.as_bool()) == Some(false) {
            "nothing to change: the times are the same".to_owned()
        } else {
            "rescheduled".to_owned()
        })
    }
    .await;
    answer(
        &s,
        &operator,
        &slug,
        "reschedule",
        Page::Event(Lists::FIRST),
        result,
        f,
    )
    .await
}

/// `POST /console/events/{slug}/cancel`.
pub async fn cancel_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    CsrfForm {
        operator,
        fields: f,
    }: CsrfForm,
) -> Response {
    let result = async {
        operator.require(&[Role::Admin])?;
        crate::auth::visible_event(&s.db, &operator, &slug).await?;
        if get(&f, "confirm").map(str::trim) != Some(slug.as_str()) {
            return Err(ConsoleError::Invalid(
                "to cancel, type the event's slug in the confirmation box".into(),
            ));
        }
        let body = CancelBody {
            reason: get(&f, "reason").unwrap_or_default().to_owned(),
        };
        let p = support::cancel_event_with(&s, &operator, &slug, body).await?;
        Ok(format!(
            "cancelled: {} order(s), {} refunded now, {} already settled, {} failed",
            p.orders,
            p.refunded_now,
            p.already_settled,
            p.failed.len()
        ))
    }
    .await;
    answer(
        &s,
        &operator,
        &slug,
        "cancel-event",
        Page::Event(Lists::FIRST),
        result,
        f,
    )
    .await
}

/// `POST /console/events/{slug}/resend-undelivered` (from the event's page, or with
/// `back=incidents` from the incident view).
pub async fn resend_undelivered_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    CsrfForm {
        operator,
        fields: f,
    }: CsrfForm,
) -> Response {
    let result = async {
        let v =
            support::resend_undelivered_with(&s, &operator, &slug, get(&f, "action_key")).await?;
        Ok(if repeated(&v) {
            "resent (already done)".to_owned()
        } else {
            format!(
                "confirmation resent to {} buyer(s)",
                v.get("resent").and_then(|n| n.as_u64()).unwrap_or(0)
            )
        })
    }
    .await;
    let (page, form) = if get(&f, "back") == Some("incidents") {
        (Page::Incidents, "incident-resend")
    } else {
        (Page::Event(Lists::FIRST), "resend-undelivered")
    };
    answer(&s, &operator, &slug, form, page, result, f).await
}

/// Something that went wrong for a buyer that an operator can put right.
#[derive(sqlx::FromRow)]
struct ProblemRow {
    order_id: Uuid,
    buyer_email: String,
    buyer_name: String,
    /// `bounced`, `failed` (the confirmation) or `old_link` (a visit refused because the
    /// link was replaced when the address was corrected).
    kind: String,
    /// The mail server's answer, or the address the old link was sent to.
    detail: Option<String>,
    at: DateTime<Utc>,
}

/// One row of the incident view: a buyer, what went wrong for them, and the fix.
#[derive(Serialize)]
struct IncidentView {
    order_id: Uuid,
    email: String,
    name: String,
    problems: Vec<ProblemView>,
    /// `address` (the confirmation bounced: the address needs correcting on the
    /// order's page) or `resend` (the confirmation again, with the current links).
    fix: &'static str,
    key: Uuid,
}

#[derive(Serialize)]
struct ProblemView {
    what: String,
    detail: Option<String>,
    at: Moment,
}

/// How far back refused visits count.
const RECENT_HOURS: i64 = 2;
/// Rows shown; the heading says how many there are in all.
const SHOWN: i64 = 200;
/// How often the incident view reloads itself: in the last hour before the doors an
/// operator watches it, and a meta refresh needs no script.
const REFRESH_SECONDS: u32 = 30;

/// `GET /console/events/{slug}/incidents`: the doors-minus-one-hour view — who will not
/// get in, each with the fix, and the one-step fix for the largest group.
pub async fn incidents_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(slug): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    Page::Incidents
        .render(&s, &operator, &slug, Outcome::from(&flash), None)
        .await
}

/// Paid orders whose newest confirmation failed or bounced and none was ever sent.
const UNDELIVERED: &str = r#"
    FROM orders o JOIN LATERAL (
         SELECT status, last_error, sent_at, created_at FROM deliveries
         WHERE order_id = o.id AND kind = 'confirmation' ORDER BY created_at DESC LIMIT 1) d ON true
    WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
      AND d.status IN ('failed', 'bounced')
      AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.order_id = o.id
                      AND s.kind = 'confirmation' AND s.status = 'sent')"#;

/// The refusals worth an operator's time: a valid ticket's link refused because it was
/// replaced when the order's address was corrected, and not put right since (no entry
/// with the new link, no confirmation sent after the visit). The visit is the old
/// address's: the link was sent there, so the row names that address, not the one the
/// ticket has now.
const OLD_LINK_VISITS: &str = r#"
    SELECT DISTINCT ON (o.id) o.id AS order_id, o.buyer_email, o.buyer_name,
           'old_link' AS kind,
           (SELECT ev.before ->> 'email' FROM order_events ev
            WHERE ev.order_id = o.id AND ev.action = 'order.email_change' AND ev.at >= l.created_at
            ORDER BY ev.at LIMIT 1) AS detail,
           r.at
    FROM redemptions r JOIN access_links l ON l.id = r.access_link_id
         JOIN tickets t ON t.id = r.ticket_id JOIN orders o ON o.id = t.order_id
    WHERE t.event_id = $1 AND r.outcome = 'replaced' AND t.status = 'valid'
      AND o.status IN ('paid', 'partially_refunded')
      AND r.at > now() - make_interval(hours => $2::int)
      AND NOT EXISTS (SELECT 1 FROM redemptions x WHERE x.ticket_id = t.id
                      AND x.outcome = 'entered' AND x.at > r.at)
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.order_id = o.id
                      AND d.kind = 'confirmation' AND d.created_at > r.at)
    ORDER BY o.id, r.at DESC"#;

/// What a problem row says, in words.
fn problem_words(kind: &str, detail: Option<String>) -> (String, Option<String>) {
    match kind {
        "bounced" => (
            "Confirmation bounced: the address looks wrong".to_owned(),
            detail,
        ),
        "failed" => ("Confirmation could not be sent".to_owned(), detail),
        _ => (
            "Opened an old link, replaced when the address was corrected".to_owned(),
            detail.map(|old| format!("from {old}")),
        ),
    }
}

/// One row per buyer, in the order their first problem came: a buyer with two problems
/// is one row that says both, with the fix that covers them (a bounced address first
/// needs correcting; a resend alone would bounce again).
fn by_buyer(rows: Vec<ProblemRow>, tz: chrono_tz::Tz, shown: Shown) -> Vec<IncidentView> {
    let mut views: Vec<IncidentView> = Vec::new();
    for r in rows {
        let (what, mut detail) = problem_words(&r.kind, r.detail);
        // A mail server's answer or the old address names the buyer.
        shown.text_in(&mut detail);
        let problem = ProblemView {
            what,
            detail,
            at: moment::at(r.at, tz, Precision::Minute),
        };
        let fix = if r.kind == "bounced" {
            "address"
        } else {
            "resend"
        };
        match views.iter_mut().find(|v| v.order_id == r.order_id) {
            Some(v) => {
                v.problems.push(problem);
                if fix == "address" {
                    v.fix = fix;
                }
            }
            None => views.push(IncidentView {
                order_id: r.order_id,
                email: shown.email(&r.buyer_email),
                name: r.buyer_name,
                problems: vec![problem],
                fix,
                key: Uuid::new_v4(),
            }),
        }
    }
    views
}

async fn incidents_view(s: &AppState, op: &Operator, slug: &str) -> Result<Value, ConsoleError> {
    let (_, e) = crate::auth::visible_event(&s.db, op, slug).await?;
    let tz = moment::zone(&e.timezone);
    let shown = Shown::for_event(&s.db, op, e.id).await?;
    let undelivered_total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) {UNDELIVERED}"
    )))
    .bind(e.id)
    .fetch_one(&s.db)
    .await?;
    let mut rows: Vec<ProblemRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id AS order_id, o.buyer_email, o.buyer_name, d.status AS kind,
                d.last_error AS detail, coalesce(d.sent_at, d.created_at) AS at
         {UNDELIVERED} ORDER BY o.buyer_email LIMIT $2"
    )))
    .bind(e.id)
    .bind(SHOWN)
    .fetch_all(&s.db)
    .await?;
    rows.extend(
        sqlx::query_as::<_, ProblemRow>(sqlx::AssertSqlSafe(format!("{OLD_LINK_VISITS} LIMIT $3")))
            .bind(e.id)
            .bind(RECENT_HOURS as i32)
            .bind(SHOWN)
            .fetch_all(&s.db)
            .await?,
    );
    // Refusals nobody can fix (too early, a ticket given away, a refund): counted, so
    // the operator knows they were seen, but not listed.
    let unfixable: Vec<(String, i64)> = sqlx::query_as(
        r#"SELECT r.outcome, count(DISTINCT t.order_id)
           FROM redemptions r JOIN tickets t ON t.id = r.ticket_id
           WHERE t.event_id = $1 AND r.outcome NOT IN ('entered', 'replaced')
             AND r.at > now() - make_interval(hours => $2::int)
           GROUP BY r.outcome ORDER BY 2 DESC, 1"#,
    )
    .bind(e.id)
    .bind(RECENT_HOURS as i32)
    .fetch_all(&s.db)
    .await?;
    let unfixable: Vec<String> = unfixable
        .into_iter()
        .map(|(outcome, n)| format!("{n} {}", crate::labels::visit_refusal(&outcome)))
        .collect();
    let doors = e.starts_at - chrono::Duration::hours(1);
    Ok(context! {
        title => format!("Incidents · {}", e.title),
        e => context! {
            slug => &e.slug,
            title => &e.title,
            starts => moment::at(e.starts_at, tz, Precision::Minute),
            doors => moment::at(doors, tz, Precision::Minute),
        },
        staff => op.role != Role::Host,
        undelivered_total,
        incidents => by_buyer(rows, tz, shown),
        unfixable,
        recent_hours => RECENT_HOURS,
        refresh_seconds => REFRESH_SECONDS,
        resend_key => Uuid::new_v4(),
    })
}
