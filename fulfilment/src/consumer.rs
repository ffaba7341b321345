//! The JetStream consumer: a durable pull consumer on the order subjects.
//!
//! A message is acknowledged only after what it asks for is recorded (the delivery row
//! committed); a transient failure is `Nak`ed with a delay so JetStream redelivers it; a
//! message that cannot be understood is parked in `parked_messages` (the console shows
//! them) and terminated, so it does not block the ones behind it.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use contract::stream::NatsError;
use contract::{DecodeError, Incoming};
use futures::StreamExt;

use crate::Error;
use crate::app::AppState;
use crate::deliveries;

pub async fn consumer(
    js: &jetstream::Context,
    s: &AppState,
) -> Result<jetstream::consumer::Consumer<pull::Config>, Error> {
    let c = &s.config;
    let stream = contract::stream::ensure(js, &c.stream).await?;
    let config = pull::Config {
        durable_name: Some(c.consumer.clone()),
        filter_subject: c.stream.all_subjects(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        ..Default::default()
    };
    // A failure here (a server away, a leader being elected) is returned and the
    // caller tries again a second later: deleting the durable on a transient error
    // would lose its acknowledged position and, on a cluster, race the other
    // fulfilment replica's consumer.
    let consumer = stream
        .get_or_create_consumer(&c.consumer, config.clone())
        .await
        .map_err(NatsError::from)?;
    let found = &consumer.cached_info().config;
    if found.filter_subject == config.filter_subject && found.ack_policy == config.ack_policy {
        return Ok(consumer);
    }
    // A consumer left by an older version with another filter or ack policy: replace
    // it. The new one starts from the stream's beginning, which is safe because every
    // handler is idempotent (deliveries are unique per order and key).
    tracing::warn!(
        found = %found.filter_subject,
        "the durable consumer's configuration differs; recreating it"
    );
    stream
        .delete_consumer(&c.consumer)
        .await
        .map_err(NatsError::from)?;
    Ok(stream
        .create_consumer(config)
        .await
        .map_err(NatsError::from)?)
}

/// What to do with one message.
pub enum Verdict {
    Done,
    Retry(Error),
    Poison(String),
}

pub async fn handle(s: &AppState, subject: &str, payload: &[u8]) -> Verdict {
    let relative = s.config.stream.relative(subject).unwrap_or(subject);
    let message = match Incoming::decode(relative, payload) {
        Ok(m) => m,
        // Subjects fulfilment has nothing to do with (a newer producer's): not poison.
        Err(DecodeError::UnknownSubject(_)) => return Verdict::Done,
        Err(e) => return Verdict::Poison(e.to_string()),
    };
    let result = match &message {
        Incoming::OrderPaid(m) => deliveries::queue_confirmation(s, m.order_id)
            .await
            .map(|_| ()),
        Incoming::OrderRefunded(m) => deliveries::queue_refund_notice(s, m).await.map(|_| ()),
        Incoming::EmailChanged(m) => deliveries::email_changed(s, m).await,
        Incoming::ResendRequested(m) => deliveries::resend(s, m).await.map(|_| ()),
        Incoming::TicketTransferred(m) => deliveries::transferred(s, m).await,
        Incoming::EventRescheduled(m) => deliveries::rescheduled(s, m).await.map(|_| ()),
    };
    match result {
        Ok(()) => Verdict::Done,
        Err(Error::NotFound(what)) => Verdict::Poison(format!("{what} not found")),
        Err(e) => Verdict::Retry(e),
    }
}

async fn park(s: &AppState, subject: &str, payload: &[u8], error: &str) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO parked_messages (subject, payload, error) VALUES ($1, $2, $3)",
        subject,
        String::from_utf8_lossy(payload).into_owned(),
        error
    )
    .execute(&s.db)
    .await?;
    Ok(())
}

/// Messages handled at once. Handling one is a few queries in one transaction, so one
/// at a time caps delivery at the database's round trips (the confirmations bench found
/// the consumer the slowest stage of the path, well behind the sender). Each lane takes
/// its messages in stream order, and every message about one order (or, without an
/// order, one event) goes to the same lane, so those keep their order.
pub const LANES: usize = 16;

#[derive(serde::Deserialize)]
struct Key {
    order_id: Option<uuid::Uuid>,
    event_id: Option<uuid::Uuid>,
}

/// The lane for a message: by its order, else its event; one that names neither (or
/// cannot be read, and will be parked) goes to the first.
fn lane(payload: &[u8]) -> usize {
    serde_json::from_slice::<Key>(payload)
        .ok()
        .and_then(|k| k.order_id.or(k.event_id))
        .map_or(0, |k| (k.as_u128() % LANES as u128) as usize)
}

/// Handles one message and acknowledges it as its verdict says.
async fn process(s: &AppState, message: jetstream::Message) {
    let ack = match handle(s, message.subject.as_str(), &message.payload).await {
        Verdict::Done => AckKind::Ack,
        Verdict::Retry(e) => {
            tracing::warn!(error = %e, "message not handled; will be redelivered");
            AckKind::Nak(Some(Duration::from_secs(2)))
        }
        Verdict::Poison(reason) => {
            tracing::error!(subject = %message.subject, %reason, "poison message parked");
            match park(s, message.subject.as_str(), &message.payload, &reason).await {
                Ok(()) => AckKind::Term,
                Err(_) => AckKind::Nak(Some(Duration::from_secs(5))),
            }
        }
    };
    if let Err(e) = message.ack_with(ack).await {
        tracing::warn!(error = %e, "ack failed; the message will come again");
    }
}

/// Consumes until `shutdown` resolves; what the lanes already hold is finished first.
pub async fn run(
    s: AppState,
    js: jetstream::Context,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let consumer = consumer(&js, &s).await?;
    let mut messages = consumer.messages().await.map_err(NatsError::from)?;
    let mut lanes = Vec::with_capacity(LANES);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<jetstream::Message>(64);
        let s = s.clone();
        workers.spawn(async move {
            while let Some(message) = rx.recv().await {
                process(&s, message).await;
            }
        });
        lanes.push(tx);
    }
    tokio::pin!(shutdown);
    let result = loop {
        let next = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            m = messages.next() => m,
        };
        let Some(message) = next else {
            break Err(NatsError::Ended("the message stream ended").into());
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        if lanes[lane(&message.payload)].send(message).await.is_err() {
            break Err(NatsError::Ended("a consumer lane ended").into());
        }
    };
    drop(lanes);
    while workers.join_next().await.is_some() {}
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_orders_messages_share_a_lane_and_orders_spread() {
        let order = uuid::Uuid::now_v7();
        let paid = serde_json::json!({"order_id": order, "event_id": uuid::Uuid::now_v7()});
        let resend = serde_json::json!({"order_id": order, "request_id": uuid::Uuid::now_v7()});
        assert_eq!(
            lane(paid.to_string().as_bytes()),
            lane(resend.to_string().as_bytes())
        );
        let event = uuid::Uuid::now_v7();
        let moved = serde_json::json!({"event_id": event});
        assert_eq!(
            lane(moved.to_string().as_bytes()),
            (event.as_u128() % LANES as u128) as usize
        );
        assert_eq!(lane(b"not json"), 0);
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|_| {
                lane(
                    serde_json::json!({"order_id": uuid::Uuid::now_v7()})
                        .to_string()
                        .as_bytes(),
                )
            })
            .collect();
        assert!(used.len() > LANES / 2, "orders spread over lanes: {used:?}");
    }
}
