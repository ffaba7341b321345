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
    /// Copies JetStream keeps of the stream (`FLOODGATE_NATS_REPLICAS`, default 1; 3
    /// on a three-node cluster, so losing one node loses no paid order's message).
    pub replicas: usize,
}

impl StreamConfig {
    /// `FLOODGATE_NATS_STREAM`, `FLOODGATE_NATS_PREFIX`, `FLOODGATE_NATS_REPLICAS`.
    pub fn from_env() -> Result<Self, String> {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let replicas = var("FLOODGATE_NATS_REPLICAS", "1");
        Ok(Self {
            stream: var("FLOODGATE_NATS_STREAM", "FLOODGATE"),
            prefix: var("FLOODGATE_NATS_PREFIX", "fg"),
            replicas: replicas
                .parse()
                .ok()
                .filter(|r| (1..=5).contains(r))
                .ok_or_else(|| {
                    format!("FLOODGATE_NATS_REPLICAS must be 1 to 5, not {replicas:?}")
                })?,
        })
    }

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
/// Its worst retry is well inside it: a batch's acknowledgements time out after 5 s
/// (async-nats), the relay pauses 1 s after a failure, a standby relay takes over as
/// soon as the dead one's connection closes, and a Postgres promotion measured 3 s
/// on `infra/cluster` — under 15 s in all, against 120.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A connection to NATS: `urls` is one server or a comma-separated list of a
/// cluster's servers (`nats://a:4222,nats://b:4222`), any of which will do to start;
/// the client learns the rest of the cluster from the one it reaches and moves to
/// another when its server goes away.
pub async fn connect(urls: &str) -> Result<async_nats::Client, NatsError> {
    let servers: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    Ok(async_nats::connect(servers).await?)
}

/// The stream, created with file storage, the duplicate window and the configured
/// replicas if it is missing; an existing stream with another replica count is
/// updated to it (JetStream moves the copies while the stream keeps working).
pub async fn ensure(
    js: &jetstream::Context,
    config: &StreamConfig,
) -> Result<stream::Stream, NatsError> {
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.all_subjects()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await?;
    let current = stream
        .info()
        .await
        .map_err(|e| NatsError::Info(e.to_string()))?;
    if current.config.num_replicas != config.replicas {
        let mut wanted = current.config.clone();
        wanted.num_replicas = config.replicas;
        js.update_stream(wanted).await?;
        stream = js
            .get_stream(&config.stream)
            .await
            .map_err(|e| NatsError::Info(e.to_string()))?;
    }
    Ok(stream)
}

/// What can go wrong with NATS, by step, so a caller can tell a server that is away
/// from a stream that is missing or a consumer that must be made again.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("connecting: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Creating or updating it (one error type in async-nats).
    #[error("creating or updating the stream: {0}")]
    Stream(#[from] jetstream::context::CreateStreamError),
    #[error("reading the stream: {0}")]
    Info(String),
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
            replicas: 1,
        };
        assert_eq!(c.subject("orders.paid"), "fg.orders.paid");
        assert_eq!(c.relative("fg.orders.paid"), Some("orders.paid"));
        assert_eq!(c.relative("fgx.orders.paid"), None);
        assert_eq!(c.relative("other.orders.paid"), None);
        assert_eq!(c.all_subjects(), "fg.>");
    }

    /// A cluster's server list: a dead server in it does not stop the client starting
    /// on a live one, and a stream made with one replica stays as configured.
    #[tokio::test]
    async fn a_list_of_servers_starts_on_whichever_answers() {
        let client = connect(" nats://127.0.0.1:1 , nats://127.0.0.1:4222")
            .await
            .expect("the live server of the list");
        let js = jetstream::new(client);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = StreamConfig {
            stream: format!("TC{}", &id[..12]).to_uppercase(),
            prefix: format!("tc{}", &id[..12]),
            replicas: 1,
        };
        let mut stream = ensure(&js, &config).await.expect("stream");
        assert_eq!(stream.info().await.unwrap().config.num_replicas, 1);
        ensure(&js, &config).await.expect("again, unchanged");
        js.delete_stream(&config.stream).await.unwrap();
    }
}
