//! Fulfilment end to end against the real Postgres, NATS JetStream and an SMTP sink.

mod support;

use std::time::Duration;

use chrono::Utc;
use mailparse::MailHeaderMap;
use reqwest::StatusCode;
use support::{ALL_DELIVERIES, body_of, join_link, join_links, part, spawn, until};

#[tokio::test]
async fn a_paid_order_gets_one_email_with_a_working_link_and_a_valid_invite() {
    let t = spawn().await;
    let starts = Utc::now() + chrono::Duration::minutes(30);
    let event = t.event("live", starts).await;
    sqlx::query(
        "UPDATE events SET organiser = 'Northwind', organiser_email = 'help@northwind.example'",
    )
    .execute(&t.db.pool)
    .await
    .unwrap();
    let order = t.paid_order(event, "grace@example.org", 2).await;
    let consuming = t.consume();
    let published = t
        .relay_and_send("the confirmation to be queued", ALL_DELIVERIES, 1)
        .await;
    assert_eq!(published, 1);

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

    // Where it went, who organises, and the way back to the order and its receipt
    // (issue 19.4).
    let order_url =
        contract::order_link::url(&t.base, support::ORDER_TOKEN_SECRET.as_bytes(), order);
    let unfolded = text.replace("=\r\n", "");
    for part in [
        "Sent to grace@example.org.".to_owned(),
        "Organised by Northwind; questions to help@northwind.example.".to_owned(),
        format!("Your order: {order_url}"),
        format!("Your receipt: {}", order_url.replace("?", "/receipt?")),
    ] {
        assert!(unfolded.contains(&part), "{part}: {unfolded}");
    }
    assert!(html.contains("Organised by Northwind"), "{html}");

    // The invite: one VEVENT per ticket, the start in UTC, each with its own link and
    // the UID its /join page serves too.
    let ics = part(&parsed, "text/calendar").unwrap().get_body().unwrap();
    let cal: icalendar::Calendar = ics.parse().expect("a standard parser accepts the invite");
    assert_eq!(cal.components.len(), 2, "{ics}");
    let flat = ics.replace("\r\n ", "");
    for l in join_links(&text) {
        assert!(flat.contains(&l), "{l}: {ics}");
        let served = t
            .http
            .get(format!("{l}/calendar.ics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let uid = served
            .replace("\r\n ", "")
            .lines()
            .find(|l| l.starts_with("UID:"))
            .unwrap()
            .to_owned();
        assert!(flat.contains(&uid), "{uid}: {ics}");
    }
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
    // Nor the key to the buyer's order page (hosts read the stored copy).
    let order_token = contract::order_link::token(support::ORDER_TOKEN_SECRET.as_bytes(), order);
    assert!(!stored.contains(&order_token), "{stored}");

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
    let statuses = t.visit(&join_links(&text)).await;
    assert!(statuses.contains(&StatusCode::GONE), "{statuses:?}");
    let unknown = t.visit(&[format!("{}/join/not-a-token", t.base)]).await;
    assert_eq!(unknown, [StatusCode::NOT_FOUND]);
    assert!(
        t.count("SELECT count(*) FROM redemptions").await >= 3,
        "every visit is recorded"
    );
    let _ = order;
    consuming.stop().await;
    t.cleanup().await;
}

#[tokio::test]
async fn before_the_window_the_link_shows_the_start_and_does_not_redirect() {
    let t = spawn().await;
    let event = t.event_in("early", chrono::Duration::hours(5)).await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    assert!(t.queue_confirmation(order).await);
    t.drain(Duration::from_secs(10)).await;
    let link = join_link(&body_of(&t.sink.messages()[0].raw, "text/plain"));
    let r = t.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("doors open") && page.contains("calendar.ics"),
        "{page}"
    );
    let ics = t.visit(&[format!("{link}/calendar.ics")]).await;
    assert_eq!(ics, [StatusCode::OK]);
    t.cleanup().await;
}

#[tokio::test]
async fn the_same_message_three_times_sends_one_email() {
    let t = spawn().await;
    let event = t.event_in("thrice", chrono::Duration::days(3)).await;
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
    let consuming = t.consume();
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
    assert_eq!(t.count(ALL_DELIVERIES).await, 1);
    consuming.stop().await;
    t.cleanup().await;
}

#[tokio::test]
async fn an_smtp_outage_delays_mail_and_loses_none() {
    let t = spawn().await;
    let event = t.event_in("outage", chrono::Duration::days(3)).await;
    t.sink.set_refusing(true);
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(
            t.paid_order(event, &format!("buyer{i}@example.org"), 1)
                .await,
        );
    }
    for o in &orders {
        t.queue_confirmation(*o).await;
    }
    t.send_due().await;
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
    let sent = t.count("SELECT count(*) FROM deliveries WHERE status = 'sent'");
    assert_eq!(sent.await, 5);
    t.cleanup().await;
}

