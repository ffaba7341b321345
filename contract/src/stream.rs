//! The JetStream stream both sides meet on: its name, its subjects, its settings, and
//! what can go wrong talking to it. The relay (orders) creates it if missing before it
//! publishes, fulfilment before it consumes; one definition, so they cannot disagree on
//! the storage or the duplicate window the exactly-once relay relies on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Where messages go: a stream and the subject prefix of a deployment.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// JetStream stream name (`FLOODGATE_NATS_STREAM`, default `FLOODGATE`).
    pub stream: String,
    /// Subject prefix (`FLOODGATE_NATS_PREFIX`, default `fg`), so deployments and
    /// tests can share a server without seeing each other's messages.
    pub prefix: String,
}

impl StreamConfig {
    /// The absolute subject of a relative one (`fg.orders.paid`).
    pub fn subject(&self, relative: &str) -> String {
        format!("{}.{relative}", self.prefix)
    }

    /// The relative subject of an absolute one, if it is this deployment's.
    pub fn relative<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|s| s.strip_prefix('.'))
    }

    /// Every subject of the deployment.
    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }
}

/// How long JetStream drops a message whose `Nats-Msg-Id` it has seen: the relay
/// re-publishes after a crash between publishing and marking, within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The stream, created with file storage and the duplicate window if it is missing.
pub async fn ensure(
    js: &jetstream::Context,
    config: &StreamConfig,
) -> Result<stream::Stream, NatsError> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.all_subjects()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await?)
}

/// What can go wrong with NATS, by step, so a caller can tell a server that is away
/// from a stream that is missing or a consumer that must be made again.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("connecting: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("creating the stream: {0}")]
    Stream(#[from] jetstream::context::CreateStreamError),
    #[error("the consumer: {0}")]
    Consumer(#[from] jetstream::stream::ConsumerError),
    #[error("reading messages: {0}")]
    Messages(#[from] jetstream::consumer::StreamError),
    #[error("publishing: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    /// The message stream or one of our own lanes ended: the consumer must restart.
    #[error("{0}")]
    Ended(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_deployments_own() {
        let c = StreamConfig {
            stream: "S".into(),
            prefix: "fg".into(),
        };
        assert_eq!(c.subject("orders.paid"), "fg.orders.paid");
        assert_eq!(c.relative("fg.orders.paid"), Some("orders.paid"));
        assert_eq!(c.relative("fgx.orders.paid"), None);
        assert_eq!(c.relative("other.orders.paid"), None);
        assert_eq!(c.all_subjects(), "fg.>");
    }
}
