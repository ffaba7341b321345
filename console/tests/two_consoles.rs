//! Two consoles behind the load balancer: only one exports the events' figures, so a
//! dashboard's sum over both is the queue, not twice the queue.

mod support;

use std::time::Duration;

use fred::interfaces::KeysInterface;

use waitroom::EventSlug;
use waitroom::settings::{AdmissionSettings, Mode};

fn exported(c: &support::TestConsole) -> String {
    let families = c.state.metrics.registry.gather();
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn one_console_of_two_exports_the_event_figures() {
    let first = support::spawn().await;
    let prefix = first.room.prefix().to_owned();
    let second = support::spawn_with(|c| c.redis.prefix = prefix.clone()).await;
    support::seed_event(&first.db, "gig", 2, 1).await;
    let slug = EventSlug::parse("gig").unwrap();
    first
        .room
        .apply_settings(
            &slug,
            &AdmissionSettings {
                mode: Mode::On,
                rate_per_minute: 60,
                max_active: 10,
                admission_ttl_seconds: 600,
                opens_at: None,
            },
        )
        .await
        .unwrap();
    let every = Duration::from_secs(15);
    console::live::export_once(&first.state, "first", every).await;
    console::live::export_once(&second.state, "second", every).await;
    assert!(
        exported(&first).contains("floodgate_queue_max_active{event=\"gig\"} 10"),
        "{}",
        exported(&first)
    );
    assert!(
        !exported(&second).contains("event=\"gig\""),
        "{}",
        exported(&second)
    );
    // The first one's lease lapses (it died, say): the second takes over, and the
    // first, back, finds the lease taken and forgets what it exported.
    let _: i64 = first
        .room
        .client()
        .del(format!("{prefix}:lease:console-metrics-exporter"))
        .await
        .unwrap();
    console::live::export_once(&second.state, "second", every).await;
    console::live::export_once(&first.state, "first", every).await;
    assert!(
        !exported(&first).contains("event=\"gig\""),
        "{}",
        exported(&first)
    );
}
