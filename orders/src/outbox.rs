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
    pub async fn relay_once(&self, limit: i64) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query!(
            r#"SELECT id, subject, payload FROM outbox
               WHERE published_at IS NULL ORDER BY created_at, id LIMIT $1
               FOR UPDATE SKIP LOCKED"#,
            limit
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            publish(&self.js, &self.config, row.id, &row.subject, &row.payload).await?;
            ids.push(row.id);
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

/// Publishes one outbox row and waits for JetStream's acknowledgement.
pub async fn publish(
    js: &jetstream::Context,
    config: &StreamConfig,
    id: Uuid,
    subject: &str,
    payload: &serde_json::Value,
) -> Result<(), RelayError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string().as_str());
    let body = serde_json::to_vec(payload).expect("json");
    js.publish_with_headers(config.subject(subject), headers, body.into())
        .await
        .map_err(NatsError::from)?
        .await
        .map_err(NatsError::from)?;
    Ok(())
}
