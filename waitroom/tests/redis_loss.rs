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
}

impl PrivateRedis {
    fn start() -> Self {
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
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_client_reconnects_after_redis_restarts_and_finds_the_queue_gone() {
    let mut redis = PrivateRedis::start();
    let room = Waitroom::connect(&RedisConfig {
        url: format!("redis://127.0.0.1:{}", redis.port),
        prefix: "loss".into(),
    })
    .await
    .unwrap();
    let event = EventSlug::parse("lost-gig").unwrap();
    let settings = AdmissionSettings {
        mode: Mode::On,
        rate_per_minute: 60,
        max_active: 10,
        admission_ttl_seconds: 900,
        opens_at: None,
    };
    room.apply_settings(&event, &settings).await.unwrap();
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