#[tokio::test]
async fn reminders_fire_once_at_their_time_and_follow_a_reschedule() {
    let t = spawn().await;
    let starts = Utc::now() + chrono::Duration::days(2);
    let event = t.event("remind", starts).await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    t.queue_confirmation(order).await;
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
        1,
        "the hour-before goes out; the day-before, 23 hours late, is skipped"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM jobs WHERE kind = 'reminder' AND done_at IS NULL")
            .await,
        0,
        "the skipped reminder is done with, not retried"
    );
    t.cleanup().await;
}

/// Bought half an hour before the start (issue 19.5): the confirmation goes out, and
/// neither "starts tomorrow" nor "starts in an hour", whose moments have passed.
#[tokio::test]
async fn a_reminder_whose_moment_passed_is_never_sent() {
    let t = spawn().await;
    let event = t
        .event_in("lastminute", chrono::Duration::minutes(30))
        .await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    t.queue_confirmation(order).await;
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(
        fulfilment::reminders::run_due(&t.state, Utc::now())
            .await
            .unwrap(),
        0
    );
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE kind = 'reminder'")
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE kind = 'confirmation' AND status = 'sent'")
            .await,
        1
    );
    t.cleanup().await;
}

#[tokio::test]
async fn the_reconciler_finishes_an_order_whose_message_was_lost() {
    let t = spawn().await;
    let event = t.event_in("lostmsg", chrono::Duration::days(3)).await;
    // Paid, but the outbox row never made it to NATS.
    let order = t.paid_order(event, "grace@example.org", 1).await;
    sqlx::query("UPDATE orders SET paid_at = now() - interval '1 hour' WHERE id = $1")
        .bind(order)
        .execute(&t.db.pool)
        .await
        .unwrap();
    let reconcile = async || fulfilment::deliveries::reconcile(&t.state).await.unwrap();
    assert_eq!(reconcile().await, 1);
    assert_eq!(reconcile().await, 0);
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(t.sink.messages().len(), 1);
    t.cleanup().await;
}

/// Every message the sink got for `to`.
fn sent_to(t: &support::TestFulfilment, to: &str) -> Vec<fulfilment::sink::Received> {
    let mut mails = t.sink.messages();
    mails.retain(|m| m.to == [to]);
    mails
}

#[tokio::test]
async fn a_corrected_address_gets_new_links_and_the_old_ones_stop() {
    let t = spawn().await;
    let event = t.event_in("moved", chrono::Duration::minutes(20)).await;
    let order = t.paid_order(event, "grace@exmaple.org", 1).await;
    let consuming = t.consume();
    t.relay_and_send("the first confirmation", ALL_DELIVERIES, 1)
        .await;
    let old_link = join_link(&body_of(&t.sink.messages()[0].raw, "text/plain"));

    let mut conn = t.db.pool.acquire().await.unwrap();
    let email = orders::buyers::Email::parse("grace@example.org").unwrap();
    assert!(
        orders::corrections::change_email(&mut conn, order, &email, "operator:olga")
            .await
            .unwrap()
    );
    drop(conn);
    let what = "the new confirmation and the notice";
    t.relay_and_send(what, ALL_DELIVERIES, 3).await;

    assert_eq!(t.sink.messages().len(), 3);
    let to_new = sent_to(&t, "grace@example.org");
    let to_old = sent_to(&t, "grace@exmaple.org");
    assert_eq!(
        (to_new.len(), to_old.len()),
        (1, 2),
        "one new confirmation; the old address got the first and the notice"
    );
    let new_link = join_link(&body_of(&to_new[0].raw, "text/plain"));
    assert_ne!(new_link, old_link);
    let statuses = t.visit(&[old_link, new_link]).await;
    assert_eq!(statuses, [StatusCode::GONE, StatusCode::SEE_OTHER]);
    consuming.stop().await;
    t.cleanup().await;
}

/// The buyer gives the order's first ticket to Ada, and both are told: the ticket.
async fn give_first_ticket_to_ada(t: &support::TestFulfilment, order: uuid::Uuid) -> uuid::Uuid {
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
    t.relay_and_send("both transfer notices", ALL_DELIVERIES, 3)
        .await;
    ticket
}

