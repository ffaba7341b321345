//! The outbox relay against the real NATS JetStream: what was committed is published,
//! once, even when the relay dies between publishing and marking the row.

use std::time::Duration;

use async_nats::jetstream;
use contract::{Message, ResendRequested};
use futures::StreamExt;
use orders::outbox::{self, Relay, StreamConfig};
use platform::testing::TestDb;
use uuid::Uuid;

/// A small message of the contract, told apart by its number.
fn resend(n: u128) -> ResendRequested {
    ResendRequested {
        order_id: Uuid::from_u128(n),
        request_id: Uuid::from_u128(n),
    }
}

fn stream_config() -> StreamConfig {
    let id = Uuid::new_v4().simple().to_string();
    StreamConfig {
        stream: format!("T{}", &id[..16]).to_uppercase(),
        prefix: format!("t{}", &id[..16]),
        replicas: 1,
    }
}

async fn messages(js: &jetstream::Context, config: &StreamConfig) -> Vec<serde_json::Value> {
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    let mut batch = consumer
        .fetch()
        .max_messages(count as usize + 10)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        out.push(serde_json::from_slice(&m.unwrap().payload).unwrap());
    }
    out
}

#[tokio::test]
async fn committed_messages_are_published_exactly_once_across_a_crash() {
    let db = TestDb::new().await;
    let config = stream_config();
    let mut conn = db.pool.acquire().await.unwrap();
    let (one, two) = (resend(1), resend(2));
    let first = outbox::enqueue(&mut conn, &one).await.unwrap();
    outbox::enqueue(&mut conn, &two).await.unwrap();
    drop(conn);

    let relay = Relay::connect(db.pool.clone(), "nats://127.0.0.1:4222", config.clone())
        .await
        .unwrap();
    // A relay that died after publishing the first row but before marking it.
    outbox::publish(
        relay.jetstream(),
        &config,
        first,
        ResendRequested::SUBJECT,
        &serde_json::to_value(&one).unwrap(),
    )
    .await
    .unwrap();
    // Its successor starts over from the unmarked rows.
    assert_eq!(relay.relay_once(100).await.unwrap(), 2);
    assert_eq!(
        relay.relay_once(100).await.unwrap(),
        0,
        "nothing left to send"
    );

    let got = messages(relay.jetstream(), &config).await;
    assert_eq!(
        got,
        vec![
            serde_json::to_value(&one).unwrap(),
            serde_json::to_value(&two).unwrap()
        ]
    );
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 0);
    relay
        .jetstream()
        .delete_stream(&config.stream)
        .await
        .unwrap();
}

/// Two relays running at once (a second process for availability) publish the outbox
/// in its order: one publishes while the other stands by. Taking disjoint batches side
/// by side put later messages ahead of earlier ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_publish_the_outbox_in_its_order() {
    let db = TestDb::new().await;
    let config = stream_config();
    let mut conn = db.pool.acquire().await.unwrap();
    let sent: Vec<ResendRequested> = (1..=600).map(resend).collect();
    for m in &sent {
        outbox::enqueue(&mut conn, m).await.unwrap();
    }
    drop(conn);
    let connect = || Relay::connect(db.pool.clone(), "nats://127.0.0.1:4222", config.clone());
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let drain = |relay: Relay| async move {
        let mut idle = 0;
        while idle < 20 {
            match relay.relay_once(25).await.unwrap() {
                0 => {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => idle = 0,
            }
        }
        relay
    };
    let (a, _b) = tokio::join!(tokio::spawn(drain(a)), tokio::spawn(drain(b)));
    let a = a.unwrap();
    let got = messages(a.jetstream(), &config).await;
    let want: Vec<serde_json::Value> = sent
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "every message once");
    assert!(got == want, "published out of the outbox's order");
    a.jetstream().delete_stream(&config.stream).await.unwrap();
}

/// While another relay holds the publishing lock (mid-batch), a second one sends
/// nothing; once it lets go, the second takes over from the first unmarked row.
#[tokio::test]
async fn a_standby_relay_sends_nothing_while_another_publishes() {
    let db = TestDb::new().await;
    let config = stream_config();
    let mut conn = db.pool.acquire().await.unwrap();
    outbox::enqueue(&mut conn, &resend(1)).await.unwrap();
    drop(conn);
    let relay = Relay::connect(db.pool.clone(), "nats://127.0.0.1:4222", config.clone())
        .await
        .unwrap();
    let mut other = db.pool.begin().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(outbox::RELAY_LOCK)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(held);
    assert_eq!(relay.relay_once(100).await.unwrap(), 0, "the standby waits");
    other.rollback().await.unwrap();
    assert_eq!(
        relay.relay_once(100).await.unwrap(),
        1,
        "and then takes over"
    );
    assert_eq!(messages(relay.jetstream(), &config).await.len(), 1);
    relay
        .jetstream()
        .delete_stream(&config.stream)
        .await
        .unwrap();
}
