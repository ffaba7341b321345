//! Setting up an event from the console: the create form, checked by the same rules as
//! the API (`events::create_with`). A refused form comes back with the reason and what
//! was typed, and nothing is written.
//!
//! Stable hooks for browser tests: `GET /console/events/new` renders `form#event-setup`
//! (staff) posting to `/console/events/new` with `slug`, `title`, `timezone` (IANA name),
//! `starts_at`, `ends_at` (`datetime-local` in that timezone), `meeting_provider`
//! (`jitsi` | `zoom` | `google_meet`), `meeting_url` (optional), `refundable_until_hours_before`,
//! `queue_mode` (`off` | `prequeue` | `on` | `paused`), `queue_opens_at` (optional),
//! `rate_per_minute`, `max_active` (optional), and up to three tiers `tier{1,2,3}_code`,
//! `_name`, `_price` (e.g. `20.00`), `_currency`, `_capacity` (a row with no code is
//! skipped). An error is `p.banner.bad[role=alert]` above the form (status 422).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use orders::pages::escape;
use serde_json::{Map, Value, json};

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{Operator, STAFF};
use crate::pages::{layout, signed_in, urlencode};

const TIER_ROWS: usize = 3;

/// `GET /console/events/new`.
pub async fn new_page(operator: Result<Operator, ConsoleError>) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.require(STAFF) {
        return e.into_response();
    }
    let defaults: HashMap<String, String> = [
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

fn form_html(op: &Operator, v: &HashMap<String, String>, error: Option<&str>) -> String {
    let val = |k: &str| escape(v.get(k).map(String::as_str).unwrap_or(""));
    let select = |name: &str, options: &[&str]| {
        let current = v.get(name).map(String::as_str).unwrap_or("");
        let opts: String = options
            .iter()
            .map(|o| {
                format!(
                    "<option value=\"{o}\"{}>{o}</option>",
                    if *o == current { " selected" } else { "" }
                )
            })
            .collect();
        format!("<select name=\"{name}\">{opts}</select>")
    };
    let tiers: String = (1..=TIER_ROWS)
        .map(|i| {
            format!(
                "<tr><td><input name=\"tier{i}_code\" value=\"{}\" size=\"6\"{req}></td><td><input name=\"tier{i}_name\" value=\"{}\"></td>\
                 <td><input name=\"tier{i}_price\" value=\"{}\" inputmode=\"decimal\" size=\"8\" placeholder=\"20.00\"></td>\
                 <td><input name=\"tier{i}_currency\" value=\"{}\" size=\"4\" placeholder=\"EUR\"></td>\
                 <td><input name=\"tier{i}_capacity\" value=\"{}\" type=\"number\" min=\"1\" size=\"7\"></td></tr>",
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
        "<p class=\"muted\"><a href=\"/console/events\">Events</a></p><h1>New event</h1>{error}\
         <form id=\"event-setup\" class=\"inline card\" method=\"post\" action=\"/console/events/new\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div class=\"grid\"><label>Title <input name=\"title\" value=\"{title}\" required></label>\
         <label>Slug (in the public URL) <input name=\"slug\" value=\"{slug}\" required pattern=\"[a-z0-9-]+\"></label>\
         <label>Timezone <input name=\"timezone\" value=\"{tz}\" required placeholder=\"Europe/Amsterdam\"></label></div>\
         <div class=\"grid\"><label>Starts <input name=\"starts_at\" type=\"datetime-local\" value=\"{starts}\" required></label>\
         <label>Ends <input name=\"ends_at\" type=\"datetime-local\" value=\"{ends}\" required></label></div>\
         <div class=\"grid\"><label>Meeting provider {provider}</label>\
         <label>Meeting link (optional) <input name=\"meeting_url\" value=\"{url}\" type=\"url\"></label>\
         <label>Refunds until (hours before the start) <input name=\"refundable_until_hours_before\" type=\"number\" min=\"0\" value=\"{hours}\" required></label></div>\
         <h2>Tiers</h2><table><thead><tr><th>Code</th><th>Name</th><th>Price</th><th>Currency</th><th>Capacity</th></tr></thead><tbody>{tiers}</tbody></table>\
         <h2>Queue</h2><div class=\"grid\"><label>Mode {mode}</label>\
         <label>Opens (optional) <input name=\"queue_opens_at\" type=\"datetime-local\" value=\"{opens}\"></label>\
         <label>Admitted per minute <input name=\"rate_per_minute\" type=\"number\" min=\"1\" value=\"{rate}\"></label>\
         <label>Max in checkout at once <input name=\"max_active\" type=\"number\" min=\"1\" value=\"{active}\"></label></div>\
         <button type=\"submit\">Create the event</button></form>",
        csrf = escape(op.csrf.as_deref().unwrap_or("")),
        title = val("title"),
        slug = val("slug"),
        tz = val("timezone"),
        starts = val("starts_at"),
        ends = val("ends_at"),
        provider = select("meeting_provider", &["jitsi", "zoom", "google_meet"]),
        url = val("meeting_url"),
        hours = val("refundable_until_hours_before"),
        mode = select("queue_mode", &["paused", "prequeue", "on", "off"]),
        opens = val("queue_opens_at"),
        rate = val("rate_per_minute"),
        active = val("max_active"),
    )
}

/// "20", "20.5", "20.00", "20,00" → cents.
fn cents(price: &str) -> Option<i64> {
    let price = price.trim().replace(',', ".");
    let (whole, frac) = price.split_once('.').unwrap_or((&price, ""));
    if whole.is_empty() || frac.len() > 2 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok().filter(|w: &i64| *w >= 0)?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

/// The form as an API request: every check after this is the API's own.
fn request(v: &HashMap<String, String>) -> Result<orders::events::NewEventRequest, String> {
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let tz: chrono_tz::Tz = get("timezone")
        .parse()
        .map_err(|_| format!("\"{}\" is not a timezone name", get("timezone")))?;
    let time = |k: &str, what: &str| {
        crate::event_pages::parse_time(get(k), tz, what).map_err(|e| e.to_string())
    };
    let number = |k: &str, what: &str| -> Result<Option<u64>, String> {
        match get(k) {
            "" => Ok(None),
            n => n
                .parse()
                .map(Some)
                .map_err(|_| format!("{what} must be a whole number")),
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
            .ok_or_else(|| format!("tier {i}: the price is an amount like 20.00"))?;
        let capacity: i64 = f("capacity")
            .parse()
            .map_err(|_| format!("tier {i}: the capacity is a whole number"))?;
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
        .ok_or("the refund window is needed")?;
    let body = json!({
        "slug": get("slug"), "title": get("title"),
        "starts_at": time("starts_at", "the start")?, "ends_at": time("ends_at", "the end")?,
        "timezone": tz.name(), "meeting": Value::Object(meeting),
        "refund_policy": {"refundable_until_hours_before": hours},
        "tiers": tiers, "queue": Value::Object(queue),
    });
    serde_json::from_value(body).map_err(|e| format!("{e}"))
}

/// `POST /console/events/new`.
pub async fn create_form(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Form(v): Form<HashMap<String, String>>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.verify_csrf(v.get("csrf").map(String::as_str)) {
        return e.into_response();
    }
    if let Err(e) = operator.require(STAFF) {
        return e.into_response();
    }
    let result = match request(&v) {
        Ok(req) => crate::events::create_with(&s, &operator, req)
            .await
            .map_err(|e| match &e {
                ConsoleError::Orders(o) => o.public_message(),
                other => other.to_string(),
            }),
        Err(message) => Err(message),
    };
    match result {
        Ok(view) => Redirect::to(&format!(
            "/console/events/{}?done=created",
            urlencode(&view.event.slug)
        ))
        .into_response(),
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "New event",
                Some(&operator),
                &form_html(&operator, &v, Some(&message)),
            ),
        )
            .into_response(),
    }
}

/// `GET /console/events/{slug}/edit`: title, timezone, meeting, refund policy, tier
/// prices and capacities. Times move with the reschedule form (buyers are told); queue
/// settings in the control room (they reach every gateway within a second).
pub async fn edit_page(
    State(s): State<AppState>,
    operator: Result<Operator, ConsoleError>,
    Path(slug): Path<String>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match edit_values(&s, &operator, &slug).await {
        Ok((title, tiers, v)) => layout(
            &format!("Edit {title}"),
            Some(&operator),
            &edit_html(&operator, &slug, &tiers, &v, None),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

type Tiers = Vec<orders::events::Tier>;

async fn edit_values(
    s: &AppState,
    op: &Operator,
    slug: &str,
) -> Result<(String, Tiers, HashMap<String, String>), ConsoleError> {
    op.require(STAFF)?;
    let (_, e) = crate::live::visible_event(&s.db, op, slug).await?;
    let tiers = orders::events::tiers(&s.db, e.id).await?;
    let mut v: HashMap<String, String> = HashMap::new();
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
    Ok((e.title, tiers, v))
}

fn edit_html(
    op: &Operator,
    slug: &str,
    tiers: &Tiers,
    v: &HashMap<String, String>,
    error: Option<&str>,
) -> String {
    let val = |k: &str| escape(v.get(k).map(String::as_str).unwrap_or(""));
    let current = v.get("meeting_provider").map(String::as_str).unwrap_or("");
    let providers: String = ["jitsi", "zoom", "google_meet"]
        .iter()
        .map(|o| {
            format!(
                "<option value=\"{o}\"{}>{o}</option>",
                if *o == current { " selected" } else { "" }
            )
        })
        .collect();
    let rows: String = tiers
        .iter()
        .map(|t| {
            format!(
                "<tr><td>{name} <span class=\"muted\">{code}</span></td>\
                 <td><input name=\"tier_{id}_price\" value=\"{price}\" inputmode=\"decimal\" size=\"8\"> {cur}</td>\
                 <td><input name=\"tier_{id}_capacity\" value=\"{cap}\" type=\"number\" min=\"0\" size=\"7\"></td>\
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
    let error = error
        .map(|e| format!("<p class=\"banner bad\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let slug = escape(slug);
    format!(
        "<p class=\"muted\"><a href=\"/console/events\">Events</a> · <a href=\"/console/events/{slug}\">{slug}</a></p><h1>Edit the event</h1>{error}\
         <p class=\"muted\">Times change with the reschedule form on the event's page (buyers are told); \
         queue settings in the <a href=\"/console/events/{slug}/live\">control room</a>.</p>\
         <form id=\"event-edit\" class=\"inline card\" method=\"post\" action=\"/console/events/{slug}/edit\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action_key\" value=\"{key}\">\
         <div class=\"grid\"><label>Title <input name=\"title\" value=\"{title}\" required></label>\
         <label>Timezone <input name=\"timezone\" value=\"{tz}\" required></label></div>\
         <div class=\"grid\"><label>Meeting provider <select name=\"meeting_provider\">{providers}</select></label>\
         <label>Meeting link <input name=\"meeting_url\" value=\"{url}\" type=\"url\"></label>\
         <label>Refunds until (hours before the start) <input name=\"refundable_until_hours_before\" type=\"number\" min=\"0\" value=\"{hours}\" required></label></div>\
         <h2>Tiers</h2><table><thead><tr><th>Tier</th><th>Price</th><th>Capacity</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <label>Reason <input name=\"reason\" required value=\"{reason}\"></label>\
         <button type=\"submit\">Save</button></form>",
        csrf = escape(op.csrf.as_deref().unwrap_or("")),
        key = uuid::Uuid::new_v4(),
        title = val("title"),
        tz = val("timezone"),
        url = val("meeting_url"),
        hours = val("refundable_until_hours_before"),
        reason = val("reason"),
    )
}

fn edit_request(
    tiers: &Tiers,
    v: &HashMap<String, String>,
) -> Result<orders::events::EventEdit, String> {
    let get = |k: &str| v.get(k).map(|s| s.trim()).unwrap_or("");
    let mut meeting = Map::new();
    meeting.insert("provider".into(), json!(get("meeting_provider")));
    if !get("meeting_url").is_empty() {
        meeting.insert("url".into(), json!(get("meeting_url")));
    }
    let meeting: orders::events::Meeting =
        serde_json::from_value(Value::Object(meeting)).map_err(|e| e.to_string())?;
    let hours: u32 = get("refundable_until_hours_before")
        .parse()
        .map_err(|_| "the refund window is a whole number of hours".to_owned())?;
    let mut edits = Vec::new();
    for t in tiers {
        let price = cents(get(&format!("tier_{}_price", t.id)))
            .ok_or_else(|| format!("tier {}: the price is an amount like 20.00", t.code))?;
        let capacity: i32 = get(&format!("tier_{}_capacity", t.id))
            .parse()
            .map_err(|_| format!("tier {}: the capacity is a whole number", t.code))?;
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
    Form(v): Form<HashMap<String, String>>,
) -> Response {
    let operator = match signed_in(operator) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if let Err(e) = operator.verify_csrf(v.get("csrf").map(String::as_str)) {
        return e.into_response();
    }
    let (_, tiers, before) = match edit_values(&s, &operator, &slug).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let reason = v.get("reason").map(|r| r.trim()).unwrap_or("").to_owned();
    let result = async {
        if reason.is_empty() {
            return Err("a change needs a reason".to_owned());
        }
        let edit = edit_request(&tiers, &v)?;
        let event = orders::events::by_slug(&s.db, &slug)
            .await
            .map_err(|e| e.public_message())?
            .ok_or("the event is gone")?;
        let event_id = event.id;
        let title = edit.title.trim().to_owned();
        let changed = json!({"before": before, "after": v.iter().filter(|(k, _)| !matches!(k.as_str(), "csrf" | "action_key")).collect::<HashMap<_, _>>()});
        let done = crate::support::once(
            &s,
            &operator,
            v.get("action_key").map(String::as_str),
            "event.edit",
            &slug,
            Some(event_id),
            Some(&reason),
            move |conn| {
                Box::pin(async move {
                    orders::events::update(conn, event_id, &edit).await?;
                    Ok(changed)
                })
            },
        )
        .await
        .map_err(|e| match &e {
            ConsoleError::Orders(o) => o.public_message(),
            other => other.to_string(),
        })?;
        if let Err(e) = s.room.set_title(&event.slug(), &title).await {
            tracing::warn!(error = %e, "mirroring the new title to the waiting room failed");
        }
        Ok(done)
    }
    .await;
    match result {
        Ok(_) => Redirect::to(&format!("/console/events/{}?done=saved", urlencode(&slug)))
            .into_response(),
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "Edit the event",
                Some(&operator),
                &edit_html(&operator, &slug, &tiers, &v, Some(&message)),
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::cents;

    #[test]
    fn prices_are_read_as_cents() {
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
