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
use axum::extract::State;
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
