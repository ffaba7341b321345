//! The calendar invite attached to confirmations: one VEVENT, times in UTC, the access
//! link as URL and in the description, a stable UID per ticket so a re-sent invite
//! (new time, new link) updates the same calendar entry instead of adding one.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike};

pub struct Invite<'a> {
    pub uid: String,
    /// Bumped when the event moves or the link changes.
    pub sequence: u32,
    pub title: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub link: &'a str,
}

pub fn ics(i: &Invite<'_>) -> String {
    let mut calendar = Calendar::new();
    calendar.name(i.title);
    calendar.append_property(("METHOD", "PUBLISH"));
    calendar.push(
        Event::new()
            .uid(&i.uid)
            .sequence(i.sequence)
            .summary(i.title)
            .description(&format!(
                "Join online: {}\nThis link is personal; do not share it.",
                i.link
            ))
            .location(i.link)
            .url(i.link)
            .starts(i.starts_at)
            .ends(i.ends_at)
            .timestamp(Utc::now())
            .done(),
    );
    calendar.done().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_in_utc_with_the_link() {
        let starts: DateTime<Utc> = "2030-05-01T18:00:00Z".parse().unwrap();
        let link = "https://tickets.example/join/abc";
        let text = ics(&Invite {
            uid: "ticket-1@floodgate".into(),
            sequence: 0,
            title: "Rust, live",
            starts_at: starts,
            ends_at: starts + chrono::Duration::hours(2),
            link,
        });
        assert_eq!(text.matches("BEGIN:VEVENT").count(), 1);
        assert!(text.contains("DTSTART:20300501T180000Z"), "{text}");
        assert!(text.contains("URL:https://tickets.example/join/abc"));
        let parsed: icalendar::Calendar = text.parse().expect("a standard parser accepts it");
        assert_eq!(parsed.components.len(), 1);
    }
}