#[tokio::test]
async fn a_transfer_moves_the_link_and_a_reschedule_reinvites_every_holder() {
    let t = spawn().await;
    let event = t.event_in("handover", chrono::Duration::minutes(20)).await;
    let order = t.paid_order(event, "grace@example.org", 2).await;
    let consuming = t.consume();
    t.relay_and_send("the confirmation", ALL_DELIVERIES, 1)
        .await;
    let buyer_text = body_of(&t.sink.messages()[0].raw, "text/plain");

    let ticket = give_first_ticket_to_ada(&t, order).await;
    let to_ada = sent_to(&t, "ada@example.org");
    let ada_text = body_of(&to_ada[0].raw, "text/plain");
    assert_eq!(
        ada_text.matches("/join/").count(),
        1,
        "only the transferred ticket: {ada_text}"
    );
    assert!(
        ada_text.contains("Grace Hopper gave you a ticket to"),
        "who gave it: {ada_text}"
    );
    let code: String = sqlx::query_scalar("SELECT code FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    let told = sent_to(&t, "grace@example.org");
    let grace_text = body_of(&told[told.len() - 1].raw, "text/plain");
    assert!(
        grace_text.contains(&format!("your ticket {code} for")),
        "the notice names the ticket: {grace_text}"
    );
    let ada = t.visit(&[join_link(&ada_text)]).await;
    assert_eq!(ada, [StatusCode::SEE_OTHER]);
    // The buyer's link for that ticket is dead; their other one still works.
    let mut statuses = t.visit(&join_links(&buyer_text)).await;
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
    let notices = "SELECT count(*) FROM deliveries WHERE kind = 'reschedule_notice'";
    t.relay_and_send("the reschedule notices", notices, 2).await;
    let notices: Vec<_> = t
        .sink
        .messages()
        .into_iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("New date")))
        .collect();
    assert_eq!(notices.len(), 2);
    for n in &notices {
        let ics = body_of(&n.raw, "text/calendar");
        assert!(
            ics.contains(&format!("DTSTART:{}", moved.format("%Y%m%dT%H%M%SZ"))),
            "{ics}"
        );
        assert!(
            !ics.contains("SEQUENCE:0"),
            "the update must supersede the first invite"
        );
    }
    consuming.stop().await;
    t.cleanup().await;
}

/// A full refund stops every ticket of the order, the one given away too: its holder is
/// told (by name of who gave it, naming the ticket), and the buyer's notice says the
/// links stop (issue 19.7).
#[tokio::test]
async fn a_refund_that_stops_a_given_ticket_tells_its_holder() {
    let t = spawn().await;
    let event = t.event_in("refunded", chrono::Duration::minutes(20)).await;
    let order = t.paid_order(event, "grace@example.org", 2).await;
    let consuming = t.consume();
    t.relay_and_send("the confirmation", ALL_DELIVERIES, 1)
        .await;
    give_first_ticket_to_ada(&t, order).await;
    let mut conn = t.db.pool.acquire().await.unwrap();
    let ada_link = join_link(&body_of(
        &sent_to(&t, "ada@example.org")[0].raw,
        "text/plain",
    ));

    let who = orders::corrections::Authority {
        actor: "operator:olga",
        may_override: true,
    };
    orders::corrections::refund(&mut conn, order, None, "the event is off", true, &who)
        .await
        .unwrap();
    drop(conn);
    let notices = "SELECT count(*) FROM deliveries WHERE kind = 'refund_notice'";
    t.relay_and_send("the buyer's and the holder's notices", notices, 2)
        .await;
    let to_ada = sent_to(&t, "ada@example.org");
    let ada_text = body_of(&to_ada[to_ada.len() - 1].raw, "text/plain");
    let code: String = sqlx::query_scalar(
        "SELECT code FROM tickets WHERE order_id = $1 AND holder_email = 'ada@example.org'",
    )
    .bind(order)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    for words in [
        "Your ticket for Rust & Friends <live> was cancelled, Ada Lovelace.",
        "Grace Hopper, who gave you this ticket, has been refunded",
        "the link we sent you no longer works",
    ] {
        assert!(ada_text.contains(words), "{words:?} in {ada_text}");
    }
    assert!(ada_text.contains(&format!("Ticket {code}")), "{ada_text}");
    assert!(!ada_text.contains("We've refunded you"), "{ada_text}");
    let to_grace = sent_to(&t, "grace@example.org");
    let grace_text = body_of(&to_grace[to_grace.len() - 1].raw, "text/plain");
    assert!(
        grace_text.contains("The access link we sent you no longer works"),
        "{grace_text}"
    );
    assert!(grace_text.contains("Anyone you gave a ticket to has been told."));
    assert_eq!(t.visit(&[ada_link]).await, [StatusCode::GONE]);
    consuming.stop().await;
    t.cleanup().await;
}
