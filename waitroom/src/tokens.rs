//! Queue and admission tokens: JWTs of two kinds, each read with exactly one algorithm.
//!
//! Admission tokens are EdDSA-signed: signing needs the private key (gateway only);
//! verifying needs only public keys, so `orders` can check an admission without any
//! secret. Queue tokens are issued and read only by gateways, so they carry an HMAC
//! (`HS256`) under a key the gateways share ([`QueueKeys`]): a MAC costs a microsecond
//! where an Ed25519 signature cost a quarter of a join's CPU (PERFORMANCE, edge).
//!
//! Each token names its key in the header's `kid`, and each reader holds every key of
//! its kind still in rotation. [`TokenVerifier`] accepts only `EdDSA`, [`QueueKeys`]
//! only `HS256`, each only its own key ids (the gateway refuses to start when the two
//! share one), so no token of one kind verifies as the other, and a token claiming
//! `none`, or `HS256` keyed with a public key (the classic confusion), is refused
//! before any key is consulted.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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
    /// The head of the queue the gateway saw when the place was taken, so the waiting
    /// page shows progress since this visitor joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
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

    /// The key ids this verifier knows.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
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
        decode(token, event, Algorithm::EdDSA, &self.keys)
    }
}

/// Reads a token of algorithm `alg` only, under one of `keys` (by `kid`), for `event`.
fn decode<T: DeserializeOwned>(
    token: &str,
    event: &EventSlug,
    alg: Algorithm,
    keys: &HashMap<String, DecodingKey>,
) -> Result<T, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != alg {
        return Err(TokenError::UnknownKey);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.get(kid))
        .ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(alg);
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

/// The fewest bytes a queue-token key may have: HS256's own output size.
pub const QUEUE_KEY_MIN_BYTES: usize = 32;

/// The gateways' shared keys for queue tokens (`HS256`): the first signs, all verify,
/// so a new key is rolled out by adding it second on every gateway, then moving it
/// first, then dropping the old one once its tokens have expired.
#[derive(Clone)]
pub struct QueueKeys {
    kid: String,
    /// The signing key's MAC, keyed once; each token starts from a clone of it.
    mac: Hmac<Sha256>,
    /// The encoded header, the same for every token of the signing key.
    header: String,
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for QueueKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueKeys")
            .field("kid", &self.kid)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl QueueKeys {
    /// Signs with `secret` under `kid` (and verifies with it).
    pub fn new(kid: &str, secret: &[u8]) -> Result<Self, crate::Error> {
        let mac = Self::check(kid, secret)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let header = serde_json::to_vec(&header)
            .map_err(|e| crate::Error::Config(format!("queue key {kid}: {e}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            mac,
            header: URL_SAFE_NO_PAD.encode(header),
            keys: HashMap::from([(kid.to_owned(), DecodingKey::from_secret(secret))]),
        })
    }

    /// Also accepts tokens made with `secret` under `kid` (a key being rotated in or out).
    pub fn accepting(mut self, kid: &str, secret: &[u8]) -> Result<Self, crate::Error> {
        Self::check(kid, secret)?;
        if self.keys.contains_key(kid) {
            return Err(crate::Error::Config(format!("queue key {kid} given twice")));
        }
        self.keys
            .insert(kid.to_owned(), DecodingKey::from_secret(secret));
        Ok(self)
    }

    fn check(kid: &str, secret: &[u8]) -> Result<Hmac<Sha256>, crate::Error> {
        if kid.is_empty() || secret.len() < QUEUE_KEY_MIN_BYTES {
            return Err(crate::Error::Config(format!(
                "queue key {kid:?}: a key id and at least {QUEUE_KEY_MIN_BYTES} bytes of secret"
            )));
        }
        Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|e| crate::Error::Config(format!("queue key {kid}: {e}")))
    }

    /// Parses `kid=path,kid=path` as used by `FLOODGATE_QUEUE_KEYS`: the first signs.
    /// Each file holds the secret (surrounding whitespace is not part of it).
    pub fn from_spec(spec: &str) -> Result<Self, crate::Error> {
        let mut keys: Option<Self> = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, path) = part
                .split_once('=')
                .ok_or_else(|| crate::Error::Config(format!("expected kid=path, got {part:?}")))?;
            let secret = std::fs::read(path)
                .map_err(|e| crate::Error::Config(format!("reading {path}: {e}")))?;
            let secret = secret.trim_ascii();
            keys = Some(match keys {
                None => Self::new(kid, secret)?,
                Some(k) => k.accepting(kid, secret)?,
            });
        }
        keys.ok_or_else(|| crate::Error::Config("no queue-token keys".into()))
    }

    /// The key ids accepted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn sign(&self, claims: &QueueClaims) -> String {
        // Our own struct of strings and numbers: serialising cannot fail.
        let payload = serde_json::to_vec(claims).expect("claims serialise to JSON");
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 50);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// A queue token of this event with a place, made with one of these keys.
    pub fn verify(&self, token: &str, event: &EventSlug) -> Result<QueueClaims, TokenError> {
        let c: QueueClaims = decode(token, event, Algorithm::HS256, &self.keys)?;
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
}

