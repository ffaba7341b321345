//! Queue and admission tokens (`waitroom::tokens`) on arbitrary input.
//!
//! 1. Any string presented as a token is refused without a panic. None can be accepted:
//!    the only keys that verify (an Ed25519 key for admissions, an HMAC key for queue
//!    tokens) are held here and never sign fuzzer input as a token, so acceptance would
//!    mean a forgery (an `alg` confusion, a header trick).
//! 2. Any payload, correctly signed or MACed with those keys, either verifies into
//!    claims that hold what callers rely on (right kind, right event and audience, not
//!    expired, a queue place) or is refused — never a panic. This is the parsing that
//!    runs after the signature check, on bytes only the gateway could have produced.
//! 3. A token of one kind never verifies as the other, whatever its header says.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use waitroom::EventSlug;
use waitroom::tokens::{QueueKeys, TokenKind, TokenVerifier, audience};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The queue-token secret, fixed for the same reason.
const QUEUE_SECRET: [u8; 32] = [9; 32];

struct Keys {
    signing: ed25519_dalek::SigningKey,
    verifier: TokenVerifier,
    queue: QueueKeys,
    event: EventSlug,
}

/// A fixed key, so a crash reproduces from its input alone.
static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("encode public key");
    Keys {
        signing,
        verifier: TokenVerifier::new()
            .with_key("k", public.as_bytes())
            .expect("verifier"),
        queue: QueueKeys::new("q", &QUEUE_SECRET).expect("queue keys"),
        event: EventSlug::parse("gig").expect("slug"),
    }
});

fn signed(header: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let signature = KEYS.signing.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(signature.to_bytes()))
}

fn maced(header: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(&QUEUE_SECRET).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let now = chrono::Utc::now().timestamp();

    if let Ok(presented) = std::str::from_utf8(data) {
        assert!(
            keys.queue.verify(presented, &keys.event).is_err(),
            "an unsigned string was accepted as a queue token: {presented:?}"
        );
        assert!(
            keys.verifier
                .verify_admission(presented, &keys.event)
                .is_err(),
            "an unsigned string was accepted as an admission token: {presented:?}"
        );
    }

    let token = signed(r#"{"alg":"EdDSA","typ":"JWT","kid":"k"}"#, data);
    assert!(
        keys.queue.verify(&token, &keys.event).is_err(),
        "an EdDSA token was accepted as a queue token"
    );
    if let Ok(c) = keys.verifier.verify_admission(&token, &keys.event) {
        assert_eq!(c.kind, TokenKind::Admission);
        assert_eq!(c.evt, keys.event);
        assert_eq!(c.aud, audience(&keys.event));
        assert!(c.exp >= now - 3, "expired admission accepted: {c:?}");
    }
    let queue_token = maced(r#"{"alg":"HS256","typ":"JWT","kid":"q"}"#, data);
    assert!(
        keys.verifier
            .verify_admission(&queue_token, &keys.event)
            .is_err(),
        "an HS256 token was accepted as an admission"
    );
    if let Ok(c) = keys.queue.verify(&queue_token, &keys.event) {
        assert_eq!(c.kind, TokenKind::Queue);
        assert_eq!(c.evt, keys.event);
        assert_eq!(c.aud, audience(&keys.event));
        assert!(c.exp >= now - 3, "expired queue token accepted: {c:?}");
        assert!(c.seq.is_some() || c.pq.is_some(), "no place: {c:?}");
    }
    // The same payload under a header naming another algorithm, or no key, or the
    // other kind's key, is refused even though the signature bytes are genuine.
    for header in [
        r#"{"alg":"none","kid":"k"}"#,
        r#"{"alg":"HS256","kid":"k"}"#,
        r#"{"alg":"EdDSA"}"#,
        r#"{"alg":"EdDSA","kid":"other"}"#,
        r#"{"alg":"EdDSA","kid":"q"}"#,
        r#"{"alg":"none","kid":"q"}"#,
    ] {
        let token = signed(header, data);
        assert!(keys.queue.verify(&token, &keys.event).is_err());
        assert!(keys.verifier.verify_admission(&token, &keys.event).is_err());
    }
    for header in [
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"k"}"#,
        r#"{"alg":"HS384","kid":"q"}"#,
        r#"{"alg":"EdDSA","kid":"q"}"#,
    ] {
        let token = maced(header, data);
        assert!(keys.queue.verify(&token, &keys.event).is_err());
        assert!(keys.verifier.verify_admission(&token, &keys.event).is_err());
    }
});
