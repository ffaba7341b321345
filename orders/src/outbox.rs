//! The transactional outbox: messages are written in the same transaction as the change
//! that causes them, then relayed to JetStream. A crash after commit loses nothing (the
//! row waits); a crash after publishing but before marking the row re-publishes with the
//! same `Nats-Msg-Id`, which JetStream's duplicate window drops.

use std::time::Duration;

use async_nats::jetstream;
use contract::Message;
use contract::stream::NatsError;
pub use contract::stream::StreamConfig;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::Error;

pub async fn enqueue<M: Message>(conn: &mut PgConnection, message: &M) -> Result<Uuid, Error> {
    let subject = M::SUBJECT;
    let id = Uuid::now_v7();
    let payload = serde_json::to_value(message).expect("messages serialise");
    sqlx::query!(
        "INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)",
        id,
        subject,
        payload
    )
    .execute(conn)
    .await?;
    Ok(id)
}

pub struct Relay {
    db: PgPool,
    js: jetstream::Context,
    config: StreamConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("nats: {0}")]
    Nats(#[from] NatsError),
}

impl Relay {
    /// Connects and makes sure the stream exists (file storage, 2 min dedup window).
    pub async fn connect(
        db: PgPool,
        nats_url: &str,
        config: StreamConfig,
    ) -> Result<Self, RelayError> {
        let client = contract::stream::connect(nats_url).await?;
        let js = jetstream::new(client);
        contract::stream::ensure(&js, &config).await?;
        Ok(Self { db, js, config })
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes one batch of waiting messages in order; returns how many.
    ///
    /// One relay publishes at a time, whatever the number running: the batch is taken
    /// under a transaction-scoped advisory lock, and a relay that does not get it
    /// publishes nothing this round (a hot standby). Two relays taking disjoint
    /// batches (`SKIP LOCKED` alone) could publish an order's later message before
    /// its earlier one. The lock goes with the holder's transaction or connection,
    /// so a relay killed mid-batch hands over at once, and what it had published is
    /// published again and dropped by JetStream's duplicate window.
    pub async fn relay_once(&self, limit: i64) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(0);
        }
        let rows = sqlx::query!(
            r#"SELECT id, subject, payload FROM outbox
               WHERE published_at IS NULL ORDER BY created_at, id LIMIT $1
               FOR UPDATE SKIP LOCKED"#,
            limit
        )
        .fetch_all(&mut *tx)
        .await?;
        // Pipelined: every message of the batch is sent, in order, before the first
        // acknowledgement is awaited, so a batch costs one round trip to the stream's
        // leader (and its replicas' agreement), not one per message.
        let mut ids = Vec::with_capacity(rows.len());
        let mut acks = Vec::with_capacity(rows.len());
        for row in rows {
            acks.push(send(&self.js, &self.config, row.id, &row.subject, &row.payload).await?);
            ids.push(row.id);
        }
        for ack in acks {
            ack.await.map_err(NatsError::from)?;
        }
        if !ids.is_empty() {
            sqlx::query!(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
                &ids
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Relays until `shutdown` resolves, idling briefly when there is nothing to send.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.relay_once(200).await {
                Ok(n) if n > 0 => Duration::ZERO,
                Ok(_) => Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// The advisory lock only the publishing relay holds (an arbitrary, fixed number).
pub const RELAY_LOCK: i64 = 0x0046_6c6f_6f64_6701;

/// Publishes one outbox row and waits for JetStream's acknowledgement.
pub async fn publish(
    js: &jetstream::Context,
    config: &StreamConfig,
    id: Uuid,
    subject: &str,
    payload: &serde_json::Value,
) -> Result<(), RelayError> {
    send(js, config, id, subject, payload)
        .await?
        .await
        .map_err(NatsError::from)?;
    Ok(())
}

/// Sends one outbox row with its id as `Nats-Msg-Id` (JetStream drops a second copy
/// within the duplicate window); the acknowledgement is the caller's to await.
async fn send(
    js: &jetstream::Context,
    config: &StreamConfig,
    id: Uuid,
    subject: &str,
    payload: &serde_json::Value,
) -> Result<jetstream::context::PublishAckFuture, RelayError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string().as_str());
    let body = serde_json::to_vec(payload).expect("json");
    Ok(js
        .publish_with_headers(config.subject(subject), headers, body.into())
        .await
        .map_err(NatsError::from)?)
}
