//! Setting up an event from the console: the create form, checked by the same rules as
//! the API (`events::create_with`), and the edit page (the event's details and its
//! queue). A refused form comes back as the page again — the reason above the form,
//! what was typed still in it, the refusal's status (403 a role or an expired form, 409
//! a taken slug, 422 the input) — and nothing is written.
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

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use platform::html::escape;
use serde_json::{Map, Value, json};
use waitroom::settings::{AdmissionSettings, Mode};

use crate::ConsoleError;
use crate::admission::{self, AdmissionChange};
use crate::app::AppState;
use crate::auth::{Operator, STAFF};
use crate::event_pages::TIME_INPUT;
use crate::fixes::{Attempt, Fix, once};
use crate::moment::{self, Precision};
use crate::pages::{Retry, cents, error_page, layout, refusal_note, signed_in, urlencode};

const TIER_ROWS: usize = 3;

type Fields = HashMap<String, String>;

/// `GET /console/events/new`.
pub async fn new_page(operator: Result<Operator, ConsoleError>) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.require(STAFF) {
        return error_page(Some(&operator), &e);
    }
    let defaults: Fields = [
        ("timezone", "Europe/Amsterdam"),
        ("meeting_provider", "jitsi"),
        ("refundable_until_hours_before", "48"),
        ("queue_mode", "paused"),
        ("tier1_currency", "EUR"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    layout(
        "New event",
        Some(&operator),
        &form_html(&operator, &defaults, None),
    )
    .into_response()
}

fn options(name: &str, current: &str, choices: &[&str]) -> String {
    let opts: String = choices
        .iter()
        .map(|o| {
            format!(
                "<option value=\"{o}\"{}>{}</option>",
                if *o == current { " selected" } else { "" },
                o.replace('_', " ")
            )
        })
        .collect();
    format!("<select name=\"{name}\" id=\"{name}\">{opts}</select>")
}

/// The hint under the time fields: the format, and the zone they are read in.
fn time_hint(tz_name: &str) -> String {
    let zone = moment::zone(tz_name);
    format!(
        "<span class=\"hint\">As {}, 24-hour, in the event's timezone (now {}).</span>",
        moment::INPUT_FORMAT,
        escape(&moment::zone_hint(zone))
    )
}

fn form_html(op: &Operator, v: &Fields, error: Option<&str>) -> String {
    let val = |k: &str| escape(v.get(k).map(String::as_str).unwrap_or(""));
    let current = |k: &str| v.get(k).map(String::as_str).unwrap_or("");
    let tiers: String = (1..=TIER_ROWS)
        .map(|i| {
            format!(
                "<tr><td><input name=\"tier{i}_code\" value=\"{}\" size=\"6\" aria-label=\"Tier {i} code\"{req}></td>\
                 <td><input name=\"tier{i}_name\" value=\"{}\" aria-label=\"Tier {i} name\"></td>\
                 <td><input name=\"tier{i}_price\" value=\"{}\" inputmode=\"decimal\" size=\"8\" placeholder=\"20.00\" aria-label=\"Tier {i} price\"></td>\
                 <td><input name=\"tier{i}_currency\" value=\"{}\" size=\"4\" placeholder=\"EUR\" aria-label=\"Tier {i} currency\"></td>\
                 <td><input name=\"tier{i}_capacity\" value=\"{}\" type=\"number\" min=\"1\" size=\"7\" aria-label=\"Tier {i} capacity\"></td></tr>",
                val(&format!("tier{i}_code")),
                val(&format!("tier{i}_name")),
                val(&format!("tier{i}_price")),
                val(&format!("tier{i}_currency")),
                val(&format!("tier{i}_capacity")),
                req = if i == 1 { " required" } else { "" },
            )
        })
        .collect();
    let error = error
        .map(|e| format!("<p class=\"banner bad\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<p class=\"crumbs\"><a href=\"/console/events\">Events</a></p><h1>New event</h1>{error}\
         <form id=\"event-setup\" class=\"inline card\" method=\"post\" action=\"/console/events/new\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div class=\"grid\"><label>Title <input name=\"title\" value=\"{title}\" required></label>\
         <label>Slug (in the public URL) <input name=\"slug\" value=\"{slug}\" required pattern=\"[a-z0-9-]+\"></label>\
         <label>Timezone {tz}</label></div>\
         <div class=\"grid\"><label>Starts <input name=\"starts_at\" value=\"{starts}\" required {time_input}></label>\
         <label>Ends <input name=\"ends_at\" value=\"{ends}\" required {time_input}></label></div>{hint}\
         <div class=\"grid\"><label>Meeting provider {provider}</label>\
         <label>Meeting link (optional) <input name=\"meeting_url\" value=\"{url}\" type=\"url\"></label>\
         <label>Refunds until (hours before the start) <input name=\"refundable_until_hours_before\" type=\"number\" min=\"0\" value=\"{hours}\" required></label></div>\
         <h2>Tiers</h2><table><thead><tr><th>Code</th><th>Name</th><th>Price</th><th>Currency</th><th>Capacity</th></tr></thead><tbody>{tiers}</tbody></table>\
         <h2>Queue</h2><div class=\"grid\"><label>Mode {mode}</label>\
         <label>Opens (for a pre-queue) <input name=\"queue_opens_at\" value=\"{opens}\" {time_input}></label>\
         <label>Admitted per minute <input name=\"rate_per_minute\" type=\"number\" min=\"0\" value=\"{rate}\"></label>\
         <label>Max in checkout at once <input name=\"max_active\" type=\"number\" min=\"1\" value=\"{active}\"></label></div>\
         <button type=\"submit\">Create the event</button></form>",
        csrf = escape(op.csrf.as_deref().unwrap_or("")),
        title = val("title"),
        slug = val("slug"),
        tz = moment::select("timezone", current("timezone")),
        starts = val("starts_at"),
        ends = val("ends_at"),
        time_input = TIME_INPUT,
        hint = time_hint(current("timezone")),
        provider = options(
            "meeting_provider",
            current("meeting_provider"),
            &["jitsi", "zoom", "google_meet"]
        ),
        url = val("meeting_url"),
        hours = val("refundable_until_hours_before"),
        mode = options(
            "queue_mode",
            current("queue_mode"),
            &["paused", "prequeue", "on", "off"]
        ),
        opens = val("queue_opens_at"),
        rate = val("rate_per_minute"),
        active = val("max_active"),
    )
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
                .map_err(|_| invalid(format!("{what} must be a whole number"))),
        }
    };
    let mut meeting = Map::new();
    meeting.insert("provider".into(), json!(get("meeting_provider")));
    if !get("meeting_url").is_empty() {
        meeting.insert("url".into(), json!(get("meeting_url")));
    }
    let mut tiers = Vec::new();
    for i in 1..=TIER_ROWS {
        let f = |k: &str| get(&format!("tier{i}_{k}")).to_owned();
        if f("code").is_empty() {
            continue;
        }
        let price = cents(&f("price"))
            .ok_or_else(|| invalid(format!("tier {i}: the price is an amount like 20.00")))?;
        let capacity: i64 = f("capacity")
            .parse()
            .map_err(|_| invalid(format!("tier {i}: the capacity is a whole number")))?;
        tiers.push(json!({
            "code": f("code"), "name": f("name"), "price_cents": price,
            "currency": f("currency").to_uppercase(), "capacity": capacity,
        }));
    }
    let mut queue = Map::new();
    queue.insert("mode".into(), json!(get("queue_mode")));
    if !get("queue_opens_at").is_empty() {
        queue.insert(
            "opens_at".into(),
            json!(time("queue_opens_at", "the queue's opening")?),
        );
    }
    if let Some(r) = number("rate_per_minute", "admitted per minute")? {
        queue.insert("rate_per_minute".into(), json!(r));
    }
    if let Some(m) = number("max_active", "max in checkout")? {
        queue.insert("max_active".into(), json!(m));
    }
    let hours = number("refundable_until_hours_before", "the refund window")?
        .ok_or_else(|| invalid("the refund window is needed".into()))?;
    let (starts_at, ends_at) = (time("starts_at", "the start")?, time("ends_at", "the end")?);
    if ends_at <= starts_at {
        return Err(invalid("the end must be after the start".into()));
    }
    let body = json!({
        "slug": get("slug"), "title": get("title"),
        "starts_at": starts_at, "ends_at": ends_at,
        "timezone": tz.name(), "meeting": Value::Object(meeting),
        "refund_policy": {"refundable_until_hours_before": hours},
        "tiers": tiers, "queue": Value::Object(queue),
    });
    serde_json::from_value(body).map_err(|e| invalid(e.to_string()))
}

