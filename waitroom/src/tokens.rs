//! Queue and admission tokens: EdDSA-signed JWTs.
//!
//! Signing needs the private key (gateway only); verifying needs only public keys, so
//! `orders` can check an admission without any secret. Each token names its key in the
//! header's `kid`, and the verifier holds every key still in rotation. Only `EdDSA` is
//! accepted: a token claiming `none` or `HS256` (the classic confusion with a public
//! key used as an HMAC secret) is refused before any key is consulted.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EventSlug;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token was presented")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is signed with an unknown key or algorithm")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token belongs to another event")]
    WrongEvent,
    #[error("the token is not of the expected kind")]
    WrongKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Queue,
    Admission,
}

/// A visitor's place in line. It carries either a sequence number (`seq`) or, for an
/// arrival during the pre-queue, its index in the pre-queue (`pq`) until the draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueClaims {
    pub kind: TokenKind,
    pub aud: String,
    pub evt: EventSlug,
    /// Visitor id: random, not personal data.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq: Option<u64>,
    pub iat: i64,
    pub exp: i64,
}

/// Permission to hold inventory for one event. `orders` allows one active hold per `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionClaims {
    pub kind: TokenKind,
    pub aud: String,
    pub evt: EventSlug,
    pub sub: String,
    pub jti: String,
    pub seq: u64,
    pub iat: i64,
    pub exp: i64,
}

/// The JWT audience of an event's tokens.
pub fn audience(event: &EventSlug) -> String {
    format!("floodgate:{event}")
}

/// Signs tokens with the current private key.
///
/// Signs directly with ed25519-dalek rather than through `jsonwebtoken::encode`, which
/// re-parses the PKCS#8 key and re-derives the public key on every call: that was 17 of
/// the 37 µs a join spent signing, and signing was 40 % of the edge's CPU per join
/// (PERFORMANCE, edge). The token is the same compact JWS (`alg` EdDSA, `kid`), read by
/// the same `jsonwebtoken` verifier.
#[derive(Clone)]
pub struct TokenSigner {
    kid: String,
    key: ed25519_dalek::SigningKey,
    /// The encoded header, the same for every token of this key.
    header: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn from_pem(kid: &str, private_pem: &[u8]) -> Result<Self, crate::Error> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let invalid =
            |e: &dyn std::fmt::Display| crate::Error::Config(format!("signing key {kid}: {e}"));
        let pem = std::str::from_utf8(private_pem).map_err(|e| invalid(&e))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| invalid(&e))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let header = serde_json::to_vec(&header).map_err(|e| invalid(&e))?;
        Ok(Self {
            kid: kid.to_owned(),
            key,
            header: URL_SAFE_NO_PAD.encode(header),
        })
    }

    pub fn from_file(kid: &str, path: &Path) -> Result<Self, crate::Error> {
        let pem = std::fs::read(path)
            .map_err(|e| crate::Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_pem(kid, &pem)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        use ed25519_dalek::Signer;
        // The claims are our own structs of strings and numbers: serialising cannot fail.
        let payload = serde_json::to_vec(claims).expect("claims serialise to JSON");
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }
}

/// Verifies tokens against the public keys still in rotation.
#[derive(Clone, Default)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
}

impl TokenVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_key(mut self, kid: &str, public_pem: &[u8]) -> Result<Self, crate::Error> {
        let key = DecodingKey::from_ed_pem(public_pem)
            .map_err(|e| crate::Error::Config(format!("public key {kid}: {e}")))?;
        self.keys.insert(kid.to_owned(), key);
        Ok(self)
    }

    /// Parses `kid=path,kid=path` as used by `FLOODGATE_VERIFY_KEYS`.
    pub fn from_spec(spec: &str) -> Result<Self, crate::Error> {
        let mut v = Self::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, path) = part
                .split_once('=')
                .ok_or_else(|| crate::Error::Config(format!("expected kid=path, got {part:?}")))?;
            let pem = std::fs::read(path)
                .map_err(|e| crate::Error::Config(format!("reading {path}: {e}")))?;
            v = v.with_key(kid, &pem)?;
        }
        if v.keys.is_empty() {
            return Err(crate::Error::Config("no verification keys".into()));
        }
        Ok(v)
    }

    pub fn verify_queue(&self, token: &str, event: &EventSlug) -> Result<QueueClaims, TokenError> {
        let c: QueueClaims = self.verify(token, event)?;
        if c.kind != TokenKind::Queue {
            return Err(TokenError::WrongKind);
        }
        if &c.evt != event {
            return Err(TokenError::WrongEvent);
        }
        if c.seq.is_none() && c.pq.is_none() {
            return Err(TokenError::Malformed);
        }
        Ok(c)
    }

    pub fn verify_admission(
        &self,
        token: &str,
        event: &EventSlug,
    ) -> Result<AdmissionClaims, TokenError> {
        let c: AdmissionClaims = self.verify(token, event)?;
        if c.kind != TokenKind::Admission {
            return Err(TokenError::WrongKind);
        }
        if &c.evt != event {
            return Err(TokenError::WrongEvent);
        }
        Ok(c)
    }

    fn verify<T: DeserializeOwned>(&self, token: &str, event: &EventSlug) -> Result<T, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::UnknownKey);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 2;
        validation.set_audience(&[audience(event)]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidAudience => TokenError::WrongEvent,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidEddsaKey => TokenError::UnknownKey,
                _ => TokenError::Malformed,
            })
    }
}

