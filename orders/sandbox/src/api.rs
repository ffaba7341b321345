//! The Stripe-shaped API under `/v1`: payment intents, confirms and refunds. Here
//! parameters are parsed into the ledger's checked inputs, the API key is checked,
//! and the latency and timeout faults are applied.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::app::Sandbox;
use crate::cards;
use crate::ledger::{Confirmation, Idempotent, NewIntent, NewRefund, Reply};
use crate::objects::{Amount, Currency, ReturnUrl, parse_metadata};
use crate::params::Params;

/// Stripe parameters accepted and ignored: they change nothing in the sandbox.
const IGNORED: &[&str] = &[
    "expand",
    "automatic_payment_methods",
    "payment_method_types",
    "receipt_email",
    "statement_descriptor",
];

pub fn router(sandbox: Sandbox) -> Router<Sandbox> {
    Router::new()
        .route("/payment_intents", post(create_intent))
        .route("/payment_intents/{id}", get(get_intent))
        .route("/payment_intents/{id}/confirm", post(confirm))
        .route("/payment_intents/{id}/cancel", post(cancel))
        .route("/refunds", post(create_refund))
        .route("/refunds/{id}", get(get_refund))
        .fallback(unknown_url)
        // Latency is the outer layer: it delays every /v1 answer, refusals included.
        .layer(middleware::from_fn_with_state(
            sandbox.clone(),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(sandbox, latency))
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

async fn create_intent(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    params: Params,
) -> Result<Reply, Error> {
    let idem = idempotency(&headers, "/v1/payment_intents", &params)?;
    let new = new_intent(params)?;
    s.create_intent(new, idem.as_ref())
}

fn new_intent(mut p: Params) -> Result<NewIntent, Error> {
    let amount = Amount::parse(&p.require("amount")?, "amount")?;
    let currency = Currency::parse(&p.require("currency")?)?;
    let metadata = parse_metadata(p.take_map("metadata"))?;
    let description = p.take("description").filter(|d| !d.is_empty());
    let return_url = p
        .take("return_url")
        .map(|u| ReturnUrl::parse(&u))
        .transpose()?;
    p.ignore(IGNORED);
    p.finish()?;
    Ok(NewIntent {
        amount,
        currency,
        metadata,
        description,
        return_url,
    })
}

async fn get_intent(
    State(s): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(s.payment_intent(&id)?.to_json()))
}

#[tracing::instrument(skip_all, fields(payment_intent = %id))]
async fn confirm(
    State(s): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Reply, Error> {
    let endpoint = format!("/v1/payment_intents/{id}/confirm");
    let idem = idempotency(&headers, &endpoint, &params)?;
    let confirmation = confirmation(params)?;
    let result = s.confirm(&id, confirmation, idem.as_ref());
    // The timeout fault withholds only answers to confirms that took effect: the
    // caller cannot tell whether it was charged, and must find out by retrying with
    // its Idempotency-Key, reading the intent, or waiting for the webhook.
    let took_effect = match &result {
        Ok(reply) => !reply.replayed,
        Err(e) => e.changed_state(),
    };
    let faults = s.faults();
    if took_effect && faults.timeout_rate.roll() {
        tracing::info!(
            hold_ms = faults.timeout_hold_ms,
            "timeout fault: the confirm took effect; withholding the response"
        );
        tokio::time::sleep(faults.timeout_hold()).await;
        return Err(Error::Timeout);
    }
    result
}

#[tracing::instrument(skip_all, fields(payment_intent = %id))]
async fn cancel(
    State(s): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
    mut params: Params,
) -> Result<Reply, Error> {
    let endpoint = format!("/v1/payment_intents/{id}/cancel");
    let idem = idempotency(&headers, &endpoint, &params)?;
    let reason = params.take("cancellation_reason");
    if let Some(r) = &reason
        && !matches!(
            r.as_str(),
            "duplicate" | "fraudulent" | "requested_by_customer" | "abandoned"
        )
    {
        return Err(Error::invalid(
            "cancellation_reason",
            "parameter_invalid_string",
            format!(
                "Invalid cancellation_reason: must be one of duplicate, fraudulent, requested_by_customer, or abandoned, not {r:?}."
            ),
        ));
    }
    params.ignore(IGNORED);
    params.finish()?;
    s.cancel(&id, idem.as_ref())
}

fn confirmation(mut p: Params) -> Result<Confirmation, Error> {
    let payment_method = p.take("payment_method");
    let card_number = p.take("card_number");
    let return_url = p
        .take("return_url")
        .map(|u| ReturnUrl::parse(&u))
        .transpose()?;
    p.ignore(IGNORED);
    p.finish()?;
    let verdict = cards::verdict(payment_method.as_deref(), card_number.as_deref())?;
    Ok(Confirmation {
        verdict,
        return_url,
    })
}

async fn create_refund(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    params: Params,
) -> Result<Reply, Error> {
    let idem = idempotency(&headers, "/v1/refunds", &params)?;
    let new = new_refund(params)?;
    s.refund(new, idem.as_ref())
}

fn new_refund(mut p: Params) -> Result<NewRefund, Error> {
    let payment_intent = p.require("payment_intent")?;
    let amount = p
        .take("amount")
        .map(|a| Amount::parse(&a, "amount"))
        .transpose()?;
    let reason = p.take("reason").filter(|r| !r.is_empty());
    if let Some(r) = &reason
        && !matches!(
            r.as_str(),
            "duplicate" | "fraudulent" | "requested_by_customer"
        )
    {
        return Err(Error::invalid(
            "reason",
            "parameter_invalid_string",
            format!(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer, not {r:?}."
            ),
        ));
    }
    let metadata = parse_metadata(p.take_map("metadata"))?;
    p.ignore(IGNORED);
    p.finish()?;
    Ok(NewRefund {
        payment_intent,
        amount,
        reason,
        metadata,
    })
}

async fn get_refund(
    State(s): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(s.refund_json(&id)?))
}

async fn unknown_url(method: Method, uri: Uri) -> Error {
    Error::UnknownUrl {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// The `Idempotency-Key` header, if any, with the request it keys.
fn idempotency(
    headers: &HeaderMap,
    endpoint: &str,
    params: &Params,
) -> Result<Option<Idempotent>, Error> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            Error::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.".into())
        })?;
    Ok(Some(Idempotent {
        key: key.to_owned(),
        endpoint: endpoint.to_owned(),
        params: params.clone(),
    }))
}