/// `POST /console/events/new`.
pub async fn create_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Form(v): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(v.get("csrf").map(String::as_str))?;
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
            (
                retry.status,
                layout(
                    "New event",
                    Some(&operator),
                    &form_html(&operator, &v, Some(&retry.message)),
                ),
            )
                .into_response()
        }
    }
}

/// `GET /console/events/{slug}/edit`: title, timezone, meeting, refund policy, tier
/// prices and capacities; and the queue. Times move with the reschedule form (buyers
/// are told).
pub async fn edit_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
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
    let found = async {
        let (event, tiers, stored) = edit_values(s, op, slug).await?;
        let queue = admission::current(s, &event).await;
        Ok::<_, ConsoleError>((event, tiers, stored, queue))
    }
    .await;
    match found {
        Ok((event, tiers, stored, queue)) => {
            let edit_values = match (typed, retry) {
                (Some(t), Some(r)) if r.form == "event-edit" => t,
                _ => &stored,
            };
            let queue_typed = match (typed, retry) {
                (Some(t), Some(r)) if r.form == "event-queue" => Some(t),
                _ => None,
            };
            let body = format!(
                "{}{}",
                edit_html(op, &event, &tiers, edit_values, retry),
                queue_html(op, &event, queue, queue_typed, retry)
            );
            (
                retry.map_or(StatusCode::OK, |r| r.status),
                layout(&format!("Edit {}", event.title), Some(op), &body),
            )
                .into_response()
        }
        Err(_) if retry.is_some() => retry.map(|r| r.page(op)).expect("a retry"),
        Err(e) => error_page(Some(op), &e),
    }
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
    }
    Ok((e, tiers, v))
}

