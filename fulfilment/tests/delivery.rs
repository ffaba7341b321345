//! Fulfilment end to end against the real Postgres, NATS JetStream and an SMTP sink.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use mailparse::{MailHeaderMap, ParsedMail};
use reqwest::StatusCode;
use support::{TestFulfilment, join_link, spawn};

/// Runs the consumer until the returned sender is dropped.
fn consume(t: &TestFulfilment) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (state, js) = (t.state.clone(), t.js.clone());
    tokio::spawn(async move {
        fulfilment::consumer::run(state, js, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    stop
}

async fn until<F: AsyncFn() -> bool>(what: &str, timeout: Duration, probe: F) {
    let deadline = Instant::now() + timeout;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn part<'a>(mail: &'a ParsedMail<'a>, mime: &str) -> Option<&'a ParsedMail<'a>> {
    if mail.ctype.mimetype == mime {
        return Some(mail);
    }
    mail.subparts.iter().find_map(|p| part(p, mime))
}

#[tokio::test]
async fn a_paid_order_gets_one_email_with_a_working_link_and_a_valid_invite() {
    let t = spawn().await;
    let starts = Utc::now() + chrono::Duration::minutes(30);
    let event = t.event("live", starts).await;
    let order = t.paid_order(event, "grace@example.org", 2).await;
    let stop = consume(&t);
    assert_eq!(t.relay().await, 1);
    until(
        "the confirmation to be queued",
        Duration::from_secs(10),
        async || t.count("SELECT count(*) FROM deliveries").await == 1,
    )
    .await;
    t.drain(Duration::from_secs(10)).await;

    let mails = t.sink.messages();
    assert_eq!(mails.len(), 1, "exactly one email");
    assert_eq!(mails[0].to, vec!["grace@example.org".to_owned()]);
    let parsed = mailparse::parse_mail(mails[0].raw.as_bytes()).unwrap();
    assert!(
        parsed
            .headers
            .get_first_value("Subject")
            .unwrap()
            .contains("Rust & Friends")
    );
    let text = part(&parsed, "text/plain").unwrap().get_body().unwrap();
    let html = part(&parsed, "text/html").unwrap().get_body().unwrap();
    assert!(
        html.contains("Rust &amp; Friends &lt;live&gt;"),
        "html escapes what it shows"
    );
    assert_eq!(text.matches("/join/").count(), 2, "one link per ticket");
    let link = join_link(&text);
    assert!(link.starts_with(&t.base));

    // The invite: one VEVENT, the start in UTC, the link inside.
    let ics = part(&parsed, "text/calendar").unwrap().get_body().unwrap();
    let cal: icalendar::Calendar = ics.parse().expect("a standard parser accepts the invite");
    assert_eq!(cal.components.len(), 1);
    assert!(
        ics.contains(&format!("DTSTART:{}", starts.format("%Y%m%dT%H%M%SZ"))),
        "{ics}"
    );
    assert!(ics.replace("\r\n ", "").contains(&link));

    // Inside the window: straight to the meeting.
    let r = t.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://meet.example/Floodgate-")
    );

    // The stored copy shows the email as sent, without the secret part of the link.
    let stored: String = sqlx::query_scalar("SELECT body_text FROM deliveries")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    let token = link.rsplit('/').next().unwrap();
    assert!(!stored.contains(token) && stored.contains("You're in"));

    // Revoked (say, the email address was corrected): the old link stops working.
    let ticket: uuid::Uuid = sqlx::query_scalar("SELECT ticket_id FROM access_links LIMIT 1")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    let mut conn = t.db.pool.acquire().await.unwrap();
    fulfilment::links::revoke(&mut conn, ticket, "email_changed")
        .await
        .unwrap();
    drop(conn);
    let links_after: Vec<String> = text
        .lines()
        .filter(|l| l.contains("/join/"))
        .map(join_link)
        .collect();
    let mut statuses = Vec::new();
    for l in &links_after {
        statuses.push(t.http.get(l).send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::GONE), "{statuses:?}");
    let unknown = t
        .http
        .get(format!("{}/join/not-a-token", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        t.count("SELECT count(*) FROM redemptions").await >= 3,
        "every visit is recorded"
    );
    let _ = order;
    drop(stop);
    t.cleanup().await;
}

#[tokio::test]
async fn before_the_window_the_link_shows_the_start_and_does_not_redirect() {
    let t = spawn().await;
    let event = t
        .event("early", Utc::now() + chrono::Duration::hours(5))
        .await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    assert!(
        fulfilment::deliveries::queue_confirmation(&t.state, order)
            .await
            .unwrap()
    );
    t.drain(Duration::from_secs(10)).await;
    let mail = &t.sink.messages()[0];
    let parsed = mailparse::parse_mail(mail.raw.as_bytes()).unwrap();
    let link = join_link(&part(&parsed, "text/plain").unwrap().get_body().unwrap());
    let r = t.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("doors open") && page.contains("calendar.ics"),
        "{page}"
    );
    let ics = t
        .http
        .get(format!("{link}/calendar.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(ics.status(), StatusCode::OK);
    t.cleanup().await;
}

#[tokio::test]
async fn the_same_message_three_times_sends_one_email() {
    let t = spawn().await;
    let event = t
        .event("thrice", Utc::now() + chrono::Duration::days(3))
        .await;
    t.paid_order(event, "grace@example.org", 1).await;
    let payload: serde_json::Value = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    // Three publishes with distinct ids: JetStream's dedup cannot help, fulfilment must.
    let subject = t.state.config.stream.subject("orders.paid");
    let _stream = fulfilment::consumer::consumer(&t.js, &t.state)
        .await
        .unwrap();
    for _ in 0..3 {
        t.js.publish(
            subject.clone(),
            serde_json::to_vec(&payload).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let stop = consume(&t);
    until(
        "three deliveries of the message",
        Duration::from_secs(10),
        async || {
            let info =
                t.js.get_stream(&t.state.config.stream.stream)
                    .await
                    .unwrap()
                    .consumer_info("fulfilment")
                    .await
                    .unwrap()
                    .clone();
            info.num_ack_pending == 0
                && info.num_pending == 0
                && info.delivered.stream_sequence >= 3
        },
    )
    .await;
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(t.sink.messages().len(), 1);
    assert_eq!(t.count("SELECT count(*) FROM deliveries").await, 1);
    drop(stop);
    t.cleanup().await;
}

#[tokio::test]
async fn an_smtp_outage_delays_mail_and_loses_none() {
    let t = spawn().await;
    let event = t
        .event("outage", Utc::now() + chrono::Duration::days(3))
        .await;
    t.sink.set_refusing(true);
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(
            t.paid_order(event, &format!("buyer{i}@example.org"), 1)
                .await,
        );
    }
    for o in &orders {
        fulfilment::deliveries::queue_confirmation(&t.state, *o)
            .await
            .unwrap();
    }
    fulfilment::deliveries::send_due(&t.state, 100)
        .await
        .unwrap();
    assert_eq!(t.sink.messages().len(), 0);
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE status = 'queued' AND attempts = 1 AND last_error IS NOT NULL").await,
        5
    );
    // The server is back: retries deliver each confirmation once.
    t.sink.set_refusing(false);
    t.drain(Duration::from_secs(15)).await;
    let mut recipients: Vec<String> = t
        .sink
        .messages()
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        (0..5)
            .map(|i| format!("buyer{i}@example.org"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            .await,
        5
    );
    t.cleanup().await;
}

#[tokio::test]
async fn reminders_fire_once_at_their_time_and_follow_a_reschedule() {
    let t = spawn().await;
    let starts = Utc::now() + chrono::Duration::days(2);
    let event = t.event("remind", starts).await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    fulfilment::deliveries::queue_confirmation(&t.state, order)
        .await
        .unwrap();
    t.drain(Duration::from_secs(10)).await;
    let run = |now| fulfilment::reminders::run_due(&t.state, now);
    assert_eq!(run(Utc::now()).await.unwrap(), 0, "too early");
    let day_before = starts - chrono::Duration::hours(24) + chrono::Duration::seconds(1);
    assert_eq!(run(day_before).await.unwrap(), 1);
    assert_eq!(run(day_before).await.unwrap(), 0, "fires once");
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE kind = 'reminder' AND status = 'sent'")
            .await,
        1
    );

    // The event moves a week later: the old T-1h reminder retires, new ones follow the new time.
    let moved = starts + chrono::Duration::days(7);
    sqlx::query("UPDATE events SET starts_at = $1, ends_at = $2 WHERE id = $3")
        .bind(moved)
        .bind(moved + chrono::Duration::hours(2))
        .bind(event)
        .execute(&t.db.pool)
        .await
        .unwrap();
    let mut conn = t.db.pool.acquire().await.unwrap();
    fulfilment::reminders::schedule(&mut conn, event)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        run(starts - chrono::Duration::minutes(30)).await.unwrap(),
        0,
        "the old hour-before retires"
    );
    assert_eq!(
        run(moved - chrono::Duration::minutes(59)).await.unwrap(),
        2,
        "both new reminders come due"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn the_reconciler_finishes_an_order_whose_message_was_lost() {
    let t = spawn().await;
    let event = t
        .event("lostmsg", Utc::now() + chrono::Duration::days(3))
        .await;
    // Paid, but the outbox row never made it to NATS.
    let order = t.paid_order(event, "grace@example.org", 1).await;
    sqlx::query("UPDATE orders SET paid_at = now() - interval '1 hour' WHERE id = $1")
        .bind(order)
        .execute(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(
        fulfilment::deliveries::reconcile(&t.state).await.unwrap(),
        1
    );
    assert_eq!(
        fulfilment::deliveries::reconcile(&t.state).await.unwrap(),
        0
    );
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(t.sink.messages().len(), 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_corrected_address_gets_new_links_and_the_old_ones_stop() {
    let t = spawn().await;
    let event = t
        .event("moved", Utc::now() + chrono::Duration::minutes(20))
        .await;
    let order = t.paid_order(event, "grace@exmaple.org", 1).await;
    let stop = consume(&t);
    t.relay().await;
    until(
        "the first confirmation",
        Duration::from_secs(10),
        async || t.count("SELECT count(*) FROM deliveries").await == 1,
    )
    .await;
    t.drain(Duration::from_secs(10)).await;
    let first_raw = t.sink.messages()[0].raw.clone();
    let first = mailparse::parse_mail(first_raw.as_bytes()).unwrap();
    let old_link = join_link(&part(&first, "text/plain").unwrap().get_body().unwrap());

    let mut conn = t.db.pool.acquire().await.unwrap();
    let email = orders::buyers::Email::parse("grace@example.org").unwrap();
    assert!(
        orders::corrections::change_email(&mut conn, order, &email, "operator:olga")
            .await
            .unwrap()
    );
    drop(conn);
    t.relay().await;
    until(
        "the new confirmation and the notice",
        Duration::from_secs(10),
        async || t.count("SELECT count(*) FROM deliveries").await == 3,
    )
    .await;
    t.drain(Duration::from_secs(10)).await;

    let mails = t.sink.messages();
    assert_eq!(mails.len(), 3);
    let to_new: Vec<_> = mails
        .iter()
        .filter(|m| m.to == vec!["grace@example.org".to_owned()])
        .collect();
    let to_old: Vec<_> = mails
        .iter()
        .filter(|m| m.to == vec!["grace@exmaple.org".to_owned()])
        .collect();
    assert_eq!(
        (to_new.len(), to_old.len()),
        (1, 2),
        "one new confirmation; the old address got the first and the notice"
    );
    let new = mailparse::parse_mail(to_new[0].raw.as_bytes()).unwrap();
    let new_link = join_link(&part(&new, "text/plain").unwrap().get_body().unwrap());
    assert_ne!(new_link, old_link);
    assert_eq!(
        t.http.get(&old_link).send().await.unwrap().status(),
        StatusCode::GONE
    );
    assert_eq!(
        t.http.get(&new_link).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    drop(stop);
    t.cleanup().await;
}

#[tokio::test]
async fn a_transfer_moves_the_link_and_a_reschedule_reinvites_every_holder() {
    let t = spawn().await;
    let event = t
        .event("handover", Utc::now() + chrono::Duration::minutes(20))
        .await;
    let order = t.paid_order(event, "grace@example.org", 2).await;
    let stop = consume(&t);
    t.relay().await;
    until("the confirmation", Duration::from_secs(10), async || {
        t.count("SELECT count(*) FROM deliveries").await == 1
    })
    .await;
    t.drain(Duration::from_secs(10)).await;
    let raw = t.sink.messages()[0].raw.clone();
    let first = mailparse::parse_mail(raw.as_bytes()).unwrap();
    let buyer_text = part(&first, "text/plain").unwrap().get_body().unwrap();

    let ticket: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM tickets WHERE order_id = $1 ORDER BY seat_no LIMIT 1")
            .bind(order)
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    let mut conn = t.db.pool.acquire().await.unwrap();
    orders::corrections::transfer_ticket(
        &mut conn,
        ticket,
        &orders::buyers::Email::parse("ada@example.org").unwrap(),
        &orders::buyers::BuyerName::parse("Ada Lovelace").unwrap(),
        "operator:olga",
    )
    .await
    .unwrap();
    drop(conn);
    t.relay().await;
    until(
        "both transfer notices",
        Duration::from_secs(10),
        async || t.count("SELECT count(*) FROM deliveries").await == 3,
    )
    .await;
    t.drain(Duration::from_secs(10)).await;
    let ada_raw = t
        .sink
        .messages()
        .iter()
        .find(|m| m.to == vec!["ada@example.org".to_owned()])
        .unwrap()
        .raw
        .clone();
    let ada = mailparse::parse_mail(ada_raw.as_bytes()).unwrap();
    let ada_text = part(&ada, "text/plain").unwrap().get_body().unwrap();
    assert_eq!(
        ada_text.matches("/join/").count(),
        1,
        "only the transferred ticket: {ada_text}"
    );
    let ada_link = join_link(&ada_text);
    assert_eq!(
        t.http.get(&ada_link).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    // The buyer's link for that ticket is dead; their other one still works.
    let buyer_links: Vec<String> = buyer_text
        .lines()
        .filter(|l| l.contains("/join/"))
        .map(join_link)
        .collect();
    let mut statuses = Vec::new();
    for l in &buyer_links {
        statuses.push(t.http.get(l).send().await.unwrap().status());
    }
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::SEE_OTHER, StatusCode::GONE]);

    // The event moves: both holders get a new invite for the new time.
    let moved = Utc::now() + chrono::Duration::days(9);
    let mut conn = t.db.pool.acquire().await.unwrap();
    orders::corrections::reschedule(
        &mut conn,
        event,
        moved,
        moved + chrono::Duration::hours(2),
        true,
        "operator:olga",
    )
    .await
    .unwrap();
    drop(conn);
    t.relay().await;
    until(
        "the reschedule notices",
        Duration::from_secs(10),
        async || {
            t.count("SELECT count(*) FROM deliveries WHERE kind = 'reschedule_notice'")
                .await
                == 2
        },
    )
    .await;
    t.drain(Duration::from_secs(10)).await;
    let notices: Vec<_> = t
        .sink
        .messages()
        .into_iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("New date")))
        .collect();
    assert_eq!(notices.len(), 2);
    for n in &notices {
        let parsed = mailparse::parse_mail(n.raw.as_bytes()).unwrap();
        let ics = part(&parsed, "text/calendar").unwrap().get_body().unwrap();
        assert!(
            ics.contains(&format!("DTSTART:{}", moved.format("%Y%m%dT%H%M%SZ"))),
            "{ics}"
        );
        assert!(
            !ics.contains("SEQUENCE:0"),
            "the update must supersede the first invite"
        );
    }
    drop(stop);
    t.cleanup().await;
}
