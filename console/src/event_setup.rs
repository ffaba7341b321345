//! Setting up an event from the console: the create form, checked by the same rules as
//! the API (`events::create_with`), and the edit page (the event's details and its
//! queue). A refused form comes back as the page again — the reason above the form,
//! what was typed still in it, the refusal's status (403 a role, 409 a taken slug, 422
//! the input) — and nothing is written. A form without the session's CSRF token is a
//! `403` page.
//!
//! The pages are the templates `event_form.html` (create) and `event_edit.html`, with
//! the pieces they share with the event's page in `event_macros.html`.
//!
//! Stable hooks for browser tests: `GET /console/events/new` renders `form#event-setup`
//! (staff) posting to `/console/events/new` with `slug`, `title`, `timezone` (a `select`
//! of IANA names), `starts_at`, `ends_at` (text, `YYYY-MM-DD HH:MM` in that timezone; the
//! `T` form `datetime-local` sends is read too), `meeting_provider` (`jitsi` | `zoom` |
//! `google_meet`), `meeting_url` (optional), `refundable_until_hours_before`, `queue_mode`
//! (`off` | `prequeue` | `on` | `paused`), `queue_opens_at` (optional, like `starts_at`),
//! `rate_per_minute`, `max_active` (optional), and up to three tiers `tier{1,2,3}_code`,
//! `_name`, `_price` (e.g. `20.00`), `_currency`, `_capacity` (a row with no code is
//! skipped). An error is `p.banner.bad[role=alert]` above the form.
//!
//! `GET /console/events/{slug}/edit` renders `form#event-edit` (title, timezone, meeting,
//! refund policy, tier prices and capacities, `reason`) and `form#event-queue`, POST
//! `/console/events/{slug}/queue`: `mode` (`off` | `prequeue` | `on` | `paused` |
//! `sold_out` | `closed`), `rate_per_minute`, `max_active`, `admission_ttl_seconds`,
//! `opens_at` (like `starts_at`; for a pre-queue's draw), `reason` — the admission API's
//! change, live on every gateway within a second.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::admission::{self, AdmissionChange};
use crate::app::AppState;
use crate::auth::{CsrfForm, Operator, STAFF, SignedIn};
use crate::event_pages::shown;
use crate::fixes::{Attempt, Fix, once};
use crate::html;
use crate::moment::{self, Moment, Precision};
use crate::pages::{Retry, cents, urlencode};

/// Tier rows the create form shows at first; "Add a tier" adds one, up to the API's 20.
const TIER_ROWS: usize = 3;
const MAX_TIERS: usize = 20;

type Fields = HashMap<String, String>;

