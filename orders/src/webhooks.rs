//! Provider webhooks: verify the signature, then record the event exactly once.
//!
//! The signature scheme is Stripe's: header `Stripe-Signature: t=<unix>,v1=<hex>` where
//! the hex is HMAC-SHA256 over `"<t>.<raw body>"` with the endpoint secret. Events
//! older than the tolerance are refused so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signature is too old")]
    Stale,
}

/// Checks a `Stripe-Signature` header against the raw body.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                candidates.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // abs_diff: `t` is whatever the sender wrote, and `now - t` overflows for extreme
    // values (a panic in debug builds, a wrong answer in release).
    if now.abs_diff(t) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for sig in candidates {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if mac.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// Signs like the provider does (tests, and the sandbox's own tests cross-check it).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookData {
    pub object: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_in_full() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign("whsec", 1000, body);
        assert_eq!(verify("whsec", &header, body, 1000), Ok(()));
        assert_eq!(
            verify("other", &header, body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec", &header, b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec", &header, body, 2000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("whsec", "garbage", body, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("whsec", "t=1000", body, 1000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = b"{}";
        for t in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let header = format!("t={t},v1={}", "00".repeat(32));
            assert_eq!(
                verify("whsec", &header, body, 1_700_000_000),
                Err(SignatureError::Stale),
                "{t}"
            );
        }
        let signed = sign("whsec", i64::MAX, body);
        assert_eq!(verify("whsec", &signed, body, i64::MAX), Ok(()));
        assert_eq!(
            verify("whsec", &signed, body, i64::MIN),
            Err(SignatureError::Stale)
        );
    }
}
