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
    #[error("not enough seats left in this tier")]
    SoldOut,
    #[error("this admission already holds seats; release or buy them first")]
    HoldExists,
    #[error("this admission has already been used to buy; join the queue again to buy more")]
    AdmissionUsed,
    #[error("this admission has an order waiting for payment; pay it or cancel it first")]
    OrderPending,
    #[error(
        "this buyer already holds as many reservations for this event as allowed; buy or release one first"
    )]
    BuyerLimit,
    #[error("{1}")]
    Conflict(&'static str, &'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("admission required: {0}")]
    Admission(#[from] waitroom::tokens::TokenError),
    #[error("send JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is too large")]
    TooLarge,
    #[error("webhook signature: {0}")]
    BadSignature(String),
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("the payment provider is unavailable; retry shortly")]
    Payment(String),
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
            Error::SoldOut => (StatusCode::CONFLICT, "sold_out"),
            Error::HoldExists => (StatusCode::CONFLICT, "hold_exists"),
            Error::AdmissionUsed => (StatusCode::UNAUTHORIZED, "admission_used"),
            Error::OrderPending => (StatusCode::CONFLICT, "order_pending"),
            Error::BuyerLimit => (StatusCode::CONFLICT, "too_many_holds"),
            Error::Conflict(code, _) => (StatusCode::CONFLICT, code),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Admission(waitroom::tokens::TokenError::Missing) => {
                (StatusCode::UNAUTHORIZED, "missing_token")
            }
            Error::Admission(waitroom::tokens::TokenError::Expired) => {
                (StatusCode::UNAUTHORIZED, "token_expired")
            }
            Error::Admission(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::BadSignature(_) => (StatusCode::BAD_REQUEST, "invalid_signature"),
            Error::Payment(_) => (StatusCode::SERVICE_UNAVAILABLE, "payment_unavailable"),
            Error::Database(e) if is_unavailable(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Database(e) if platform::db::is_unstorable_text(e) => {
                (StatusCode::BAD_REQUEST, "bad_request")
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
            Error::Database(e) if platform::db::is_unstorable_text(e) => {
                "text may not contain NUL characters".into()
            }
            Error::Database(_) => "something went wrong on our side".into(),
            Error::Payment(_) => "the payment provider is unavailable; retry shortly".into(),
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
        if let Error::Payment(detail) = &self {
            tracing::warn!(%detail, "payment provider call failed");
        }
        if status.is_server_error() && !matches!(self, Error::Payment(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({"error": code, "message": self.public_message()});
        (status, Json(body)).into_response()
    }
}
