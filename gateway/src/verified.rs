//! Queue tokens already verified at this edge.
//!
//! A waiting visitor presents the same queue token on every poll, and checking its
//! Ed25519 signature was half of the gateway's CPU per status poll (PERFORMANCE, edge
//! profile; queue tokens now carry an HMAC, cheaper but not free: a JSON parse and a
//! MAC per poll). So a token that verified once is remembered, keyed by the whole token
//! string: only a visitor presenting those exact bytes finds it, and the claims it
//! maps to are the ones the signature vouched for. A remembered token is used only for
//! the event it was verified for and only before its expiry; anything else — and every
//! token that failed — goes through full verification, so the cache can make the
//! edge faster but never more permissive. Bounded in entries (quick_cache evicts the
//! least useful), so a flood of distinct valid tokens costs memory up to the bound and
//! then verification time, as before.

use chrono::Utc;
use quick_cache::sync::Cache;
use waitroom::EventSlug;
use waitroom::tokens::{QueueClaims, QueueKeys, TokenError, TokenVerifier};

/// Entries kept: one per visitor polling, so this covers a line of this many people;
/// at a few hundred bytes each, tens of megabytes at most.
pub const CAPACITY: usize = 200_000;

/// The edge's tokens: queue tokens made and read with the gateways' shared keys
/// (remembered once verified), admissions read with the public keys.
pub struct VerifiedQueueTokens {
    keys: QueueKeys,
    verifier: TokenVerifier,
    seen: Cache<String, QueueClaims>,
}

impl VerifiedQueueTokens {
    pub fn new(keys: QueueKeys, verifier: TokenVerifier, capacity: usize) -> Self {
        Self {
            keys,
            verifier,
            seen: Cache::new(capacity.max(1)),
        }
    }

    /// A new queue token for `claims`.
    pub fn issue(&self, claims: &QueueClaims) -> String {
        self.keys.sign(claims)
    }

    /// The token's claims, from memory when this exact token verified before for this
    /// event and has not expired; otherwise verified in full (and remembered if good).
    pub fn verify(&self, token: &str, event: &EventSlug) -> Result<QueueClaims, TokenError> {
        if let Some(claims) = self.seen.get(token)
            && &claims.evt == event
            && Utc::now().timestamp() < claims.exp
        {
            return Ok(claims);
        }
        let claims = self.keys.verify(token, event)?;
        self.seen.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// The admission tokens' verifier.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waitroom::tokens::{TokenKind, audience, generate_keypair, generate_queue_secret};

    fn setup(capacity: usize) -> (QueueKeys, VerifiedQueueTokens) {
        let keys = QueueKeys::new("q1", generate_queue_secret().as_bytes()).unwrap();
        let (_, pk) = generate_keypair();
        let verifier = TokenVerifier::new().with_key("k1", pk.as_bytes()).unwrap();
        let tokens = VerifiedQueueTokens::new(keys.clone(), verifier, capacity);
        (keys, tokens)
    }

    fn place(event: &str, seq: u64, exp_in: i64) -> QueueClaims {
        let evt = EventSlug::parse(event).unwrap();
        let now = Utc::now().timestamp();
        QueueClaims {
            kind: TokenKind::Queue,
            aud: audience(&evt),
            evt,
            sub: format!("visitor-{seq}"),
            seq: Some(seq),
            pq: None,
            from: None,
            iat: now,
            exp: now + exp_in,
        }
    }

    fn slug(s: &str) -> EventSlug {
        EventSlug::parse(s).unwrap()
    }

    #[test]
    fn a_remembered_token_gives_the_claims_it_was_signed_with() {
        let (signer, tokens) = setup(100);
        let claims = place("show", 7, 600);
        let token = signer.sign(&claims);
        assert_eq!(tokens.verify(&token, &slug("show")).unwrap(), claims);
        assert_eq!(tokens.seen.len(), 1);
        assert_eq!(tokens.verify(&token, &slug("show")).unwrap(), claims);
        assert_eq!(
            tokens.seen.len(),
            1,
            "the second poll is answered from memory"
        );
    }

    #[test]
    fn remembering_a_token_never_lets_a_variant_or_another_event_through() {
        let (signer, tokens) = setup(100);
        let token = signer.sign(&place("show", 7, 600));
        tokens.verify(&token, &slug("show")).unwrap();
        // The same token at another event's queue: refused as before.
        assert_eq!(
            tokens.verify(&token, &slug("other")).unwrap_err(),
            TokenError::WrongEvent
        );
        // One byte of the signature changed: not the remembered token, so verified in
        // full and refused.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(tokens.verify(&forged, &slug("show")).is_err());
        // Claims moved forward and re-encoded with the old signature: refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let moved = signer.sign(&place("show", 1, 600));
        let moved_payload = moved.split('.').nth(1).unwrap().to_owned();
        parts[1] = &moved_payload;
        assert_eq!(
            tokens.verify(&parts.join("."), &slug("show")).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(tokens.seen.len(), 1, "failures are never remembered");
    }

    #[test]
    fn a_remembered_token_expires_when_its_claims_say() {
        let (signer, tokens) = setup(100);
        let token = signer.sign(&place("show", 7, 1));
        tokens.verify(&token, &slug("show")).unwrap();
        // Past its expiry and the verifier's 2 s leeway, both in whole seconds.
        std::thread::sleep(std::time::Duration::from_millis(4_100));
        assert_eq!(
            tokens.verify(&token, &slug("show")).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn memory_is_bounded() {
        let (signer, tokens) = setup(64);
        for seq in 0..500 {
            let token = signer.sign(&place("show", seq, 600));
            tokens.verify(&token, &slug("show")).unwrap();
        }
        assert!(tokens.seen.len() <= 64, "{} remembered", tokens.seen.len());
    }
}
