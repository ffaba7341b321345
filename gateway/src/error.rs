use crate::reply::Reply;

/// Every way an edge request can fail, mapped to the API error shape in one place.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("unknown event")]
    UnknownEvent,
    #[error("{0}")]
    Token(#[from] waitroom::tokens::TokenError),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("the queue is unavailable")]
    Unavailable(#[source] waitroom::Error),
    /// The edge itself cannot take more of this work right now.
    #[error("busy: {0}")]
    Busy(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
}

impl From<waitroom::Error> for EdgeError {
    fn from(e: waitroom::Error) -> Self {
        match e {
            waitroom::Error::UnknownEvent => EdgeError::UnknownEvent,
            other => EdgeError::Unavailable(other),
        }
    }
}

impl EdgeError {
    pub fn reply(&self) -> Reply {
        use waitroom::tokens::TokenError;
        let (status, code, message) = match self {
            EdgeError::UnknownEvent => (404, "unknown_event", "no such event".to_owned()),
            EdgeError::Token(TokenError::Missing) => (401, "missing_token", self.to_string()),
            EdgeError::Token(TokenError::Expired) => (401, "token_expired", self.to_string()),
            EdgeError::Token(_) => (401, "invalid_token", self.to_string()),
            EdgeError::RateLimited { .. } => (
                429,
                "rate_limited",
                "too many requests from this address; retry later".to_owned(),
            ),
            EdgeError::Unavailable(e) => {
                tracing::error!(error = %e, "queue store unavailable");
                (
                    503,
                    "unavailable",
                    "the queue is briefly unavailable; retry shortly".to_owned(),
                )
            }
            EdgeError::Busy(why) => {
                tracing::warn!(why, "edge busy");
                (
                    503,
                    "unavailable",
                    "the queue is briefly unavailable; retry shortly".to_owned(),
                )
            }
            EdgeError::NotFound => (404, "not_found", "no such path".to_owned()),
            EdgeError::MethodNotAllowed { .. } => {
                (405, "method_not_allowed", "method not allowed".to_owned())
            }
        };
        let mut r = Reply::json(
            status,
            &serde_json::json!({"error": code, "message": message}),
        );
        match self {
            EdgeError::RateLimited { retry_after_secs } => {
                r = r.header("Retry-After", retry_after_secs.to_string());
            }
            EdgeError::Unavailable(_) | EdgeError::Busy(_) => r = r.header("Retry-After", "2"),
            // RFC 9110: a 405 names the methods the path does answer.
            EdgeError::MethodNotAllowed { allow } => r = r.header("Allow", *allow),
            _ => {}
        }
        r
    }
}