fn edit_html(
    op: &Operator,
    event: &orders::events::Event,
    tiers: &Tiers,
    v: &Fields,
    retry: Option<&Retry>,
) -> String {
    let val = |k: &str| escape(v.get(k).map(String::as_str).unwrap_or(""));
    let current = |k: &str| v.get(k).map(String::as_str).unwrap_or("");
    let rows: String = tiers
        .iter()
        .map(|t| {
            format!(
                "<tr><td>{name} <span class=\"muted\">{code}</span></td>\
                 <td><input name=\"tier_{id}_price\" value=\"{price}\" inputmode=\"decimal\" size=\"8\" aria-label=\"{name} price\"> {cur}</td>\
                 <td><input name=\"tier_{id}_capacity\" value=\"{cap}\" type=\"number\" min=\"0\" size=\"7\" aria-label=\"{name} capacity\"></td>\
                 <td class=\"muted\">{sold} sold, {held} held</td></tr>",
                name = escape(&t.name),
                code = escape(&t.code),
                id = t.id,
                price = val(&format!("tier_{}_price", t.id)),
                cur = escape(&t.currency),
                cap = val(&format!("tier_{}_capacity", t.id)),
                sold = t.sold,
                held = t.held,
            )
        })
        .collect();
    let banner = retry
        .map(|r| {
            format!(
                "<p class=\"banner bad\" role=\"alert\">Not done: {}</p>",
                escape(&r.message)
            )
        })
        .unwrap_or_default();
    let slug = escape(&event.slug);
    let tz = moment::zone(&event.timezone);
    format!(
        "<p class=\"crumbs\"><a href=\"/console/events\">Events</a> · <a href=\"/console/events/{slug}\">{title}</a></p>\
         <h1>Edit the event</h1>{banner}\
         <p class=\"muted\">Starts {starts}. Times change with the reschedule form on the <a href=\"/console/events/{slug}\">event's page</a> \
         (buyers are told); the queue below, or live in the <a href=\"/console/events/{slug}/live\">control room</a>.</p>\
         <form id=\"event-edit\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/edit\"><strong>Details</strong>{note}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{key}\">\
         <div class=\"grid\"><label>Title <input name=\"title\" value=\"{title_value}\" required></label>\
         <label>Timezone {tz_select}</label></div>\
         <div class=\"grid\"><label>Meeting provider {providers}</label>\
         <label>Meeting link <input name=\"meeting_url\" value=\"{url}\" type=\"url\"></label>\
         <label>Refunds until (hours before the start) <input name=\"refundable_until_hours_before\" type=\"number\" min=\"0\" value=\"{hours}\" required></label></div>\
         <h2>Tiers</h2><table id=\"edit-tiers\"><thead><tr><th>Tier</th><th>Price</th><th>Capacity</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <p class=\"hint\">Tiers cannot be added or removed once the event exists. To stop a tier selling, set its capacity to what is sold and held.</p>\
         <label>Reason <input name=\"reason\" required value=\"{reason}\" placeholder=\"e.g. the venue has more room\"></label>\
         <button type=\"submit\">Save</button></form>",
        title = escape(&event.title),
        starts = moment::html(event.starts_at, tz, Precision::Minute),
        refused = crate::pages::refused_class(retry, "event-edit"),
        note = refusal_note(retry, "event-edit"),
        csrf = escape(op.csrf.as_deref().unwrap_or("")),
        key = uuid::Uuid::new_v4(),
        title_value = val("title"),
        tz_select = moment::select("timezone", current("timezone")),
        providers = options(
            "meeting_provider",
            current("meeting_provider"),
            &["jitsi", "zoom", "google_meet"]
        ),
        url = val("meeting_url"),
        hours = val("refundable_until_hours_before"),
        reason = val("reason"),
    )
}

