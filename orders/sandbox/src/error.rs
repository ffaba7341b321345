//! One error type for the sandbox, mapped here and nowhere else to Stripe's error
//! shape, `{"error": {"type", "code", "message", "param", ...}}`.
//!
//! The sandbox imitates Stripe wherever it answers JSON, `/admin` included, so a
//! client needs one error parser for it; the `{"error","message"}` shape of API.md
//! belongs to Floodgate's own services, which translate these errors at their edge.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter that is missing, malformed, unknown or out of range (400).
    #[error("{message}")]
    InvalidParam {
        param: String,
        code: &'static str,
        message: String,
    },
    /// A request that cannot be read at all: bad JSON, an unsupported content type,
    /// a malformed header (400).
    #[error("{0}")]
    BadRequest(String),
    /// A body over the size limit (413).
    #[error("The request body is too large.")]
    TooLarge,
    /// The object named in the path does not exist (404).
    #[error("No such {kind}: '{id}'")]
    NotFound { kind: &'static str, id: String },
    /// No route for this method and path under `/v1` (404).
    #[error("Unrecognized request URL ({method}: {path}).")]
    UnknownUrl { method: String, path: String },
    /// No API key, or the wrong one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// An `Idempotency-Key` reused with other parameters or on another endpoint (400).
    #[error("{0}")]
    Idempotency(String),
    /// The object's state forbids the operation (400): confirming an intent that
    /// already succeeded, refunding one that never did. Carries the intent, as Stripe
    /// does, so the caller sees what the state actually is.
    #[error("{message}")]
    UnexpectedState {
        code: &'static str,
        message: String,
        payment_intent: Option<Box<Value>>,
    },
    /// The card was refused (402). Unlike every other error this one *changed
    /// state*: the attempt is recorded on the intent and a `payment_failed` event left.
    #[error("{message}")]
    Declined {
        decline_code: &'static str,
        message: String,
        payment_intent: Box<Value>,
    },
    /// The card number is not a card number (402); nothing was attempted.
    #[error("Your card number is incorrect.")]
    IncorrectNumber,
    /// The timeout fault: the operation took effect, the answer never came (504).
    #[error("The request timed out before the payment provider answered.")]
    Timeout,
}

impl Error {
    pub fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidParam {
            param: param.to_owned(),
            code,
            message: message.into(),
        }
    }

    pub fn missing(param: &str) -> Self {
        Self::invalid(
            param,
            "parameter_missing",
            format!("Missing required param: {param}."),
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidParam { .. }
            | Error::BadRequest(_)
            | Error::Idempotency(_)
            | Error::UnexpectedState { .. } => StatusCode::BAD_REQUEST,
            Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound { .. } | Error::UnknownUrl { .. } => StatusCode::NOT_FOUND,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Declined { .. } | Error::IncorrectNumber => StatusCode::PAYMENT_REQUIRED,
            Error::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the failed request nevertheless changed the books. Such a result is
    /// what an `Idempotency-Key` replay must return, and what the timeout fault may
    /// withhold.
    pub fn changed_state(&self) -> bool {
        matches!(self, Error::Declined { .. })
    }

    /// Stripe's error object (the value of the top-level `error` key).
    pub fn body(&self) -> Value {
        let message = self.to_string();
        match self {
            Error::InvalidParam { param, code, .. } => json!({
                "type": "invalid_request_error", "code": code, "param": param, "message": message,
            }),
            Error::BadRequest(_)
            | Error::TooLarge
            | Error::UnknownUrl { .. }
            | Error::Unauthorized(_) => {
                json!({"type": "invalid_request_error", "message": message})
            }
            Error::NotFound { .. } => json!({
                "type": "invalid_request_error", "code": "resource_missing", "param": "id", "message": message,
            }),
            Error::Idempotency(_) => json!({"type": "idempotency_error", "message": message}),
            Error::UnexpectedState {
                code,
                payment_intent,
                ..
            } => json!({
                "type": "invalid_request_error", "code": code, "message": message,
                "payment_intent": payment_intent,
            }),
            Error::Declined {
                decline_code,
                payment_intent,
                ..
            } => json!({
                "type": "card_error", "code": "card_declined", "decline_code": decline_code,
                "message": message, "payment_intent": payment_intent,
            }),
            Error::IncorrectNumber => json!({
                "type": "card_error", "code": "incorrect_number", "param": "card_number", "message": message,
            }),
            Error::Timeout => json!({"type": "api_error", "message": message}),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        // Nothing here is a fault of the sandbox (the 504 is a fault it was asked to
        // produce), so nothing is logged at error level.
        tracing::debug!(status = self.status().as_u16(), error = %self, "request refused");
        (self.status(), Json(json!({"error": self.body()}))).into_response()
    }
}
