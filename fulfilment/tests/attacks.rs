//! Attacks on fulfilment's output, against the real Postgres and the SMTP sink: an
//! event title that tries to add lines to the calendar invite.

mod support;

use std::time::Duration;

use chrono::Utc;
use icalendar::Component as _;
use mailparse::ParsedMail;
use reqwest::StatusCode;
use support::{join_link, spawn};

fn part<'a>(mail: &'a ParsedMail<'a>, mime: &str) -> Option<&'a ParsedMail<'a>> {
    if mail.ctype.mimetype == mime {
        return Some(mail);
    }
    mail.subparts.iter().find_map(|p| part(p, mime))
}

/// Every content line of an invite, unfolded; fails unless lines are CRLF-terminated
/// and at most 75 octets.
fn content_lines(ics: &str) -> Vec<String> {
    assert!(ics.ends_with("\r\n"), "{ics:?}");
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
        assert!(!line.contains(['\r', '\n']), "a bare line break: {line:?}");
    }
    ics.replace("\r\n ", "")
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The properties an invite has, in order: nothing a title can add to.
const INVITE: [&str; 19] = [
    "BEGIN",
    "VERSION",
    "PRODID",
    "CALSCALE",
    "METHOD",
    "NAME",
    "X-WR-CALNAME",
    "BEGIN",
    "UID",
    "SEQUENCE",
    "DTSTAMP",
    "DTSTART",
    "DTEND",
    "SUMMARY",
    "DESCRIPTION",
    "LOCATION",
    "URL",
    "END",
    "END",
];

/// An event whose title carries CR LF and a property (stored before titles were
/// checked, or written around the console): the invite in the confirmation and the
/// one behind the join link keep it inside SUMMARY, escaped, and gain no ATTENDEE.
/// The email's subject carries it without a new header either.
#[tokio::test]
async fn a_title_with_line_breaks_adds_no_line_to_the_invite() {
    let t = spawn().await;
    let event = t
        .event("injected", Utc::now() + chrono::Duration::days(3))
        .await;
    let title = "Gig\r\nATTENDEE:mailto:evil@x";
    sqlx::query("UPDATE events SET title = $2 WHERE id = $1")
        .bind(event)
        .bind(title)
        .execute(&t.db.pool)
        .await
        .unwrap();
    let order = t.paid_order(event, "grace@example.org", 1).await;
    fulfilment::deliveries::queue_confirmation(&t.state, order)
        .await
        .unwrap();
    t.drain(Duration::from_secs(10)).await;
    let mails = t.sink.messages();
    assert_eq!(mails.len(), 1);
    let parsed = mailparse::parse_mail(mails[0].raw.as_bytes()).unwrap();
    let head = mails[0].raw.split("\r\n\r\n").next().unwrap();
    assert!(
        !head.lines().any(|l| l.starts_with("ATTENDEE")),
        "no header from the title: {head}"
    );

    let attached = part(&parsed, "text/calendar")
        .expect("an invite")
        .get_body()
        .unwrap();
    let link = join_link(&part(&parsed, "text/plain").unwrap().get_body().unwrap());
    let served = t
        .http
        .get(format!("{link}/calendar.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let served = served.text().await.unwrap();
    for (what, ics) in [("attached", attached), ("served", served)] {
        let lines = content_lines(&ics);
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split([':', ';']).next().unwrap())
            .collect();
        assert_eq!(names, INVITE, "{what}: {ics}");
        assert!(
            lines.contains(&r"SUMMARY:Gig\nATTENDEE:mailto:evil@x".to_owned()),
            "{what}: {ics}"
        );
        let cal: icalendar::Calendar = ics.parse().expect("a standard parser accepts it");
        let e = cal.components[0].as_event().expect("one event");
        assert!(e.property_value("ATTENDEE").is_none(), "{what}");
    }
    t.cleanup().await;
}
