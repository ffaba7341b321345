//! For other crates' tests: a waiting room on the local Redis under a key prefix of its
//! own, so tests run in parallel without seeing each other's queues.

use crate::config::RedisConfig;
use crate::queue::Waitroom;

/// A connection to the local Redis ([`RedisConfig::default`]'s) under a fresh random
/// prefix; the test removes its keys with [`Waitroom::purge`].
pub async fn fresh_room() -> Waitroom {
    Waitroom::connect(&RedisConfig {
        prefix: format!("t-{}", uuid::Uuid::new_v4().simple()),
        ..RedisConfig::default()
    })
    .await
    .expect("the local Redis is reachable")
}
