//! Redis restarted without persistence, under a live client: the waiting room must
//! reconnect by itself (no process restart) and see the queue as gone rather than
//! invent one. Runs its own throw-away `redis-server` on a free loopback port, since
//! the shared one must not be restarted under other tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::{Joined, Waitroom};
use waitroom::settings::{AdmissionSettings, Mode};

struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    /// A config file to start from (its port, bind and dir are overridden).
    conf: Option<std::path::PathBuf>,
}

impl PrivateRedis {
    fn start() -> Self {
        Self::start_with(None)
    }

    fn start_with(conf: Option<std::path::PathBuf>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("fg-redis-loss-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            port,
            child: None,
            dir,
            conf,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.conf {
            Some(conf) => cmd.arg(conf),
            None => cmd.args(["--save", "", "--appendonly", "no"]),
        };
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (infra/setup)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: everything in memory is gone.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl PrivateRedis {
    async fn room(&self, prefix: &str) -> Waitroom {
        Waitroom::connect(&RedisConfig {
            url: format!("redis://127.0.0.1:{}", self.port),
            prefix: prefix.into(),
            ..RedisConfig::default()
        })
        .await
        .unwrap()
    }
}

impl PrivateRedis {
    /// A connection under `prefix` and its event `slug`, with `settings` applied.
    async fn event(
        &self,
        prefix: &str,
        slug: &str,
        settings: &AdmissionSettings,
    ) -> (Waitroom, EventSlug) {
        let room = self.room(prefix).await;
        let event = EventSlug::parse(slug).unwrap();
        room.apply_settings(&event, settings).await.unwrap();
        (room, event)
    }
}

/// Steps `admitter` (within ten seconds, failing with `what`) until the first `head`
/// places of `event` are admitted.
async fn admit_through(
    admitter: &waitroom::admission::Admitter,
    room: &Waitroom,
    event: &EventSlug,
    head: u64,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while room.snapshot(event).await.unwrap().head < head {
        assert!(Instant::now() < deadline, "{what}");
        admitter.step(event).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on(rate_per_minute: u32, max_active: u32) -> AdmissionSettings {
    AdmissionSettings {
        mode: Mode::On,
        rate_per_minute,
        max_active,
        admission_ttl_seconds: 900,
        opens_at: None,
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_client_reconnects_after_redis_restarts_and_finds_the_queue_gone() {
    let mut redis = PrivateRedis::start();
    let (room, event) = redis.event("loss", "lost-gig", &on(60, 10)).await;
    assert!(matches!(
        room.join(&event, "v1").await.unwrap(),
        Joined::Queued { seq: 1 }
    ));

    redis.crash();
    // While Redis is down, calls fail within the command timeout instead of hanging.
    let started = Instant::now();
    let down = tokio::time::timeout(Duration::from_secs(10), room.ping()).await;
    assert!(
        matches!(down, Ok(Err(_))),
        "a call to a dead Redis must fail, not hang: {down:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), room.ping()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not reconnect within 15 s of Redis coming back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The state is gone, and the room says so rather than handing out seq 1 again.
    assert_eq!(room.settings(&event).await.unwrap(), None);
    assert!(room.join(&event, "v2").await.is_err());
}

/// The mark taken before the loss puts the counters back so that nobody who waited is
/// overtaken or shares a place: admitted-but-unclaimed places are admitted again, and
/// newcomers queue behind every place that was handed out.
#[tokio::test]
async fn a_lost_queue_is_restored_from_its_mark_paused_and_behind_every_old_place() {
    use waitroom::admission::Admitter;
    use waitroom::queue::Claim;

    let mut redis = PrivateRedis::start();
    let on = on(60_000, 3);
    let (room, event) = redis.event("mark", "marked-gig", &on).await;
    for v in 1..=5 {
        assert!(matches!(
            room.join(&event, &format!("v{v}")).await.unwrap(),
            Joined::Queued { seq } if seq == v
        ));
    }
    let admitter = Admitter::new(room.clone(), Duration::from_secs(5));
    admit_through(&admitter, &room, &event, 3, "admitter did not admit 3").await;
    for seq in [1, 2] {
        assert!(matches!(
            room.claim(&event, seq, 600).await.unwrap(),
            Claim::Granted { .. }
        ));
    }
    // 3 was admitted but has not collected its admission yet.
    let mark = room.mark(&event).await.unwrap().unwrap();
    assert_eq!((mark.admitted_through, mark.tail), (2, 5));

    redis.crash();
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(room.mark(&event).await, Ok(None)) {
        assert!(Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paused = AdmissionSettings {
        mode: Mode::Paused,
        ..on.clone()
    };
    assert!(
        room.restore(&event, &paused, "Marked gig", 2, 8)
            .await
            .unwrap()
    );
    // A second restorer (another console) changes nothing.
    assert!(
        !room
            .restore(&event, &paused, "Marked gig", 0, 0)
            .await
            .unwrap()
    );
    let snap = room.snapshot(&event).await.unwrap();
    assert_eq!(
        (snap.settings.mode, snap.head, snap.tail),
        (Mode::Paused, 2, 8)
    );
    // A newcomer queues behind every old place, paused or not.
    assert!(matches!(
        room.join(&event, "late").await.unwrap(),
        Joined::Queued { seq: 9 }
    ));
    // Resumed, the admitter hands out 3 again (its holder never got a token).
    room.apply_settings(&event, &on).await.unwrap();
    admit_through(
        &admitter,
        &room,
        &event,
        3,
        "admitter did not admit 3 again",
    )
    .await;
    assert!(matches!(
        room.claim(&event, 3, 600).await.unwrap(),
        Claim::Granted { .. }
    ));
}

/// The production config shipped in infra/redis keeps the queue across a crash: a
/// join more than a second old is still there after SIGKILL and a restart.
#[tokio::test]
async fn the_production_redis_config_keeps_the_queue_across_a_crash() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/redis/production.conf")
        .canonicalize()
        .unwrap();
    let mut redis = PrivateRedis::start_with(Some(conf));
    let (room, event) = redis.event("aof", "kept-gig", &on(60, 10)).await;
    for v in 1..=3 {
        room.join(&event, &format!("v{v}")).await.unwrap();
    }
    // appendfsync everysec: what is older than a second is on disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.crash();
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    let snap = loop {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), room.snapshot(&event)).await
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no reconnect after the crash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((snap.settings.mode, snap.tail), (Mode::On, 3));
    assert!(matches!(
        room.join(&event, "v4").await.unwrap(),
        Joined::Queued { seq: 4 }
    ));
}