/// A fresh random queue-token secret (hex, 64 characters), for tests and set-up.
pub fn generate_queue_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
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
            from: None,
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

    fn place(event: &EventSlug, exp_in: i64) -> QueueClaims {
        let now = chrono::Utc::now().timestamp();
        QueueClaims {
            kind: TokenKind::Queue,
            aud: audience(event),
            evt: event.clone(),
            sub: "v1".into(),
            seq: Some(7),
            pq: None,
            from: None,
            iat: now,
            exp: now + exp_in,
        }
    }

    fn queue_keys(kid: &str) -> QueueKeys {
        QueueKeys::new(kid, generate_queue_secret().as_bytes()).unwrap()
    }

    /// The MAC is built by hand: what it makes must be a standard HS256 JWS that
    /// `jsonwebtoken` reads with the same secret, and no other.
    #[test]
    fn queue_tokens_are_standard_hs256_jws() {
        let secret = generate_queue_secret();
        let keys = QueueKeys::new("q1", secret.as_bytes()).unwrap();
        let e = ev("gig");
        let claims = place(&e, 300);
        let token = keys.sign(&claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some("q1"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience(&e)]);
        let key = DecodingKey::from_secret(secret.as_bytes());
        let read = jsonwebtoken::decode::<QueueClaims>(&token, &key, &validation).unwrap();
        assert_eq!(read.claims, claims);
        assert_eq!(keys.verify(&token, &e).unwrap(), claims);
        let other = DecodingKey::from_secret(generate_queue_secret().as_bytes());
        assert!(jsonwebtoken::decode::<QueueClaims>(&token, &other, &validation).is_err());
    }

    #[test]
    fn queue_tokens_tampered_expired_foreign_or_of_another_key_are_refused() {
        let keys = queue_keys("q1");
        let e = ev("gig");
        let token = keys.sign(&place(&e, 300));
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["seq"] = 0.into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert_eq!(keys.verify(&forged, &e), Err(TokenError::BadSignature));
        assert_eq!(
            keys.verify(&keys.sign(&place(&e, -60)), &e),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify(&token, &ev("other")),
            Err(TokenError::WrongEvent)
        );
        // Same key id, another secret: a gateway of another deployment.
        assert_eq!(
            keys.verify(&queue_keys("q1").sign(&place(&e, 300)), &e),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.verify(&queue_keys("q2").sign(&place(&e, 300)), &e),
            Err(TokenError::UnknownKey)
        );
        let mut no_place = place(&e, 300);
        no_place.seq = None;
        assert_eq!(
            keys.verify(&keys.sign(&no_place), &e),
            Err(TokenError::Malformed)
        );
        assert!(
            QueueKeys::new("q", b"short").is_err(),
            "a short secret is refused"
        );
    }

    /// Neither kind verifies as the other, whichever algorithm, key id or key a
    /// forger picks: queue tokens are read as HS256 only, admissions as EdDSA only.
    #[test]
    fn a_token_of_one_kind_never_verifies_as_the_other() {
        let (signer, verifier) = pair("k1");
        let keys = queue_keys("q1");
        let e = ev("gig");
        // A genuine queue token presented as an admission, and the reverse.
        let queue = keys.sign(&place(&e, 300));
        assert_eq!(
            verifier.verify_admission(&queue, &e),
            Err(TokenError::UnknownKey)
        );
        let admitted = signer.sign(&admission(&e, 300));
        assert_eq!(keys.verify(&admitted, &e), Err(TokenError::UnknownKey));
        // An EdDSA-signed queue token (as gateways made before), even under the MAC's kid.
        let eddsa_queue = TokenSigner::from_pem("q1", generate_keypair().0.as_bytes())
            .unwrap()
            .sign(&place(&e, 300));
        assert_eq!(keys.verify(&eddsa_queue, &e), Err(TokenError::UnknownKey));
        assert_eq!(
            keys.verify(&signer.sign(&place(&e, 300)), &e),
            Err(TokenError::UnknownKey)
        );
        // An admission claim under an HS256 header with the queue key's id and secret
        // (a gateway's own key misused): still not an admission.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(serde_json::to_vec(&admission(&e, 300)).unwrap());
        let header = b64.encode(r#"{"alg":"HS256","typ":"JWT","kid":"q1"}"#);
        let mut mac = keys.mac.clone();
        mac.update(format!("{header}.{body}").as_bytes());
        let sig = b64.encode(mac.finalize().into_bytes());
        let hs_admission = format!("{header}.{body}.{sig}");
        assert_eq!(
            verifier.verify_admission(&hs_admission, &e),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(keys.verify(&hs_admission, &e), Err(TokenError::WrongKind));
        // alg none under the queue key's id.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","kid":"q1"}"#),
            b64.encode(serde_json::to_vec(&place(&e, 300)).unwrap())
        );
        assert_ne!(keys.verify(&none, &e).map(|_| ()), Ok(()));
    }

    #[test]
    fn queue_key_rotation_keeps_old_tokens_valid() {
        let old = generate_queue_secret();
        let new = generate_queue_secret();
        let before = QueueKeys::new("old", old.as_bytes()).unwrap();
        let during = QueueKeys::new("new", new.as_bytes())
            .unwrap()
            .accepting("old", old.as_bytes())
            .unwrap();
        let e = ev("gig");
        let c = place(&e, 300);
        assert!(during.verify(&before.sign(&c), &e).is_ok());
        assert!(during.verify(&during.sign(&c), &e).is_ok());
        assert_eq!(
            before.verify(&during.sign(&c), &e),
            Err(TokenError::UnknownKey)
        );
        assert!(
            during.accepting("old", old.as_bytes()).is_err(),
            "a kid twice"
        );
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
