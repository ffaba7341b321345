//! The real gateway binary for tests: its own Redis prefix, keys, ports and an upstream
//! the test provides, started as the stack starts it, healthy before the test goes on,
//! and killed (its key files removed) when the test drops it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;
use waitroom::settings::AdmissionSettings;
use waitroom::tokens::{TokenSigner, generate_keypair};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A running gateway in front of one upstream, with one event (`gig`).
pub struct Gateway {
    child: Child,
    pub base: String,
    /// The gateway's metrics listener, apart from the buyers' port.
    pub metrics_base: String,
    /// This test's Redis key prefix.
    pub prefix: String,
    pub room: Waitroom,
    pub event: EventSlug,
    /// A signer with the gateway's own key: tokens valid but for the one thing under
    /// test (expired, another event, another kind), as no attacker can make them.
    pub signer: TokenSigner,
    /// The gateway's public key as PEM, which any attacker may know.
    pub public_pem: String,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a test wants its gateway.
pub struct Setup<'a> {
    pub settings: AdmissionSettings,
    /// The event's title in the queue (the waiting page shows it), if any.
    pub title: Option<&'a str>,
    /// Every upstream (orders, console, fulfilment) is this address.
    pub upstream: &'a str,
    /// Extra environment, e.g. a lower rate limit for the test at hand.
    pub env: &'a [(&'a str, &'a str)],
}

impl Gateway {
    pub async fn start(setup: Setup<'_>) -> Self {
        let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
        let redis = RedisConfig {
            url: REDIS_URL.into(),
            prefix: prefix.clone(),
            ..RedisConfig::default()
        };
        let room = Waitroom::connect(&redis).await.unwrap();
        let event = EventSlug::parse("gig").unwrap();
        room.apply_settings(&event, &setup.settings).await.unwrap();
        if let Some(title) = setup.title {
            room.set_title(&event, title).await.unwrap();
        }

        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let (sk, pk) = generate_keypair();
        std::fs::write(dir.join("k.key.pem"), &sk).unwrap();
        std::fs::write(dir.join("k.pub.pem"), &pk).unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let child = command(&prefix, &dir, port, metrics_port, setup.upstream, setup.env)
            .spawn()
            .expect("start gateway");
        let gateway = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            metrics_base: format!("http://127.0.0.1:{metrics_port}"),
            prefix,
            room,
            event,
            signer: TokenSigner::from_pem("k", sk.as_bytes()).unwrap(),
            public_pem: pk,
            dir,
        };
        healthy(&gateway.base).await;
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A second gateway process on the same queue and keys: another replica behind the
    /// balancer.
    pub async fn replica(&self, upstream: &str) -> Replica {
        let port = free_port();
        let child = command(&self.prefix, &self.dir, port, free_port(), upstream, &[])
            .spawn()
            .expect("start the second gateway");
        let base = format!("http://127.0.0.1:{port}");
        healthy(&base).await;
        Replica { child, base }
    }

    /// Removes the test's keys from Redis.
    pub async fn cleanup(&self) {
        self.room.purge(&self.event).await.unwrap();
    }
}

/// Another gateway process of a test, killed when dropped (its keys are the first's).
pub struct Replica {
    child: Child,
    pub base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway as the stack starts it: its ports, the test's Redis prefix and keys, every
/// upstream at one address, the local rate allow-list.
fn command(
    prefix: &str,
    dir: &std::path::Path,
    port: u16,
    metrics_port: u16,
    upstream: &str,
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env("FLOODGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "FLOODGATE_GATEWAY_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("REDIS_URL", REDIS_URL)
        .env("FLOODGATE_REDIS_PREFIX", prefix)
        .env("FLOODGATE_SIGNING_KEY", dir.join("k.key.pem"))
        .env("FLOODGATE_SIGNING_KID", "k")
        .env(
            "FLOODGATE_VERIFY_KEYS",
            format!("k={}", dir.join("k.pub.pem").display()),
        )
        .env("FLOODGATE_UPSTREAM_ORDERS", upstream)
        .env("FLOODGATE_UPSTREAM_CONSOLE", upstream)
        .env("FLOODGATE_UPSTREAM_FULFILMENT", upstream)
        .env("FLOODGATE_RATE_ALLOWLIST", "127.0.0.0/8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits (up to 20 s) until the gateway at `base` answers `/healthz`.
async fn healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(format!("{base}/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "gateway {base} did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
