//! Shared plumbing for the waitroom integration tests: every test gets its own random key
//! prefix and event slug on the real Redis, a guard that deletes those keys even when the
//! test panics, bounded polling instead of sleeps, and an admitter running in a task.

use std::future::Future;
use std::time::Duration;

use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::config::Config;
use fred::types::{Builder, CustomCommand};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use waitroom::EventSlug;
use waitroom::admission::Admitter;
use waitroom::config::RedisConfig;
use waitroom::keys;
use waitroom::queue::{Snapshot, Waitroom};
use waitroom::settings::{AdmissionSettings, Mode};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Settings with the given mode, rate and cap, a 15 minute admission TTL and no opening time.
pub fn settings(mode: Mode, rate_per_minute: u32, max_active: u32) -> AdmissionSettings {
    AdmissionSettings {
        mode,
        rate_per_minute,
        max_active,
        admission_ttl_seconds: 900,
        opens_at: None,
    }
}

/// A pre-queue opening `ms` milliseconds from now (in whole milliseconds, as Redis
/// stores it), otherwise as [`settings`] with room for everyone.
pub fn prequeue_opening_in(ms: i64) -> AdmissionSettings {
    let opens_at =
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() + ms)
            .expect("a valid instant");
    AdmissionSettings {
        opens_at: Some(opens_at),
        ..settings(Mode::Prequeue, 600, 100_000)
    }
}

/// One test's private corner of Redis: a random prefix, one event, and its cleanup.
pub struct Scope {
    pub room: Waitroom,
    pub event: EventSlug,
    prefix: String,
    cleaned: bool,
}

impl Scope {
    /// A fresh prefix and event, with no settings applied yet.
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t-{id}");
        let event = EventSlug::parse(&format!("ev-{}", &id[..12])).expect("valid slug");
        let room = Self::connect(&prefix).await;
        Self {
            room,
            event,
            prefix,
            cleaned: false,
        }
    }

    /// A fresh scope whose event already has these settings.
    pub async fn with(s: &AdmissionSettings) -> Self {
        let scope = Self::new().await;
        scope.apply(s).await;
        scope
    }

    /// Another, independent connection on the same prefix (a second process, say).
    pub async fn second_connection(&self) -> Waitroom {
        Self::connect(&self.prefix).await
    }

    /// A connection on the same prefix that waits for `replicas` Redis replicas after
    /// each join and claim (at most `timeout`).
    pub async fn waiting_for_replicas(&self, replicas: u32, timeout: Duration) -> Waitroom {
        Waitroom::connect(&RedisConfig {
            url: redis_url(),
            prefix: self.prefix.clone(),
            wait_replicas: replicas,
            wait_timeout: timeout,
            ..RedisConfig::default()
        })
        .await
        .expect("connect")
    }

    async fn connect(prefix: &str) -> Waitroom {
        Waitroom::connect(&RedisConfig {
            url: redis_url(),
            prefix: prefix.to_owned(),
            ..RedisConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {}: {e}", redis_url()))
    }

    pub async fn apply(&self, s: &AdmissionSettings) {
        self.room
            .apply_settings(&self.event, s)
            .await
            .expect("apply settings");
    }

    pub async fn snapshot(&self) -> Snapshot {
        self.room.snapshot(&self.event).await.expect("snapshot")
    }

    /// The event's lottery record, if a pre-queue has committed one.
    pub async fn lottery(&self) -> Option<waitroom::lottery::LotteryRecord> {
        let record = self.room.lottery_record(&self.event).await;
        record.expect("lottery record")
    }

    /// The event's settings as stored, if any.
    pub async fn settings(&self) -> Option<AdmissionSettings> {
        self.room.settings(&self.event).await.expect("settings")
    }

    /// Claims the admission of place `seq`, to live `ttl_seconds`.
    pub async fn claim(&self, seq: u64, ttl_seconds: u32) -> waitroom::queue::Claim {
        let claimed = self.room.claim(&self.event, seq, ttl_seconds).await;
        claimed.unwrap_or_else(|e| panic!("claim {seq}: {e}"))
    }

    /// Joins `n` visitors one after the other and returns their sequence numbers.
    pub async fn join_many(&self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(n);
        for i in 0..n {
            match self.room.join(&self.event, &format!("visitor-{i}")).await {
                Ok(waitroom::queue::Joined::Queued { seq }) => seqs.push(seq),
                other => panic!("join {i}: expected Queued, got {other:?}"),
            }
        }
        seqs
    }

    /// Every key this test touched.
    fn all_keys(&self) -> Vec<String> {
        let mut k = self.room.keys(&self.event).all();
        k.push(keys::registry(&self.prefix));
        k
    }

    /// Deletes the test's keys through the public API and checks nothing with the
    /// prefix is left behind (so `purge` really covers every key the crate writes).
    pub async fn cleanup(mut self) {
        self.room.purge(&self.event).await.expect("purge");
        let _: i64 = self
            .room
            .client()
            .del(keys::registry(&self.prefix))
            .await
            .expect("del registry");
        let left: Vec<String> = self
            .room
            .client()
            .custom(
                CustomCommand::new_static("KEYS", None::<u16>, false),
                vec![format!("{}:*", self.prefix)],
            )
            .await
            .expect("KEYS");
        // If something is left, the assertion fails and `Drop` sweeps the prefix.
        self.cleaned = left.is_empty();
        assert!(left.is_empty(), "purge left keys behind: {left:?}");
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // The test failed before its own cleanup. Delete from a separate thread and
        // runtime: we may be unwinding inside the test's runtime and cannot block on it.
        // A second pass catches a write from an admitter task that was mid-step.
        let keys = self.all_keys();
        let pattern = format!("{}:*", self.prefix);
        let url = redis_url();
        platform::blocking::block_on_own_thread(async move {
            let Ok(config) = Config::from_url(&url) else {
                return;
            };
            let Ok(client) = Builder::from_config(config).build() else {
                return;
            };
            if client.init().await.is_err() {
                return;
            }
            for _ in 0..2 {
                // The known keys, and anything else under the prefix in case the
                // crate's own key list is what broke.
                let mut doomed = keys.clone();
                let found: Result<Vec<String>, _> = client
                    .custom(
                        CustomCommand::new_static("KEYS", None::<u16>, false),
                        vec![pattern.clone()],
                    )
                    .await;
                doomed.extend(found.unwrap_or_default());
                let _: Result<i64, _> = client.del(doomed).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let _ = client.quit().await;
        });
    }
}

/// Polls `probe` every 20 ms until it yields a value; panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let still = format!("timed out after {timeout:?} waiting for {what}");
    let every = Duration::from_millis(20);
    platform::poll::eventually(timeout, every, async || probe().await.ok_or(&still)).await
}

/// An admitter running `run(tick, shutdown)` in a task. Dropping it aborts the task.
pub struct RunningAdmitter {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningAdmitter {
    pub fn spawn(room: Waitroom, lease: Duration, tick: Duration) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let admitter = std::sync::Arc::new(Admitter::new(room, lease));
        let task = tokio::spawn(async move {
            admitter
                .run(tick, async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for the loop to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("admitter did not stop within 5 s of shutdown")
                .expect("admitter task panicked");
        }
    }
}

impl Drop for RunningAdmitter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
