//! The buyer's request bodies in `orders`: the hold (JSON from the API, a form from the
//! event page) and the buyer fields parsed from it. Any bytes are refused or parsed
//! without a panic, and whatever parses keeps the promises the rest of the crate relies
//! on instead of re-checking (`Email`: at most 254 bytes, a dotted domain, no
//! whitespace or control characters;
//! `BuyerName`: 1 to 120 characters, no control characters). Buyer text goes back out
//! in HTML through `platform::html::escape` (what every `.html` template prints with),
//! which must leave nothing that opens markup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orders::app::HoldBody;
use orders::buyers::{BuyerName, Email};
use platform::html::escape;

/// Escaped text has no markup characters left, and unescapes to what went in.
fn check_escape(text: &str) {
    let escaped = escape(text);
    assert!(!escaped.contains(['<', '>', '"', '\'']), "{escaped:?}");
    let back = escaped
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    assert_eq!(back, text);
}

fn check(body: &HoldBody) {
    if let Ok(email) = Email::parse(&body.email) {
        let e = email.as_str();
        assert!(e.len() <= 254, "{e:?}");
        let (local, domain) = e.rsplit_once('@').expect("an @");
        assert!(!local.is_empty() && domain.contains('.'), "{e:?}");
        assert!(
            !e.chars().any(|c| c.is_control() || c.is_whitespace()),
            "{e:?}"
        );
        assert_eq!(e, e.trim());
    }
    if let Ok(name) = BuyerName::parse(&body.name) {
        let n = name.as_str();
        let count = n.chars().count();
        assert!((1..=120).contains(&count), "{count}");
        assert!(!n.chars().any(char::is_control), "{n:?}");
        assert_eq!(n, n.trim());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<HoldBody>(data) {
        check(&body);
    }
    if let Ok(body) = serde_urlencoded::from_bytes::<HoldBody>(data) {
        check(&body);
    }
    // The parsers on their own, on any text (they see trimmed and untrimmed input).
    if let Ok(text) = std::str::from_utf8(data) {
        let body = HoldBody {
            tier: String::new(),
            quantity: 1,
            email: text.to_owned(),
            name: text.to_owned(),
        };
        check(&body);
        check_escape(text);
    }
});
