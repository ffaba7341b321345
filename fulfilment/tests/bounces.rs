//! A mailbox that does not exist: the server refuses the confirmation for good (5xx),
//! the delivery is recorded as bounced after one attempt and never retried, while a
//! temporary refusal (4xx) is retried — against the real Postgres and the SMTP sink,
//! which refuses `bounce…@` recipients with 550.

mod support;

use std::time::Duration;

use chrono::Utc;
use support::spawn;

#[tokio::test]
async fn a_refused_mailbox_bounces_once_and_is_not_retried() {
    let t = spawn().await;
    let event = t
        .event("bouncy", Utc::now() + chrono::Duration::days(3))
        .await;
    let wrong = t.paid_order(event, "bounce@example.org", 1).await;
    let right = t.paid_order(event, "ada@example.org", 1).await;
    for o in [wrong, right] {
        fulfilment::deliveries::queue_confirmation(&t.state, o)
            .await
            .unwrap();
    }
    t.drain(Duration::from_secs(10)).await;

    let to: Vec<String> = t
        .sink
        .messages()
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    assert_eq!(to, vec!["ada@example.org".to_owned()]);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM deliveries WHERE status = 'bounced' AND attempts = 1 \
             AND recipient = 'bounce@example.org' AND last_error LIKE '%550%'"
        )
        .await,
        1
    );
    // Nothing is due again: a later sender pass does not try the bounced one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fulfilment::deliveries::send_due(&t.state, 100)
        .await
        .unwrap();
    assert_eq!(
        t.count("SELECT attempts::int8 FROM deliveries WHERE recipient = 'bounce@example.org'")
            .await,
        1
    );
    assert_eq!(t.sink.messages().len(), 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_not_bounced() {
    let t = spawn().await;
    let event = t
        .event("shaky", Utc::now() + chrono::Duration::days(3))
        .await;
    let order = t.paid_order(event, "grace@example.org", 1).await;
    fulfilment::deliveries::queue_confirmation(&t.state, order)
        .await
        .unwrap();
    t.sink.set_refusing(true);
    fulfilment::deliveries::send_due(&t.state, 100)
        .await
        .unwrap();
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE status = 'queued' AND attempts = 1")
            .await,
        1
    );
    t.sink.set_refusing(false);
    t.drain(Duration::from_secs(15)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM deliveries WHERE status = 'bounced'")
            .await,
        0
    );
    t.cleanup().await;
}

/// Through JetStream: the paid-order message for a mailbox that bounces is acknowledged
/// once the delivery is queued (the bounce is the sender's business, not the
/// consumer's), so it is neither redelivered nor sent again.
#[tokio::test]
async fn the_consumer_acks_an_order_whose_mail_bounces() {
    let t = spawn().await;
    let event = t
        .event("bouncy-stream", Utc::now() + chrono::Duration::days(3))
        .await;
    t.paid_order(event, "bounce+typo@example.org", 2).await;
    assert_eq!(t.relay().await, 1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = {
        let (state, js) = (t.state.clone(), t.js.clone());
        tokio::spawn(async move {
            fulfilment::consumer::run(state, js, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.count("SELECT count(*) FROM deliveries").await == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.drain(Duration::from_secs(10)).await;
    assert_eq!(
        t.count(
            "SELECT count(*) FROM deliveries WHERE status = 'bounced' AND attempts = 1 \
             AND kind = 'confirmation' AND last_error LIKE '%550%'"
        )
        .await,
        1
    );
    // The message is acknowledged: nothing pending, nothing awaiting an ack, and a
    // wait past the consumer's Nak delay brings no redelivery and no second attempt.
    let mut info = fulfilment::consumer::consumer(&t.js, &t.state)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let i = info.info().await.unwrap();
        if i.num_ack_pending == 0 && i.num_pending == 0 {
            assert_eq!(i.delivered.consumer_sequence, 1, "delivered once");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not acked: {i:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.drain(Duration::from_secs(1)).await;
    assert_eq!(
        t.count("SELECT sum(attempts)::int8 FROM deliveries").await,
        1
    );
    assert_eq!(t.count("SELECT count(*) FROM deliveries").await, 1);
    assert!(t.sink.messages().is_empty());
    assert_eq!(t.count("SELECT count(*) FROM parked_messages").await, 0);
    drop(stop);
    consumer.await.unwrap().unwrap();
    t.cleanup().await;
}