/// `GET /console/events/new`.
pub async fn new_page(SignedIn(operator): SignedIn) -> Response {
    if let Err(e) = operator.require(STAFF) {
        return html::error_page(Some(&operator), &e);
    }
    let defaults: Fields = [
        ("timezone", "Europe/Amsterdam"),
        ("meeting_provider", "jitsi"),
        ("refundable_until_hours_before", "48"),
        ("queue_mode", "paused"),
        ("hold_minutes", "10"),
        ("tier1_currency", "EUR"),
        ("tier1_max_per_order", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    new_form(&operator, &defaults, None)
}

/// One timezone a form offers.
#[derive(Serialize)]
pub(crate) struct ZoneChoice {
    name: Tpl,
    selected: bool,
}

/// The timezone `select`'s options: [`moment::choices`] with `current` selected, kept
/// even if it is not among them (an edit never silently changes a zone).
///
/// The choices are the IANA names compiled into chrono-tz, not anything typed or
/// stored, so they are marked safe: escaped, their `/` would read `&#x2f;` in the page's
/// source. `current`, when it is not one of them, is escaped as any value.
pub(crate) fn zone_choices(current: &str) -> Vec<ZoneChoice> {
    let mut zones: Vec<ZoneChoice> = moment::choices()
        .map(|z| ZoneChoice {
            name: Tpl::from_safe_string(z.to_owned()),
            selected: z == current,
        })
        .collect();
    if !current.is_empty() && !zones.iter().any(|z| z.selected) {
        zones.insert(
            0,
            ZoneChoice {
                name: Tpl::from(current),
                selected: true,
            },
        );
    }
    zones
}

/// The set-up form with `v` in it; `refused` is why it came back.
fn new_form(op: &Operator, v: &Fields, refused: Option<&Retry>) -> Response {
    let current = v.get("timezone").map(String::as_str).unwrap_or("");
    html::render_with(
        refused.map_or(axum::http::StatusCode::OK, |r| r.status),
        "event_form.html",
        Some(op),
        context! {
            title => "New event",
            v,
            error => refused.map(|r| &r.message),
            zones => zone_choices(current),
            zone_hint => moment::zone_hint(moment::zone(current)),
            input_format => moment::INPUT_FORMAT,
            tier_rows => tier_rows(v),
            max_tiers => MAX_TIERS,
        },
    )
}

/// How many tier rows the create form shows: at least [`TIER_ROWS`], as many as it
/// showed last time (`tier_rows`, so empty added rows stay), every row with something
/// typed in it, and one more when "Add a tier row" was pressed.
fn tier_rows(v: &Fields) -> usize {
    let shown = v
        .get("tier_rows")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let used = (1..=MAX_TIERS)
        .filter(|i| {
            ["code", "name", "price", "capacity"].iter().any(|k| {
                v.get(&format!("tier{i}_{k}"))
                    .is_some_and(|x| !x.trim().is_empty())
            })
        })
        .max()
        .unwrap_or(0);
    let more = usize::from(v.contains_key("add_tier"));
    (used.max(shown).max(TIER_ROWS) + more).min(MAX_TIERS)
}

/// The sale window, hold time, organiser and description, as both forms type them.
fn details_fields(
    v: &Fields,
    tz: chrono_tz::Tz,
) -> Result<(orders::events::Details, i32), ConsoleError> {
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let time = |k: &str, what: &str| match get(k) {
        "" => Ok(None),
        t => moment::parse(t, tz, what).map(Some),
    };
    let hold_minutes: i32 = match get("hold_minutes") {
        "" => 10,
        m => m.parse().map_err(|_| {
            ConsoleError::Invalid("The hold time is a whole number of minutes, 1 to 60.".into())
        })?,
    };
    let details = orders::events::Details {
        description: v.get("description").cloned().unwrap_or_default(),
        organiser: get("organiser").to_owned(),
        organiser_email: Some(get("organiser_email").to_owned()),
        sales_open_at: time("sales_open_at", "the sale's opening")?,
        sales_close_at: time("sales_close_at", "the sale's close")?,
        hosts_see_buyer_emails: get("hosts_see_buyer_emails") == "true",
    };
    Ok((details, hold_minutes.saturating_mul(60)))
}

/// The stored details as the forms' fields.
fn details_values(e: &orders::events::Event, v: &mut Fields) {
    let tz = moment::zone(&e.timezone);
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| moment::input_value(t, tz)).unwrap_or_default()
    };
    v.insert("description".into(), e.description.clone());
    v.insert("organiser".into(), e.organiser.clone());
    v.insert(
        "organiser_email".into(),
        e.organiser_email.clone().unwrap_or_default(),
    );
    v.insert("sales_open_at".into(), at(e.sales_open_at));
    v.insert("sales_close_at".into(), at(e.sales_close_at));
    v.insert("hold_minutes".into(), (e.hold_ttl_seconds / 60).to_string());
    if e.hosts_see_buyer_emails {
        v.insert("hosts_see_buyer_emails".into(), "true".into());
    }
}

