//! The buyer's key to their order page, `/orders/{id}?order_token=…`: an HMAC of the
//! order id under a secret orders and fulfilment share, so it needs no storage, cannot
//! be guessed from the id, and fulfilment can put the link in every email it sends
//! about the order (orders checks it).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub fn token(secret: &[u8], order_id: Uuid) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key");
    mac.update(b"floodgate-order-v1:");
    mac.update(order_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}

pub fn matches(secret: &[u8], order_id: Uuid, presented: &str) -> bool {
    token(secret, order_id)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// The order page's address under `public_url` (no trailing slash needed).
pub fn url(public_url: &str, secret: &[u8], order_id: Uuid) -> String {
    page_url(public_url, order_id, "", &token(secret, order_id))
}

/// One of the order's pages — `""` the order itself, `"/receipt"`, `"/calendar.ics"` —
/// opened with `token` (made once by the caller, who may need it again).
pub fn page_url(public_url: &str, order_id: Uuid, page: &str, token: &str) -> String {
    format!(
        "{}/orders/{order_id}{page}?order_token={token}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_order_only() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t = token(b"k".repeat(32).as_slice(), a);
        assert!(matches(b"k".repeat(32).as_slice(), a, &t));
        assert!(!matches(b"k".repeat(32).as_slice(), b, &t));
        assert!(!matches(b"j".repeat(32).as_slice(), a, &t));
        assert!(!matches(b"k".repeat(32).as_slice(), a, &t[..39]));
    }
}