/// The queue's settings as a form: what is live now, each field as it would be set.
fn queue_html(
    op: &Operator,
    event: &orders::events::Event,
    live: Result<AdmissionSettings, ConsoleError>,
    typed: Option<&Fields>,
    retry: Option<&Retry>,
) -> String {
    let tz = moment::zone(&event.timezone);
    let (settings, unavailable) = match live {
        Ok(s) => (s, ""),
        Err(_) => (
            event.admission(),
            "<p class=\"field-error\">The queue store is unreachable: these are the stored settings, and a change will be refused until it is back.</p>",
        ),
    };
    let current = |k: &str, live: String| -> String {
        escape(
            typed
                .and_then(|t| t.get(k))
                .map(String::as_str)
                .unwrap_or(&live),
        )
    };
    let mode = typed
        .and_then(|t| t.get("mode"))
        .map(String::as_str)
        .unwrap_or(settings.mode.as_str())
        .to_owned();
    let modes = ["off", "prequeue", "on", "paused", "sold_out", "closed"];
    format!(
        "<form id=\"event-queue\" class=\"inline card{refused}\" method=\"post\" action=\"/console/events/{slug}/queue\" style=\"margin-top:1rem\">\
         <strong>Queue</strong><span class=\"hint\">A change reaches every gateway within a second. Now: {now}.</span>{note}{unavailable}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div class=\"grid\"><label>Mode {modes}</label>\
         <label>Admitted per minute <input name=\"rate_per_minute\" type=\"number\" min=\"0\" max=\"1000000\" required value=\"{rate}\"></label>\
         <label>Max in checkout at once <input name=\"max_active\" type=\"number\" min=\"1\" max=\"1000000\" required value=\"{active}\"></label>\
         <label>Admission lasts (seconds) <input name=\"admission_ttl_seconds\" type=\"number\" min=\"30\" max=\"86400\" required value=\"{ttl}\"></label>\
         <label>Pre-queue draw at <input name=\"opens_at\" value=\"{opens}\" {time_input}></label></div>\
         <span class=\"hint\">The draw time is needed for a pre-queue; as {format}, 24-hour, in {zone} ({abbr}).</span>\
         <label>Reason <input name=\"reason\" required value=\"{reason}\" placeholder=\"e.g. checkout keeps up; admit faster\"></label>\
         <button type=\"submit\">Apply to the queue</button></form>",
        refused = crate::pages::refused_class(retry, "event-queue"),
        note = refusal_note(retry, "event-queue"),
        slug = escape(&event.slug),
        now = escape(&format!(
            "{} · {}/min · {} in checkout at most · admissions last {} s",
            settings.mode.as_str().replace('_', " "),
            settings.rate_per_minute,
            settings.max_active,
            settings.admission_ttl_seconds
        )),
        csrf = escape(op.csrf.as_deref().unwrap_or("")),
        modes = options("mode", &mode, &modes),
        rate = current("rate_per_minute", settings.rate_per_minute.to_string()),
        active = current("max_active", settings.max_active.to_string()),
        ttl = current(
            "admission_ttl_seconds",
            settings.admission_ttl_seconds.to_string()
        ),
        opens = current(
            "opens_at",
            settings
                .opens_at
                .map(|t| moment::input_value(t, tz))
                .unwrap_or_default()
        ),
        time_input = TIME_INPUT,
        format = moment::INPUT_FORMAT,
        zone = escape(&event.timezone),
        abbr = escape(&moment::zone_hint(tz)),
        reason = current("reason", String::new()),
    )
}

