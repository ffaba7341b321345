//! A mailbox that does not exist: the server refuses the confirmation for good (5xx),
//! the delivery is recorded as bounced after one attempt and never retried, while a
//! temporary refusal (4xx) is retried — against the real Postgres and the SMTP sink,
//! which refuses `bounce…@` recipients with 550.

mod support;

use std::time::Duration;

use support::{ALL_DELIVERIES, spawn, until};

#[tokio::test]
async fn a_refused_mailbox_bounces_once_and_is_not_retried() {
    let t = spawn().await;
    let event = t.event_in("bouncy", chrono::Duration::days(3)).await;
    let wrong = t.paid_order(event, "bounce@example.org", 1).await;
    let right = t.paid_order(event, "ada@example.org", 1).await;
    for o in [wrong, right] {
        t.queue_confirmation(o).await;
    }
    t.drain(Duration::from_secs(10)).await;

    let to: Vec<String> = t
        .sink
        .messages()
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    assert_eq!(to, vec!["ada@example.org".to_owned()]);
    let bounced = t.count(
        "SELECT count(*) FROM deliveries WHERE status = 'bounced' AND attempts = 1 \
         AND recipient = 'bounce@example.org' AND last_error LIKE '%550%'",
    );
    assert_eq!(bounced.await, 1);
    // Nothing is due again: a later sender pass does not try the bounced one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.send_due().await;
    let attempts =
        t.count("SELECT attempts::int8 FROM deliveries WHERE recipient = 'bounce@example.org'");
    assert_eq!(attempts.await, 1);
    assert_eq!(t.sink.messages().len(), 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_not_bounced() {
    let t = spawn().await;
    let event = t.event_in("shaky", chrono::Duration::days(3)).await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    t.queue_confirmation(order).await;
    t.sink.set_refusing(true);
    t.send_due().await;
    let by_status = async |status: &str| {
        let sql = format!("SELECT count(*) FROM deliveries WHERE status = '{status}'");
        t.count(&sql).await
    };
    let retrying = "SELECT count(*) FROM deliveries WHERE status = 'queued' AND attempts = 1";
    assert_eq!(t.count(retrying).await, 1);
    t.sink.set_refusing(false);
    t.drain(Duration::from_secs(15)).await;
    assert_eq!(by_status("sent").await, 1);
    assert_eq!(by_status("bounced").await, 0);
    t.cleanup().await;
}

/// Through JetStream: the paid-order message for a mailbox that bounces is acknowledged
/// once the delivery is queued (the bounce is the sender's business, not the
/// consumer's), so it is neither redelivered nor sent again.
#[tokio::test]
async fn the_consumer_acks_an_order_whose_mail_bounces() {
    let t = spawn().await;
    let event = t.event_in("bouncy-stream", chrono::Duration::days(3)).await;
    t.paid_order(event, "bounce+typo@example.org", 2).await;
    let consuming = t.consume();
    let published = t.relay_and_send("nothing queued", ALL_DELIVERIES, 1).await;
    assert_eq!(published, 1);
    let bounced = t.count(
        "SELECT count(*) FROM deliveries WHERE status = 'bounced' AND attempts = 1 \
         AND kind = 'confirmation' AND last_error LIKE '%550%'",
    );
    assert_eq!(bounced.await, 1);
    // The message is acknowledged: nothing pending, nothing awaiting an ack, and a
    // wait past the consumer's Nak delay brings no redelivery and no second attempt.
    let mut info = fulfilment::consumer::consumer(&t.js, &t.state)
        .await
        .unwrap();
    until(
        "the message to be acked",
        Duration::from_secs(5),
        async || {
            let i = info.info().await.unwrap().clone();
            let acked = i.num_ack_pending == 0 && i.num_pending == 0;
            if acked {
                assert_eq!(i.delivered.consumer_sequence, 1, "delivered once");
            }
            acked
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.drain(Duration::from_secs(1)).await;
    let attempts = t.count("SELECT sum(attempts)::int8 FROM deliveries");
    assert_eq!(attempts.await, 1);
    assert_eq!(t.count(ALL_DELIVERIES).await, 1);
    assert!(t.sink.messages().is_empty());
    assert_eq!(t.count("SELECT count(*) FROM parked_messages").await, 0);
    consuming.stop().await;
    t.cleanup().await;
}
