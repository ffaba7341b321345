/// Everything that can go wrong in fulfilment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("smtp: {0}")]
    Smtp(String),
    /// The server refused the message for good (a 5xx reply: no such mailbox, say):
    /// sending it again cannot help, so the delivery bounced.
    #[error("smtp, refused permanently: {0}")]
    Rejected(String),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("meeting provider: {0}")]
    Meeting(String),
    #[error("nats: {0}")]
    Nats(#[from] contract::stream::NatsError),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("configuration: {0}")]
    Config(String),
}
