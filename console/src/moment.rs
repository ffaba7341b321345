//! How the console shows and reads a moment in time. Every time on every page goes
//! through [`at`] (the `time` macro of `templates/macros.html`; [`text`] where markup
//! cannot go), so a page never mixes zones:
//! the event's own timezone with its abbreviation ("Tue 1 Dec 2026, 19:30 CET"), the
//! UTC instant in the `title` (hover) and the `datetime` attribute.
//!
//! Forms read times as wall-clock "YYYY-MM-DD HH:MM" in a named timezone ([`parse`]).
//! The browser's own date pickers show and type dates in the browser's locale (a
//! US-English Chromium shows 12/01/2026, 01:00 PM), so the console uses plain text
//! inputs in one unambiguous, 24-hour format, with the timezone named beside them.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::ConsoleError;

/// How finely a moment is shown: minutes for schedules, seconds for what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Minute,
    Second,
}

/// An event's timezone by its stored name (UTC if the name is unknown, which the
/// schema's writers never allow).
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::UTC)
}

/// "Tue 1 Dec 2026, 19:30 CET" (with seconds: "…, 19:30:05 CET").
pub fn text(t: DateTime<Utc>, tz: Tz, p: Precision) -> String {
    let f = match p {
        Precision::Minute => "%a %-d %b %Y, %H:%M %Z",
        Precision::Second => "%a %-d %b %Y, %H:%M:%S %Z",
    };
    t.with_timezone(&tz).format(f).to_string()
}

/// A moment as a page shows it (the `time` macro of `templates/macros.html` makes it a
/// `<time>` element): [`text`] in the event's zone, the UTC instant for `datetime` and
/// for the `title` an operator sees on hover.
#[derive(Clone, Debug, Serialize)]
pub struct Moment {
    pub datetime: String,
    pub utc: String,
    pub text: String,
}

/// `t` as a page shows it.
pub fn at(t: DateTime<Utc>, tz: Tz, p: Precision) -> Moment {
    let utc = match p {
        Precision::Minute => t.format("%Y-%m-%d %H:%M UTC"),
        Precision::Second => t.format("%Y-%m-%d %H:%M:%S UTC"),
    };
    Moment {
        datetime: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        utc: utc.to_string(),
        text: text(t, tz, p),
    }
}

/// The format forms use, shown next to every time field.
pub const INPUT_FORMAT: &str = "YYYY-MM-DD HH:MM";

/// A moment as a form field's value: wall-clock time in `tz`, [`INPUT_FORMAT`].
pub fn input_value(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// "CET, UTC+01:00" now — what a form says beside its time fields.
pub fn zone_hint(tz: Tz) -> String {
    Utc::now()
        .with_timezone(&tz)
        .format("%Z, UTC%:z")
        .to_string()
}

/// A time typed into a form: "YYYY-MM-DD HH:MM" (or with a `T`, as `datetime-local`
/// sends it, seconds optional) read as wall-clock time in `tz`; or RFC 3339 with its
/// own offset.
pub fn parse(value: &str, tz: Tz, what: &str) -> Result<DateTime<Utc>, ConsoleError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConsoleError::Invalid(format!(
            "{} is missing; type it as {INPUT_FORMAT}.",
            capitalised(what)
        )));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .ok_or_else(|| {
            ConsoleError::Invalid(format!(
                "{} \"{value}\" is not a date and time as {INPUT_FORMAT} (24-hour), e.g. 2026-12-01 19:30.",
                capitalised(what)
            ))
        })?;
    // A wall-clock time skipped or repeated by a DST change has no single meaning.
    tz.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            ConsoleError::Invalid(format!(
                "{} falls in a daylight-saving change in {tz}; pick another time.",
                capitalised(what)
            ))
        })
}

/// `what` at the start of a sentence.
fn capitalised(what: &str) -> String {
    let mut c = what.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The timezones a form offers: the IANA zones of places (no legacy aliases such as
/// `US/Eastern` or `Etc/GMT+1`), and UTC.
pub fn choices() -> impl Iterator<Item = &'static str> {
    const AREAS: [&str; 10] = [
        "Africa/",
        "America/",
        "Antarctica/",
        "Arctic/",
        "Asia/",
        "Atlantic/",
        "Australia/",
        "Europe/",
        "Indian/",
        "Pacific/",
    ];
    std::iter::once("UTC").chain(
        chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .filter(|n| AREAS.iter().any(|a| n.starts_with(a))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_moment_is_shown_in_the_zone_with_its_abbreviation_and_utc_on_hover() {
        let t = at("2026-12-01T18:30:05Z");
        let ams = zone("Europe/Amsterdam");
        assert_eq!(text(t, ams, Precision::Minute), "Tue 1 Dec 2026, 19:30 CET");
        assert_eq!(
            text(t, ams, Precision::Second),
            "Tue 1 Dec 2026, 19:30:05 CET"
        );
        assert_eq!(
            text(at("2026-07-01T18:30:00Z"), ams, Precision::Minute),
            "Wed 1 Jul 2026, 20:30 CEST"
        );
        let m = super::at(t, ams, Precision::Minute);
        assert_eq!(
            (m.datetime.as_str(), m.utc.as_str(), m.text.as_str()),
            (
                "2026-12-01T18:30:05Z",
                "2026-12-01 18:30 UTC",
                "Tue 1 Dec 2026, 19:30 CET"
            )
        );
        assert_eq!(zone("Mars/Olympus"), chrono_tz::UTC);
    }

    #[test]
    fn form_times_are_read_in_the_named_zone_whatever_the_separator() {
        let ny = zone("America/New_York");
        for typed in [
            "2026-12-01 19:30",
            "2026-12-01T19:30",
            "2026-12-01 19:30:00",
            " 2026-12-01T19:30:00 ",
        ] {
            assert_eq!(
                parse(typed, ny, "the start").unwrap(),
                at("2026-12-02T00:30:00Z"),
                "{typed}"
            );
        }
        assert_eq!(
            parse("2026-12-01T19:30:00+01:00", ny, "the start").unwrap(),
            at("2026-12-01T18:30:00Z")
        );
        assert_eq!(
            input_value(at("2026-12-02T00:30:00Z"), ny),
            "2026-12-01 19:30"
        );
        for bad in ["", "12/01/2026 7:30 PM", "2026-13-01 10:00", "tomorrow"] {
            let e = parse(bad, ny, "the start").unwrap_err().to_string();
            assert!(e.starts_with("The start"), "a sentence: {bad}: {e}");
        }
        // 02:30 on the last Sunday of March does not exist in Amsterdam.
        let gap = parse("2026-03-29 02:30", zone("Europe/Amsterdam"), "the start");
        assert!(gap.unwrap_err().to_string().contains("daylight-saving"));
    }

    #[test]
    fn the_zone_choices_are_places() {
        let all: Vec<_> = choices().collect();
        assert!(all.contains(&"Europe/Amsterdam") && all.contains(&"UTC"));
        assert!(
            !all.iter()
                .any(|z| z.starts_with("US/") || z.starts_with("Etc/"))
        );
    }
}
