//! One error type for the crate, mapped to the API shape `{"error","message"}` here and
//! nowhere else. Database details never reach a response body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that parsed but makes no sense (422).
    #[error("{0}")]
    Invalid(String),
    /// Input that did not parse (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("an event with this slug already exists")]
    SlugTaken,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::SlugTaken => (StatusCode::CONFLICT, "slug_taken"),
            Error::Database(e) if is_unavailable(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The message a client may see: the error itself, except for server faults.
    pub fn public_message(&self) -> String {
        match self {
            Error::Database(e) if is_unavailable(e) => {
                "the database is briefly unavailable; retry shortly".into()
            }
            Error::Database(_) => "something went wrong on our side".into(),
            other => other.to_string(),
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({"error": code, "message": self.public_message()});
        (status, Json(body)).into_response()
    }
}