/// The form as an API request: every check after this is the API's own.
fn request(v: &Fields) -> Result<orders::events::NewEventRequest, ConsoleError> {
    let invalid = ConsoleError::Invalid;
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let tz: chrono_tz::Tz = get("timezone")
        .parse()
        .map_err(|_| invalid(format!("\"{}\" is not a timezone name", get("timezone"))))?;
    let time = |k: &str, what: &str| moment::parse(get(k), tz, what);
    let number = |k: &str, what: &str| -> Result<Option<u64>, ConsoleError> {
        match get(k) {
            "" => Ok(None),
            n => n
                .parse()
                .map(Some)
                .map_err(|_| invalid(format!("{what} must be a whole number."))),
        }
    };
    let mut meeting = Map::new();
    meeting.insert("provider".into(), json!(get("meeting_provider")));
    if !get("meeting_url").is_empty() {
        meeting.insert("url".into(), json!(get("meeting_url")));
    }
    let mut tiers = Vec::new();
    for i in 1..=MAX_TIERS {
        let f = |k: &str| get(&format!("tier{i}_{k}")).to_owned();
        if f("code").is_empty() {
            continue;
        }
        let price = cents(&f("price"))
            .ok_or_else(|| invalid(format!("Tier {i}: the price is an amount like 20.00.")))?;
        let capacity: i64 = f("capacity")
            .parse()
            .map_err(|_| invalid(format!("Tier {i}: the capacity is a whole number.")))?;
        let mut tier = json!({
            "code": f("code"), "name": f("name"), "price_cents": price,
            "currency": f("currency").to_uppercase(), "capacity": capacity,
        });
        if !f("max_per_order").is_empty() {
            let max: i64 = f("max_per_order").parse().map_err(|_| {
                invalid(format!(
                    "Tier {i}: the tickets per order is a whole number."
                ))
            })?;
            tier["max_per_order"] = json!(max);
        }
        tiers.push(tier);
    }
    if tiers.is_empty() {
        return Err(invalid(
            "An event needs at least one tier: give it a code, a name, a price and a capacity."
                .into(),
        ));
    }
    let mut queue = Map::new();
    queue.insert("mode".into(), json!(get("queue_mode")));
    if !get("queue_opens_at").is_empty() {
        queue.insert(
            "opens_at".into(),
            json!(time("queue_opens_at", "the queue's opening")?),
        );
    } else if get("queue_mode") == "prequeue" && !get("sales_open_at").is_empty() {
        // A pre-queue's draw is when the sale opens, unless said otherwise: a draw
        // before it would admit people to a sale they cannot buy in yet.
        queue.insert(
            "opens_at".into(),
            json!(time("sales_open_at", "the sale's opening")?),
        );
    }
    if let Some(r) = number("rate_per_minute", "admitted per minute")? {
        queue.insert("rate_per_minute".into(), json!(r));
    }
    if let Some(m) = number("max_active", "max in checkout")? {
        queue.insert("max_active".into(), json!(m));
    }
    let hours = number("refundable_until_hours_before", "the refund window")?
        .ok_or_else(|| invalid("The refund window is needed, in hours before the start.".into()))?;
    let (starts_at, ends_at) = (time("starts_at", "the start")?, time("ends_at", "the end")?);
    if ends_at <= starts_at {
        return Err(invalid("The event must end after it starts.".into()));
    }
    let (details, hold_ttl_seconds) = details_fields(v, tz)?;
    let body = json!({
        "slug": get("slug"), "title": get("title"),
        "starts_at": starts_at, "ends_at": ends_at,
        "timezone": tz.name(), "meeting": Value::Object(meeting),
        "refund_policy": {"refundable_until_hours_before": hours},
        "tiers": tiers, "queue": Value::Object(queue),
        "hold_ttl_seconds": hold_ttl_seconds,
        "description": details.description, "organiser": details.organiser,
        "organiser_email": details.organiser_email,
        "sales_open_at": details.sales_open_at, "sales_close_at": details.sales_close_at,
        "hosts_see_buyer_emails": details.hosts_see_buyer_emails,
    });
    serde_json::from_value(body).map_err(|e| invalid(e.to_string()))
}

/// `POST /console/events/new`.
pub async fn create_form(
    State(s): State<AppState>,
    CsrfForm {
        operator,
        fields: v,
    }: CsrfForm,
) -> Response {
    if v.contains_key("add_tier") {
        // "Add a tier" re-draws the form with one more row; nothing is created.
        return new_form(&operator, &v, None);
    }
    let result = async {
        operator.require(STAFF)?;
        crate::events::create_with(&s, &operator, request(&v)?).await
    }
    .await;
    match result {
        Ok(view) => Redirect::to(&format!(
            "/console/events/{}?done=created",
            urlencode(&view.event.slug)
        ))
        .into_response(),
        Err(e) => {
            let retry = Retry::new("event-setup", &e, HashMap::new());
            new_form(&operator, &v, Some(&retry))
        }
    }
}

/// `GET /console/events/{slug}/edit`: title, timezone, meeting, refund policy, tier
/// prices and capacities; and the queue. Times move with the reschedule form (buyers
/// are told).
pub async fn edit_page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(slug): Path<String>,
) -> Response {
    render_edit(&s, &operator, &slug, None, None).await
}

