//! Payment webhooks (`orders::webhooks`): the `Stripe-Signature` header and the body.
//!
//! - Any header and body are judged without a panic, and never accepted: the secret is
//!   ours, and the fuzzer's header was not made with it.
//! - What the provider signs verifies; the same header over any other body, or outside
//!   the tolerance, does not.
//! - Any body that is verified is then parsed as an event without a panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use orders::webhooks::{SignatureError, TOLERANCE_SECONDS, WebhookEvent, sign, verify};

const SECRET: &str = "whsec_fuzz";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: &'a str,
    body: &'a [u8],
    now: i64,
    t: i64,
    flip: usize,
}

fuzz_target!(|input: Input<'_>| {
    let Input {
        header,
        body,
        now,
        t,
        flip,
    } = input;
    assert!(
        verify(SECRET, header, body, now).is_err(),
        "a header not made with the secret was accepted: {header:?}"
    );

    let genuine = sign(SECRET, t, body);
    let delay = now.checked_sub(t).map(i64::unsigned_abs);
    match delay {
        Some(d) if d <= TOLERANCE_SECONDS as u64 => {
            assert_eq!(verify(SECRET, &genuine, body, now), Ok(()));
        }
        _ => assert_eq!(
            verify(SECRET, &genuine, body, now),
            Err(SignatureError::Stale)
        ),
    }
    assert_eq!(verify(SECRET, &genuine, body, t), Ok(()));
    assert!(verify("another secret", &genuine, body, t).is_err());
    if !body.is_empty() {
        let mut changed = body.to_vec();
        changed[flip % body.len()] ^= 0x01;
        assert_eq!(
            verify(SECRET, &genuine, &changed, t),
            Err(SignatureError::Mismatch)
        );
    }
    let _ = serde_json::from_slice::<WebhookEvent>(body);
});