fn edit_request(tiers: &Tiers, v: &Fields) -> Result<orders::events::EventEdit, ConsoleError> {
    let invalid = ConsoleError::Invalid;
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let mut meeting = Map::new();
    meeting.insert("provider".into(), json!(get("meeting_provider")));
    if !get("meeting_url").is_empty() {
        meeting.insert("url".into(), json!(get("meeting_url")));
    }
    let meeting: orders::events::Meeting =
        serde_json::from_value(Value::Object(meeting)).map_err(|e| invalid(e.to_string()))?;
    let hours: u32 = get("refundable_until_hours_before")
        .parse()
        .map_err(|_| invalid("the refund window is a whole number of hours".to_owned()))?;
    let mut edits = Vec::new();
    for t in tiers {
        let price = cents(get(&format!("tier_{}_price", t.id))).ok_or_else(|| {
            invalid(format!(
                "tier {}: the price is an amount like 20.00",
                t.code
            ))
        })?;
        let capacity: i32 = get(&format!("tier_{}_capacity", t.id))
            .parse()
            .map_err(|_| invalid(format!("tier {}: the capacity is a whole number", t.code)))?;
        edits.push((t.id, price, capacity));
    }
    Ok(orders::events::EventEdit {
        title: get("title").to_owned(),
        timezone: get("timezone").to_owned(),
        meeting,
        refund_policy: orders::events::RefundPolicy {
            refundable_until_hours_before: hours,
        },
        tiers: edits,
    })
}

/// `POST /console/events/{slug}/edit`: one transaction with its audit row; a repeat of
/// the same action key does nothing.
pub async fn edit_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(v): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(v.get("csrf").map(String::as_str))?;
        let (event, tiers, before) = edit_values(&s, &operator, &slug).await?;
        let reason = v.get("reason").map(|r| r.trim()).unwrap_or("").to_owned();
        if reason.is_empty() {
            return Err(ConsoleError::Invalid("a change needs a reason".into()));
        }
        let edit = edit_request(&tiers, &v)?;
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
    match result {
        Ok(_) => Redirect::to(&format!("/console/events/{}?done=saved", urlencode(&slug)))
            .into_response(),
        Err(e) => {
            let retry = Retry::new("event-edit", &e, HashMap::new());
            render_edit(&s, &operator, &slug, Some(&v), Some(&retry)).await
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
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
    Form(v): Form<Fields>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let result = async {
        operator.verify_csrf(v.get("csrf").map(String::as_str))?;
        operator.require(STAFF)?;
        let (_, event) = crate::auth::visible_event(&s.db, &operator, &slug).await?;
        let change = queue_change(&v, moment::zone(&event.timezone))?;
        admission::update_with(&s, &operator, &slug, change).await
    }
    .await;
    match result {
        Ok(_) => Redirect::to(&format!(
            "/console/events/{}?done=queue%20settings%20applied",
            urlencode(&slug)
        ))
        .into_response(),
        Err(e) => {
            let retry = Retry::new("event-queue", &e, HashMap::new());
            render_edit(&s, &operator, &slug, Some(&v), Some(&retry)).await
        }
    }
}
