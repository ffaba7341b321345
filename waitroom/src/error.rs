use crate::tokens::TokenError;

/// Everything that can go wrong inside the waiting room.
// Clone: one failed batched join is every waiting joiner's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("token: {0}")]
    Token(#[from] TokenError),
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    #[error("unknown event")]
    UnknownEvent,
    #[error("configuration: {0}")]
    Config(String),
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}