/// A fresh Ed25519 key pair as (private PKCS#8 PEM, public SPKI PEM), for tests and
/// for operators who have no `openssl` at hand.
pub fn generate_keypair() -> (String, String) {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private = sk.to_pkcs8_pem(LineEnding::LF).expect("encode private key");
    let public = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("encode public key");
    (private.to_string(), public)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signer builds the JWS by hand: what it makes must be what `jsonwebtoken`
    /// makes and reads — header with alg and kid, claims as JSON, a signature any
    /// Ed25519 verifier accepts.
    #[test]
    fn signed_tokens_are_standard_eddsa_jws() {
        let (sk, pk) = generate_keypair();
        let signer = TokenSigner::from_pem("k7", sk.as_bytes()).unwrap();
        let evt = EventSlug::parse("show").unwrap();
        let claims = QueueClaims {
            kind: TokenKind::Queue,
            aud: audience(&evt),
            evt: evt.clone(),
            sub: "v".into(),
            seq: Some(3),
            pq: None,
            iat: 1,
            exp: chrono::Utc::now().timestamp() + 60,
        };
        let token = signer.sign(&claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some("k7"));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience(&evt)]);
        let key = DecodingKey::from_ed_pem(pk.as_bytes()).unwrap();
        let read = jsonwebtoken::decode::<QueueClaims>(&token, &key, &validation).unwrap();
        assert_eq!(read.claims, claims);
        // And a key other than the signer's refuses it.
        let (_, other) = generate_keypair();
        let other = DecodingKey::from_ed_pem(other.as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<QueueClaims>(&token, &other, &validation).is_err());
    }

    fn pair(kid: &str) -> (TokenSigner, TokenVerifier) {
        let (sk, pk) = generate_keypair();
        (
            TokenSigner::from_pem(kid, sk.as_bytes()).unwrap(),
            TokenVerifier::new().with_key(kid, pk.as_bytes()).unwrap(),
        )
    }

    fn ev(s: &str) -> EventSlug {
        EventSlug::parse(s).unwrap()
    }

    fn admission(event: &EventSlug, exp_in: i64) -> AdmissionClaims {
        let now = chrono::Utc::now().timestamp();
        AdmissionClaims {
            kind: TokenKind::Admission,
            aud: audience(event),
            evt: event.clone(),
            sub: "v1".into(),
            jti: "j1".into(),
            seq: 7,
            iat: now,
            exp: now + exp_in,
        }
    }

    #[test]
    fn a_signed_admission_round_trips() {
        let (s, v) = pair("k1");
        let e = ev("gig");
        let claims = admission(&e, 300);
        assert_eq!(v.verify_admission(&s.sign(&claims), &e).unwrap(), claims);
    }

    #[test]
    fn tampered_expired_foreign_and_wrong_kind_tokens_are_refused() {
        let (s, v) = pair("k1");
        let e = ev("gig");
        let token = s.sign(&admission(&e, 300));

        // Flip the seq in the payload while keeping the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["seq"] = 1.into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert_eq!(
            v.verify_admission(&forged, &e),
            Err(TokenError::BadSignature)
        );

        let expired = s.sign(&admission(&e, -60));
        assert_eq!(v.verify_admission(&expired, &e), Err(TokenError::Expired));

        assert_eq!(
            v.verify_admission(&token, &ev("other")),
            Err(TokenError::WrongEvent)
        );
        assert_eq!(v.verify_queue(&token, &e), Err(TokenError::WrongKind));
        assert_eq!(v.verify_admission("", &e), Err(TokenError::Missing));
        assert_eq!(v.verify_admission("abc", &e), Err(TokenError::Malformed));
    }

    #[test]
    fn another_key_or_algorithm_is_refused() {
        let (_, v) = pair("k1");
        let (other, _) = pair("k1");
        let e = ev("gig");
        let claims = admission(&e, 300);
        assert_eq!(
            v.verify_admission(&other.sign(&claims), &e),
            Err(TokenError::BadSignature)
        );

        // alg=none and HS256 keyed with the public key: refused before any key is used.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(serde_json::to_vec(&claims).unwrap());
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","kid":"k1"}"#), body);
        assert_ne!(v.verify_admission(&none, &e).map(|_| ()), Ok(()));
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"public"),
        )
        .unwrap();
        assert_eq!(v.verify_admission(&hs, &e), Err(TokenError::UnknownKey));
    }

    #[test]
    fn rotation_keeps_old_keys_valid() {
        let (old_sk, old_pk) = generate_keypair();
        let (new_sk, new_pk) = generate_keypair();
        let v = TokenVerifier::new()
            .with_key("old", old_pk.as_bytes())
            .unwrap()
            .with_key("new", new_pk.as_bytes())
            .unwrap();
        let e = ev("gig");
        let c = admission(&e, 300);
        for s in [
            TokenSigner::from_pem("old", old_sk.as_bytes()).unwrap(),
            TokenSigner::from_pem("new", new_sk.as_bytes()).unwrap(),
        ] {
            assert!(v.verify_admission(&s.sign(&c), &e).is_ok());
        }
    }
}
