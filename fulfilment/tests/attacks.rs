//! Attacks on fulfilment's output, against the real Postgres and the SMTP sink: an
//! event title that tries to add lines to the calendar invite, and SMTP refusals that
//! quote the buyer's address into what is logged and kept.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icalendar::Component as _;
use reqwest::StatusCode;
use support::{join_link, part, spawn};
use tracing_subscriber::util::SubscriberInitExt as _;

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
    let event = t.event_in("injected", chrono::Duration::days(3)).await;
    let title = "Gig\r\nATTENDEE:mailto:evil@x";
    sqlx::query("UPDATE events SET title = $2 WHERE id = $1")
        .bind(event)
        .bind(title)
        .execute(&t.db.pool)
        .await
        .unwrap();
    let order = t.paid_order(event, "grace@example.org", 1).await;
    t.queue_confirmation(order).await;
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
    let served = t.http.get(format!("{link}/calendar.ics")).send().await;
    let served = served.unwrap();
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

/// What the test's log lines were written to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The SMTP server's refusals name the recipient (`550 5.1.1 <bounce@…>: Recipient
/// address rejected`, `450 4.2.0 <greylist@…>: … Greylisted`), as real servers' do.
/// Neither the log lines (at INFO, as in production) nor the `last_error` the console
/// shows carry an address; they still say what happened.
#[tokio::test]
async fn smtp_refusals_are_logged_and_kept_without_the_address() {
    let logs = Captured::default();
    let writer = logs.clone();
    // The test's runtime is one thread, so every task of the service logs here.
    let _guard = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .set_default();
    let t = spawn().await;
    let event = t.event_in("refusing", chrono::Duration::days(3)).await;
    for to in ["bounce.ada@example.org", "greylist.bob@example.org"] {
        let order = t.paid_order(event, to, 1).await;
        t.queue_confirmation(order).await;
    }
    t.send_due().await;

    let kept: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT recipient, status, last_error FROM deliveries ORDER BY recipient")
            .fetch_all(&t.db.pool)
            .await
            .unwrap();
    let [
        (bounced, bounced_status, bounced_error),
        (greylisted, greylisted_status, grey_error),
    ] = &kept[..]
    else {
        panic!("two deliveries: {kept:?}");
    };
    assert_eq!(
        (bounced.as_str(), bounced_status.as_str()),
        ("bounce.ada@example.org", "bounced")
    );
    assert_eq!(
        (greylisted.as_str(), greylisted_status.as_str()),
        ("greylist.bob@example.org", "queued")
    );
    let bounced_error = bounced_error.as_deref().expect("the refusal is kept");
    let grey_error = grey_error.as_deref().expect("the refusal is kept");
    assert!(
        bounced_error.contains("550")
            && bounced_error.contains("<recipient>: Recipient address rejected"),
        "{bounced_error}"
    );
    assert!(
        grey_error.contains("450") && grey_error.contains("Greylisted"),
        "{grey_error}"
    );

    let logged = logs.text();
    assert!(
        logged.contains("email refused permanently; bounced")
            && logged.contains("email not sent; will retry"),
        "both refusals are logged: {logged}"
    );
    for text in [bounced_error, grey_error, logged.as_str()] {
        assert!(!text.contains('@'), "an address in: {text}");
        assert!(
            !text.contains("bounce.ada") && !text.contains("greylist.bob"),
            "{text}"
        );
    }
    t.cleanup().await;
}
