//! The console's errors, mapped to `{"error","message"}` in one place.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in or present an operator token")]
    Unauthenticated,
    #[error("your role may not do this")]
    Forbidden,
    #[error("the form has expired or did not come from the console; reload and try again")]
    Csrf,
    #[error("too many attempts; wait a few minutes")]
    Throttled,
    /// An `Idempotency-Key` sent again with another action, target or request (or by
    /// another operator): nothing is done and the first result is not shown.
    #[error(
        "this idempotency key was already used for a different action, target or request; \
         send a new key for a new action"
    )]
    KeyReused,
    #[error("{0}")]
    BadJson(#[from] JsonRejection),
    /// JSON that parsed but is not the body asked for (a missing field, an unknown one).
    #[error("{0}")]
    BadBody(String),
    #[error("{0}")]
    BadPath(#[from] PathRejection),
    #[error("{0}")]
    BadQuery(#[from] QueryRejection),
    #[error("{0}")]
    BadForm(#[from] FormRejection),
    #[error(transparent)]
    Orders(#[from] orders::Error),
    #[error("{0}")]
    Invalid(String),
    /// A line break or other control character in a one-line text (an event's title).
    #[error("the {0} may not contain line breaks, tabs or other control characters")]
    ControlCharacters(&'static str),
    #[error("the queue store is unavailable")]
    Waitroom(#[source] waitroom::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A JSON body, refused as the API's error shape (`400 bad_request`, `415`, `413`)
/// instead of axum's plain-text rejection. Whole-number floats count as integers, as
/// the OpenAPI document's JSON Schema says ([`platform::json::whole_numbers`]).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ConsoleError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(body) = Json::<serde_json::Value>::from_request(req, state).await?;
        platform::json::read(body)
            .map(ApiJson)
            .map_err(ConsoleError::BadBody)
    }
}

/// A path parameter (an order id, a slug), refused as the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ConsoleError))]
pub struct ApiPath<T>(pub T);

/// A query string, refused as the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ConsoleError))]
pub struct ApiQuery<T>(pub T);

impl From<waitroom::Error> for ConsoleError {
    fn from(e: waitroom::Error) -> Self {
        match e {
            waitroom::Error::InvalidSettings(m) => ConsoleError::Invalid(m),
            other => ConsoleError::Waitroom(other),
        }
    }
}

impl ConsoleError {
    /// What a caller is told: the status, the `error` code and the message. 500s and
    /// 503s say nothing of their cause (it is logged once, by [`ConsoleError::log`]).
    pub fn public(&self) -> (StatusCode, &'static str, String) {
        match self {
            ConsoleError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                self.to_string(),
            ),
            ConsoleError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", self.to_string()),
            ConsoleError::Csrf => (StatusCode::FORBIDDEN, "csrf", self.to_string()),
            ConsoleError::Throttled => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                self.to_string(),
            ),
            ConsoleError::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                self.to_string(),
            ),
            ConsoleError::BadJson(r) => {
                let status = r.status();
                let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "unsupported_media_type"
                } else if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                };
                // Unprocessable JSON (wrong types, missing fields) is still malformed input.
                let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                (status, code, r.body_text())
            }
            ConsoleError::BadBody(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            ConsoleError::BadPath(r) => (StatusCode::BAD_REQUEST, "bad_request", r.body_text()),
            ConsoleError::BadQuery(r) => (StatusCode::BAD_REQUEST, "bad_request", r.body_text()),
            ConsoleError::BadForm(r) => (StatusCode::BAD_REQUEST, "bad_request", r.body_text()),
            ConsoleError::Orders(e) => (e.status(), e.code(), e.public_message()),
            ConsoleError::Invalid(m) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m.clone())
            }
            // Well-formed JSON whose text cannot be taken: refused as input, like any
            // other value out of bounds (the OpenAPI document's JSON Schema allows it).
            ConsoleError::ControlCharacters(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                self.to_string(),
            ),
            ConsoleError::Waitroom(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the queue store is unavailable; nothing was changed".into(),
            ),
            ConsoleError::Database(e) if platform::db::is_unstorable_text(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "text may not contain NUL characters".into(),
            ),
            ConsoleError::Database(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "something went wrong on our side".into(),
            ),
        }
    }

    /// Logs the cause of an error the caller is not told about (once, where it is
    /// turned into a response).
    pub fn log(&self) {
        match self {
            ConsoleError::Waitroom(e) => tracing::error!(error = %e, "queue store unavailable"),
            ConsoleError::Database(e) if !platform::db::is_unstorable_text(e) => {
                tracing::error!(error = %e, "database error")
            }
            ConsoleError::Orders(e) if e.status() == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %e, "request failed")
            }
            _ => {}
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        self.log();
        let (status, code, message) = self.public();
        let mut response = (
            status,
            Json(serde_json::json!({"error": code, "message": message})),
        )
            .into_response();
        if matches!(self, ConsoleError::Throttled) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::sessions::THROTTLE_SECONDS.into(),
            );
        }
        response
    }
}