/// The edit page; `typed` (with `retry`) is a refused form as it was typed.
async fn render_edit(
    s: &AppState,
    op: &Operator,
    slug: &str,
    typed: Option<&Fields>,
    retry: Option<&Retry>,
) -> Response {
    let built = async {
        let (event, tiers, stored) = edit_values(s, op, slug).await?;
        let queue = admission::current(s, &event).await;
        let edit_values = match (typed, retry) {
            (Some(t), Some(r)) if r.form == "event-edit" => t,
            _ => &stored,
        };
        let queue_typed = match (typed, retry) {
            (Some(t), Some(r)) if r.form == "event-queue" => Some(t),
            _ => None,
        };
        Ok(edit_view(&event, &tiers, edit_values, queue, queue_typed))
    }
    .await;
    shown(op, retry, "event_edit.html", built)
}

type Tiers = Vec<orders::events::Tier>;

async fn edit_values(
    s: &AppState,
    op: &Operator,
    slug: &str,
) -> Result<(orders::events::Event, Tiers, Fields), ConsoleError> {
    op.require(STAFF)?;
    let (_, e) = crate::auth::visible_event(&s.db, op, slug).await?;
    let tiers = orders::events::tiers(&s.db, e.id).await?;
    let mut v = Fields::new();
    v.insert("title".into(), e.title.clone());
    v.insert("timezone".into(), e.timezone.clone());
    let meeting = |k: &str| {
        e.meeting
            .get(k)
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_owned()
    };
    v.insert("meeting_provider".into(), meeting("provider"));
    v.insert("meeting_url".into(), meeting("url"));
    v.insert(
        "refundable_until_hours_before".into(),
        e.refund_policy
            .get("refundable_until_hours_before")
            .map(|h| h.to_string())
            .unwrap_or_default(),
    );
    for t in &tiers {
        v.insert(
            format!("tier_{}_price", t.id),
            format!("{}.{:02}", t.price_cents / 100, t.price_cents % 100),
        );
        v.insert(format!("tier_{}_capacity", t.id), t.capacity.to_string());
        v.insert(format!("tier_{}_max", t.id), t.max_per_order.to_string());
    }
    details_values(&e, &mut v);
    v.insert(
        "new_currency".into(),
        tiers
            .first()
            .map(|t| t.currency.clone())
            .unwrap_or_default(),
    );
    v.insert("new_max_per_order".into(), "10".into());
    Ok((e, tiers, v))
}

/// A tier's row of the edit form: its price and capacity as stored or as typed.
#[derive(Serialize)]
struct TierRow<'a> {
    id: Uuid,
    name: &'a str,
    code: &'a str,
    currency: &'a str,
    price: &'a str,
    capacity: &'a str,
    max: &'a str,
    sold: i32,
    held: i32,
}

/// The queue form: what is live now, each field as it would be set (or as typed).
#[derive(Serialize)]
struct QueueView {
    now: Live,
    unavailable: bool,
    mode: String,
    rate: String,
    active: String,
    ttl: String,
    opens: String,
    reason: String,
}

/// The queue's settings as they are live now.
#[derive(Serialize)]
struct Live {
    mode: String,
    rate: u32,
    active: u32,
    ttl: u32,
}

/// The event as its edit page shows it.
#[derive(Serialize)]
struct EditedEvent<'a> {
    slug: &'a str,
    title: &'a str,
    timezone: &'a str,
    starts: Moment,
}

/// The edit page: the details form with `v` in it, the queue form with the live
/// settings (or what was typed into it, `queue_typed`).
fn edit_view(
    event: &orders::events::Event,
    tiers: &Tiers,
    v: &Fields,
    live: Result<AdmissionSettings, ConsoleError>,
    queue_typed: Option<&Fields>,
) -> Tpl {
    let val = |k: &str| v.get(k).map(String::as_str).unwrap_or("");
    let tz = moment::zone(&event.timezone);
    let rows: Vec<TierRow> = tiers
        .iter()
        .map(|t| TierRow {
            id: t.id,
            name: &t.name,
            code: &t.code,
            currency: &t.currency,
            price: val(&format!("tier_{}_price", t.id)),
            capacity: val(&format!("tier_{}_capacity", t.id)),
            max: val(&format!("tier_{}_max", t.id)),
            sold: t.sold,
            held: t.held,
        })
        .collect();
    let (settings, unavailable) = match live {
        Ok(s) => (s, false),
        Err(_) => (event.admission(), true),
    };
    let typed = |k: &str, live: String| -> String {
        queue_typed.and_then(|t| t.get(k)).cloned().unwrap_or(live)
    };
    let queue = QueueView {
        now: Live {
            mode: settings.mode.as_str().replace('_', " "),
            rate: settings.rate_per_minute,
            active: settings.max_active,
            ttl: settings.admission_ttl_seconds,
        },
        unavailable,
        mode: typed("mode", settings.mode.as_str().to_owned()),
        rate: typed("rate_per_minute", settings.rate_per_minute.to_string()),
        active: typed("max_active", settings.max_active.to_string()),
        ttl: typed(
            "admission_ttl_seconds",
            settings.admission_ttl_seconds.to_string(),
        ),
        opens: typed(
            "opens_at",
            settings
                .opens_at
                .map(|t| moment::input_value(t, tz))
                .unwrap_or_default(),
        ),
        reason: typed("reason", String::new()),
    };
    context! {
        title => format!("Edit {}", event.title),
        e => EditedEvent {
            slug: &event.slug,
            title: &event.title,
            timezone: &event.timezone,
            starts: moment::at(event.starts_at, tz, Precision::Minute),
        },
        v,
        tiers => rows,
        zones => zone_choices(val("timezone")),
        key => Uuid::new_v4(),
        q => queue,
        zone_hint => moment::zone_hint(tz),
        input_format => moment::INPUT_FORMAT,
    }
}

