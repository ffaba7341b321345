/// Everything that can go wrong in fulfilment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("meeting provider: {0}")]
    Meeting(String),
    #[error("nats: {0}")]
    Nats(String),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("configuration: {0}")]
    Config(String),
}
