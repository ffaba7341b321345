//! The console's request bodies: every JSON body an operator call takes and the sign-in
//! and fix forms. Any bytes are refused or decoded without a panic; a new event that
//! parses keeps the limits the schema relies on; admission changes that validate are
//! within bounds.
#![no_main]

use console::admission::AdmissionChange;
use console::pages::LoginForm;
use console::support::{CancelBody, EmailBody, RefundBody, RescheduleBody, TransferBody};
use libfuzzer_sys::fuzz_target;
use orders::buyers::{BuyerName, Email};
use orders::events::NewEventRequest;
use waitroom::settings::{AdmissionSettings, Mode};

fn new_event(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<NewEventRequest>(data) else {
        return;
    };
    let Ok(event) = request.parse() else {
        return;
    };
    assert!(event.ends_at > event.starts_at);
    let title = event.title.chars().count();
    assert!((1..=200).contains(&title));
    assert!((1..=20).contains(&event.tiers.len()));
    for t in &event.tiers {
        assert!((0..=1_000_000).contains(&t.capacity));
        assert!((1..=100).contains(&t.max_per_order));
        assert!((0..=100_000_000).contains(&t.price_cents));
        assert_eq!(t.currency.len(), 3);
        assert!(!t.code.is_empty() && t.code.len() <= 32);
    }
    assert!(event.admission.validate().is_ok());
    assert!((60..=3600).contains(&event.hold_ttl_seconds));
}

fn admission_change(data: &[u8]) {
    let Ok(change) = serde_json::from_slice::<AdmissionChange>(data) else {
        return;
    };
    // Applied over the defaults, as the handler applies it over the live settings.
    let before = AdmissionSettings::default();
    let after = AdmissionSettings {
        mode: change.mode.unwrap_or(before.mode),
        rate_per_minute: change.rate_per_minute.unwrap_or(before.rate_per_minute),
        max_active: change.max_active.unwrap_or(before.max_active),
        admission_ttl_seconds: change
            .admission_ttl_seconds
            .unwrap_or(before.admission_ttl_seconds),
        opens_at: change.opens_at.or(before.opens_at),
    };
    if after.validate().is_ok() {
        assert!(after.rate_per_minute <= 1_000_000);
        assert!((1..=1_000_000).contains(&after.max_active));
        assert!((30..=86_400).contains(&after.admission_ttl_seconds));
        assert!(after.mode != Mode::Prequeue || after.opens_at.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    new_event(data);
    admission_change(data);
    let _ = serde_json::from_slice::<RefundBody>(data);
    let _ = serde_json::from_slice::<RescheduleBody>(data);
    let _ = serde_json::from_slice::<CancelBody>(data);
    if let Ok(b) = serde_json::from_slice::<EmailBody>(data) {
        let _ = Email::parse(&b.email);
    }
    if let Ok(b) = serde_json::from_slice::<TransferBody>(data) {
        let _ = Email::parse(&b.email);
        let _ = BuyerName::parse(&b.name);
    }
    let _ = serde_urlencoded::from_bytes::<LoginForm>(data);
    // The fix forms are read as name → value pairs, then field by field.
    let _ = serde_urlencoded::from_bytes::<std::collections::HashMap<String, String>>(data);
});