fn edit_request(
    tiers: &Tiers,
    v: &Fields,
    tz: chrono_tz::Tz,
) -> Result<orders::events::EventEdit, ConsoleError> {
    let invalid = ConsoleError::Invalid;
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let mut meeting = Map::new();
    meeting.insert("provider".into(), json!(get("meeting_provider")));
    if !get("meeting_url").is_empty() {
        meeting.insert("url".into(), json!(get("meeting_url")));
    }
    let meeting: orders::events::Meeting =
        serde_json::from_value(Value::Object(meeting)).map_err(|e| invalid(e.to_string()))?;
    let hours: u32 = get("refundable_until_hours_before").parse().map_err(|_| {
        invalid("The refund window is a whole number of hours before the start.".to_owned())
    })?;
    let mut edits = Vec::new();
    for t in tiers {
        let field = |k: &str| get(&format!("tier_{}_{k}", t.id));
        let price_cents = cents(field("price")).ok_or_else(|| {
            invalid(format!(
                "Tier {}: the price is an amount like 20.00.",
                t.code
            ))
        })?;
        let whole = |k: &str, what: &str| {
            field(k)
                .parse::<i32>()
                .map_err(|_| invalid(format!("Tier {}: {what} is a whole number.", t.code)))
        };
        edits.push(orders::events::TierEdit {
            id: t.id,
            price_cents,
            capacity: whole("capacity", "the capacity")?,
            max_per_order: whole("max", "the tickets per order")?,
        });
    }
    let mut new_tiers = Vec::new();
    if !get("new_code").is_empty() {
        let price_cents = cents(get("new_price"))
            .ok_or_else(|| invalid("The new tier's price is an amount like 20.00.".into()))?;
        let whole = |k: &str, what: &str| {
            get(k)
                .parse::<i32>()
                .map_err(|_| invalid(format!("The new tier's {what} is a whole number.")))
        };
        new_tiers.push(orders::events::NewTierRequest {
            code: get("new_code").to_owned(),
            name: get("new_name").to_owned(),
            price_cents,
            currency: get("new_currency").to_uppercase(),
            capacity: whole("new_capacity", "capacity")?,
            max_per_order: Some(whole("new_max_per_order", "tickets per order")?),
        });
    }
    let (details, hold_ttl_seconds) = details_fields(v, tz)?;
    Ok(orders::events::EventEdit {
        title: get("title").to_owned(),
        timezone: get("timezone").to_owned(),
        meeting,
        refund_policy: orders::events::RefundPolicy {
            refundable_until_hours_before: hours,
        },
        hold_ttl_seconds,
        tiers: edits,
        new_tiers,
        details,
    })
}