/// Stripe's two ways of presenting the secret key: `Authorization: Bearer <key>`,
/// or HTTP Basic with the key as the user name (`curl -u sk_test_...:`).
async fn authenticate(State(s): State<Sandbox>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_key);
    let Some(key) = presented else {
        return Error::Unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').".into(),
        )
        .into_response();
    };
    // Comparing digests keeps the time taken independent of how much of the key
    // matched.
    let expected = Sha256::digest(s.config().api_key.expose().as_bytes());
    if Sha256::digest(key.as_bytes()) != expected {
        return Error::Unauthorized(format!("Invalid API Key provided: {}", redact(&key)))
            .into_response();
    }
    next.run(req).await
}

fn presented_key(authorization: &str) -> Option<String> {
    let (scheme, value) = authorization.split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, _password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        return Some(user.to_owned());
    }
    None
}

/// The presented key as Stripe echoes a wrong one: prefix and last four only.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

async fn latency(State(s): State<Sandbox>, req: Request, next: Next) -> Response {
    let delay = s.faults().latency();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_bearer_and_basic() {
        assert_eq!(
            presented_key("Bearer sk_test_x").as_deref(),
            Some("sk_test_x")
        );
        assert_eq!(
            presented_key("bearer  sk_test_x ").as_deref(),
            Some("sk_test_x")
        );
        // base64("sk_test_x:")
        assert_eq!(
            presented_key("Basic c2tfdGVzdF94Og==").as_deref(),
            Some("sk_test_x")
        );
        assert_eq!(presented_key("Token sk_test_x"), None);
        assert_eq!(presented_key("Bearer"), None);
    }

    #[test]
    fn wrong_keys_are_echoed_redacted() {
        assert_eq!(redact("sk_test_abcdefghijkl"), "sk_test_****ijkl");
        assert_eq!(redact("short"), "*****");
    }
}
