//! Calendar entries for tickets: one VEVENT per ticket, times in UTC, its link as URL
//! and in the description, a stable UID per ticket so a re-sent invite (new time, new
//! link) — or the same entry from another place: the confirmation email (fulfilment),
//! the ticket's `/join` page (fulfilment), the order page (orders) — updates the same
//! calendar entry instead of adding one.
//!
//! Written out here, line by line, rather than through the `icalendar` crate: an
//! event's title is an operator's text, and `icalendar` 0.16 escapes a line feed but
//! not a carriage return in TEXT values, and does not escape the calendar's name
//! (`X-WR-CALNAME`) at all — a title `Gig\r\nATTENDEE:…` became a line of its own. Here
//! every TEXT value is escaped as RFC 5545 §3.3.11 says (backslash, semicolon, comma;
//! any line break becomes `\n`), other control characters are dropped, and lines are
//! folded at 75 octets (§3.1) without splitting a character.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

pub struct Invite<'a> {
    pub uid: String,
    /// Bumped when the event moves or the link changes.
    pub sequence: u32,
    pub title: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub link: &'a str,
    /// The link opens the event (an access link, not to be shared); otherwise it is
    /// the buyer's order page, and the access link comes by email.
    pub personal: bool,
}

pub fn ics(i: &Invite<'_>) -> String {
    calendar(std::slice::from_ref(i))
}

/// One calendar with an event per invite (a multi-ticket order: each ticket its own
/// entry, UID and link, so adding the calendar served at a ticket's `/join` page as well
/// updates that entry instead of duplicating it). Named after the first invite's title.
pub fn calendar(invites: &[Invite<'_>]) -> String {
    let mut out = String::with_capacity(1024 * invites.len().max(1));
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let name = invites.first().map(|i| text(i.title)).unwrap_or_default();
    let mut lines: Vec<(&str, String)> = vec![
        ("BEGIN", "VCALENDAR".to_owned()),
        ("VERSION", "2.0".to_owned()),
        ("PRODID", "-//Floodgate//Tickets//EN".to_owned()),
        ("CALSCALE", "GREGORIAN".to_owned()),
        ("METHOD", "PUBLISH".to_owned()),
        ("NAME", name.clone()),
        ("X-WR-CALNAME", name),
    ];
    let now = stamp(Utc::now());
    for i in invites {
        let description = if i.personal {
            format!(
                "Join online: {}\nThis link is personal; do not share it.",
                i.link
            )
        } else {
            format!("Your order: {}\nThe link to join comes by email.", i.link)
        };
        lines.extend([
            ("BEGIN", "VEVENT".to_owned()),
            ("UID", text(&i.uid)),
            ("SEQUENCE", i.sequence.to_string()),
            ("DTSTAMP", now.clone()),
            ("DTSTART", stamp(i.starts_at)),
            ("DTEND", stamp(i.ends_at)),
            ("SUMMARY", text(i.title)),
            ("DESCRIPTION", text(&description)),
            ("LOCATION", text(i.link)),
            ("URL", uri(i.link)),
            ("END", "VEVENT".to_owned()),
        ]);
    }
    lines.push(("END", "VCALENDAR".to_owned()));
    for (name, value) in lines {
        fold(&mut out, &format!("{name}:{value}"));
    }
    out
}

/// The UID of a ticket's calendar entry, the same in every email and at its `/join`
/// page.
pub fn uid(ticket_id: uuid::Uuid) -> String {
    format!("{ticket_id}@floodgate")
}

/// The entry's SEQUENCE: the second the event was last changed, so a later version
/// (a new time, a new title) always counts as newer than one added before it, whichever
/// copy — the email's or the one served at `/join` — the buyer added.
pub fn sequence(event_updated_at: DateTime<Utc>) -> u32 {
    u32::try_from(event_updated_at.timestamp().max(0)).unwrap_or(u32::MAX)
}

/// A TEXT value (RFC 5545 §3.3.11): `\`, `;` and `,` escaped, every line break (CRLF,
/// CR, LF, or Unicode's line and paragraph separators) as `\n`, a tab as a space, other control characters dropped — nothing
/// in a value can end its content line.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' | '\u{2028}' | '\u{2029}' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI value: not TEXT-escaped (a comma is part of a URI), but no control character
/// may end its line either.
fn uri(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

/// Writes one content line, folded (RFC 5545 §3.1): at most 75 octets per line, each
/// continuation starting with a space, never splitting a UTF-8 character.
fn fold(out: &mut String, line: &str) {
    const LIMIT: usize = 75;
    let mut rest = line;
    // The first line has all 75 octets; a continuation's leading space takes one.
    let mut room = LIMIT;
    while rest.len() > room {
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = LIMIT - 1;
    }
    let _ = write!(out, "{rest}\r\n");
}

#[cfg(test)]
mod tests {
    use icalendar::Component as _;

    use super::*;

    fn invite(title: &str) -> String {
        let starts: DateTime<Utc> = "2030-05-01T18:00:00Z".parse().unwrap();
        ics(&Invite {
            uid: "ticket-1@floodgate".into(),
            sequence: 0,
            title,
            starts_at: starts,
            ends_at: starts + chrono::Duration::hours(2),
            link: "https://tickets.example/join/abc",
            personal: true,
        })
    }

    #[test]
    fn one_event_in_utc_with_the_link() {
        let text = invite("Rust, live");
        assert_eq!(text.matches("BEGIN:VEVENT").count(), 1);
        assert!(text.contains("DTSTART:20300501T180000Z"), "{text}");
        assert!(text.contains("URL:https://tickets.example/join/abc"));
        assert!(text.contains("SUMMARY:Rust\\, live"), "{text}");
        let parsed: icalendar::Calendar = text.parse().expect("a standard parser accepts it");
        assert_eq!(parsed.components.len(), 1);
    }

    #[test]
    fn a_title_cannot_add_lines() {
        for title in [
            "Gig\r\nATTENDEE:mailto:evil@x",
            "Gig\nATTENDEE:mailto:evil@x",
            "Gig\rATTENDEE:mailto:evil@x",
            "Gig\u{0b}\u{0c}\u{85}\u{2028}\r\n ATTENDEE:mailto:evil@x",
        ] {
            let text = invite(title);
            let unfolded = text.replace("\r\n ", "");
            assert!(
                !unfolded.split("\r\n").any(|l| l.starts_with("ATTENDEE")),
                "{title:?}: {text}"
            );
            assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{text}");
            assert!(unfolded.contains("SUMMARY:Gig\\n"), "{unfolded}");
            let parsed: icalendar::Calendar = text.parse().expect("parses");
            let event = parsed.components[0].as_event().expect("an event");
            assert!(event.property_value("ATTENDEE").is_none());
        }
    }

    #[test]
    fn text_is_escaped_as_rfc_5545_says() {
        assert_eq!(text(r"a\b;c,d"), r"a\\b\;c\,d");
        assert_eq!(text("one\r\ntwo\nthree\rfour"), r"one\ntwo\nthree\nfour");
        assert_eq!(text("tab\there\u{0}\u{7f}\u{1b}[31m"), "tab here[31m");
        assert_eq!(
            uri("https://x.example/a,b\r\nX:y"),
            "https://x.example/a,bX:y"
        );
    }

    #[test]
    fn long_lines_fold_at_75_octets_between_characters() {
        let title = "Zürich ".repeat(30) + &"🎸".repeat(40);
        let text = invite(&title);
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{} octets: {line}", line.len());
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(
            unfolded.contains(&format!("SUMMARY:{title}")),
            "unfolds to the title"
        );
    }
}