/// `POST /console/events/{slug}/edit`: one transaction with its audit row; a repeat of
/// the same action key does nothing.
pub async fn edit_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    CsrfForm {
        operator,
        fields: v,
    }: CsrfForm,
) -> Response {
    let result = async {
        let (event, tiers, before) = edit_values(&s, &operator, &slug).await?;
        let reason = v.get("reason").map(|r| r.trim()).unwrap_or("").to_owned();
        if reason.is_empty() {
            return Err(ConsoleError::Invalid("a change needs a reason".into()));
        }
        // Times typed on this page are read in the zone it is saved with.
        let tz = v
            .get("timezone")
            .and_then(|z| z.trim().parse().ok())
            .unwrap_or(moment::zone(&event.timezone));
        // A field the form did not send keeps its stored value (a script may send only
        // what it changes); an unticked box is absent, so the form says it was shown.
        let mut merged = before.clone();
        merged.extend(v.iter().map(|(k, x)| (k.clone(), x.clone())));
        if v.contains_key("details_shown") && !v.contains_key("hosts_see_buyer_emails") {
            merged.remove("hosts_see_buyer_emails");
        }
        let edit = edit_request(&tiers, &merged, tz)?;
        crate::events::check_title(&edit.title)?;
        let event_id = event.id;
        let title = edit.title.trim().to_owned();
        // What was typed, sorted (a map's order must not change the key's fingerprint).
        let typed: BTreeMap<&String, &String> = v
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "csrf" | "action_key"))
            .collect();
        let changed = json!({"before": before, "after": typed});
        let attempt = Attempt {
            operator: &operator,
            action: Fix::EditEvent,
            subject: &slug,
            event: event_id,
            reason: Some(&reason),
            request: json!(typed),
            key: v.get("action_key").map(String::as_str),
        };
        let done = once(&s, &attempt, move |conn| {
            Box::pin(async move {
                orders::events::update(conn, event_id, &edit).await?;
                Ok(changed)
            })
        })
        .await?;
        if let Err(e) = s.room.set_title(&event.slug(), &title).await {
            tracing::warn!(error = %e, "mirroring the new title to the waiting room failed");
        }
        Ok(done)
    }
    .await;
    edited(&s, &operator, &slug, "event-edit", "saved", result, &v).await
}

/// Where a form of the edit page goes next: done → the event's page saying so (a reload
/// posts nothing again); refused → the edit page again, `form` as it was typed.
async fn edited<T>(
    s: &AppState,
    op: &Operator,
    slug: &str,
    form: &str,
    done: &str,
    result: Result<T, ConsoleError>,
    typed: &Fields,
) -> Response {
    match result {
        Ok(_) => Redirect::to(&format!(
            "/console/events/{}?done={}",
            urlencode(slug),
            urlencode(done)
        ))
        .into_response(),
        Err(e) => {
            let retry = Retry::new(form, &e, HashMap::new());
            render_edit(s, op, slug, Some(typed), Some(&retry)).await
        }
    }
}

/// The queue form as the admission API's change.
fn queue_change(v: &Fields, tz: chrono_tz::Tz) -> Result<AdmissionChange, ConsoleError> {
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let number = |k: &str, what: &str| -> Result<Option<u32>, ConsoleError> {
        match get(k) {
            "" => Ok(None),
            n => n.parse().map(Some).map_err(|_| {
                ConsoleError::Invalid(format!("{what} must be a whole number, 0 or more"))
            }),
        }
    };
    let mode: Option<Mode> = match get("mode") {
        "" => None,
        m => Some(m.parse()?),
    };
    let reason = get("reason");
    if reason.is_empty() {
        return Err(ConsoleError::Invalid("a change needs a reason".into()));
    }
    Ok(AdmissionChange {
        mode,
        rate_per_minute: number("rate_per_minute", "admitted per minute")?,
        max_active: number("max_active", "max in checkout")?,
        admission_ttl_seconds: number("admission_ttl_seconds", "how long an admission lasts")?,
        opens_at: match get("opens_at") {
            "" => None,
            t => Some(moment::parse(t, tz, "the pre-queue's draw")?),
        },
        reason: Some(reason.to_owned()),
    })
}

/// `POST /console/events/{slug}/queue`: the admission API's change from the edit page
/// (stored with its audit row, live within a second). Setting the same values again
/// changes nothing but adds an audit row, so it needs no action key.
pub async fn queue_form(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    CsrfForm {
        operator,
        fields: v,
    }: CsrfForm,
) -> Response {
    let result = async {
        operator.require(STAFF)?;
        let (_, event) = crate::auth::visible_event(&s.db, &operator, &slug).await?;
        let change = queue_change(&v, moment::zone(&event.timezone))?;
        admission::update_with(&s, &operator, &slug, change).await
    }
    .await;
    let applied = "queue settings applied";
    edited(&s, &operator, &slug, "event-queue", applied, result, &v).await
}
