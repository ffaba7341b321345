//! Provider webhooks: verify the signature, then record the event exactly once.
//!
//! The signature scheme is Stripe's: header `Stripe-Signature: t=<unix>,v1=<hex>` where
//! the hex is HMAC-SHA256 over `"<t>.<raw body>"` with the endpoint secret. Events
//! older than the tolerance are refused so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const TOLERANCE_SECONDS: i64 = 300;

/// The longest `Stripe-Signature` header looked at. A real one is a timestamp and one
/// or two signatures (two while the endpoint secret rolls over), under 300 bytes.
pub const MAX_HEADER_BYTES: usize = 1024;

/// The most `v1=` signatures compared. Stripe sends one per active endpoint secret.
pub const MAX_SIGNATURES: usize = 4;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("the Stripe-Signature header is too long or carries too many signatures")]
    TooMany,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signature is too old")]
    Stale,
}

/// Checks a `Stripe-Signature` header against the raw body. The MAC over the body is
/// computed once, whatever the header carries, and compared with each candidate in
/// constant time; a header past [`MAX_HEADER_BYTES`] or [`MAX_SIGNATURES`] is refused
/// before any MAC, so a forged header costs its sender more than it costs us (it used
/// to cost one HMAC over the whole body per `v1=` entry).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::TooMany);
    }
    let mut timestamp = None;
    let mut candidates: Vec<[u8; 32]> = Vec::with_capacity(2);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if candidates.len() == MAX_SIGNATURES {
                    return Err(SignatureError::TooMany);
                }
                let mut tag = [0u8; 32];
                hex::decode_to_slice(sig, &mut tag).map_err(|_| SignatureError::Malformed)?;
                candidates.push(tag);
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
    let expected = tag(secret, t, body);
    // Every candidate is compared (no early exit), each in constant time.
    let matched = candidates
        .iter()
        .fold(subtle::Choice::from(0), |any, c| any | c.ct_eq(&expected));
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// HMAC-SHA256 over `"<t>.<body>"`.
fn tag(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Signs like the provider does (tests, and the sandbox's own tests cross-check it).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(tag(secret, t, body)))
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

    /// A forged header with thousands of candidates is refused before any MAC is
    /// computed (it used to cost one HMAC over the body per entry); a rolling secret's
    /// two signatures still verify, whichever is right.
    #[test]
    fn a_header_full_of_signatures_is_refused_before_any_mac() {
        let body = vec![b'x'; 64 * 1024];
        let many = format!(
            "t=1000{}",
            format!(",v1={}", "cd".repeat(32)).repeat(30_000)
        );
        assert_eq!(
            verify("whsec", &many, &body, 1000),
            Err(SignatureError::TooMany)
        );
        let five = format!("t=1000{}", format!(",v1={}", "cd".repeat(32)).repeat(5));
        assert!(five.len() <= MAX_HEADER_BYTES);
        assert_eq!(
            verify("whsec", &five, &body, 1000),
            Err(SignatureError::TooMany)
        );
        let good = sign("whsec", 1000, &body);
        let sig = good.split_once(",v1=").unwrap().1;
        let rolling = format!("t=1000,v1={},v1={sig}", "00".repeat(32));
        assert_eq!(verify("whsec", &rolling, &body, 1000), Ok(()));
        let short = format!("t=1000,v1={}", &sig[..20]);
        assert_eq!(
            verify("whsec", &short, &body, 1000),
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
