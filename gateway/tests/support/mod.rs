//! The real gateway binary for tests: its own Redis prefix, keys, ports and an upstream
//! the test provides, started as the stack starts it, healthy before the test goes on,
//! and killed (its key files removed) when the test drops it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform::poll::eventually;
use reqwest::redirect::Policy;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use waitroom::EventSlug;
use waitroom::admission::Admitter;
use waitroom::queue::Waitroom;
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::tokens::{
    AdmissionClaims, QueueClaims, QueueKeys, TokenSigner, audience, generate_keypair,
    generate_queue_secret,
};

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
    /// The gateway's queue-token key: queue tokens made with it are valid but for the
    /// one thing under test.
    pub queue_keys: QueueKeys,
    /// The gateway's public key as PEM, which any attacker may know.
    pub public_pem: String,
    /// The test's client of the gateway (see [`client`]).
    pub http: reqwest::Client,
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
        let room = waitroom::testing::fresh_room().await;
        let prefix = room.prefix().to_owned();
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
        let queue_secret = generate_queue_secret();
        std::fs::write(dir.join("q.key"), &queue_secret).unwrap();
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
            queue_keys: QueueKeys::new("q", queue_secret.as_bytes()).unwrap(),
            public_pem: pk,
            http: client(),
            dir,
        };
        healthy(&gateway.base).await;
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
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

    /// The queue's counters (head, tail, claimed): what must not move when a request is
    /// refused.
    pub async fn counters(&self) -> (u64, u64, u64) {
        let s = self.room.snapshot(&self.event).await.unwrap();
        (s.head, s.tail, s.claimed)
    }

    /// Runs the admitter (as the console's would) until everyone in line is admitted.
    pub async fn admit_all(&self) {
        let admitter = Admitter::new(self.room.clone(), Duration::from_secs(2));
        eventually(Duration::from_secs(5), ms(50), async || {
            admitter.step(&self.event).await.unwrap();
            let s = self.room.snapshot(&self.event).await.unwrap();
            (s.head == s.tail)
                .then_some(())
                .ok_or("admitter did not catch up")
        })
        .await
    }

    /// `POST /queue/gig/join` with no token, as a newcomer: the answer's body.
    pub async fn join(&self) -> Value {
        json(self.post("/queue/gig/join").send().await.unwrap()).await
    }

    /// `POST /queue/gig/join` presenting `token` (a place held, or claimed to be).
    pub async fn rejoin(&self, token: &str) -> Value {
        let r = self.post("/queue/gig/join").bearer_auth(token);
        json(r.send().await.unwrap()).await
    }

    /// A newcomer's queue token.
    pub async fn join_token(&self) -> String {
        let joined = self.join().await;
        joined["queue_token"].as_str().unwrap().to_owned()
    }

    /// The queue tokens of `n` newcomers, in the order they joined.
    pub async fn join_tokens(&self, n: usize) -> Vec<String> {
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            tokens.push(self.join_token().await);
        }
        tokens
    }

    /// `GET /queue/gig/status` with `token` as the bearer.
    pub async fn status(&self, token: &str) -> Response {
        self.status_at(&self.base, token).await
    }

    /// The same poll at another replica's `base`.
    pub async fn status_at(&self, base: &str, token: &str) -> Response {
        let url = format!("{base}/queue/gig/status");
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    /// The text the metrics listener serves.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.metrics_base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Queue claims for place `seq` in `event`'s line, expiring `exp_in` seconds from now:
    /// made with [`Gateway::queue_keys`] they are valid but for what the test changes.
    pub fn queue_claims(&self, event: &str, seq: u64, exp_in: i64) -> QueueClaims {
        claims("queue", event, exp_in, json!({"seq": seq}))
    }

    /// The admission the holder of place 1 in `event` would get, expiring `exp_in` seconds
    /// from now, with a fresh jti.
    pub fn admission_claims(&self, event: &str, exp_in: i64) -> AdmissionClaims {
        let jti = uuid::Uuid::new_v4().to_string();
        claims("admission", event, exp_in, json!({"seq": 1, "jti": jti}))
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
        .env(
            "FLOODGATE_QUEUE_KEYS",
            format!("q={}", dir.join("q.key").display()),
        )
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

/// Claims of `kind` for `event` as an attacker would write them, as JSON: issued now,
/// expiring `exp_in` seconds from now, with the kind's own fields in `fields`.
fn claims<T: serde::de::DeserializeOwned>(
    kind: &str,
    event: &str,
    exp_in: i64,
    fields: Value,
) -> T {
    let now = chrono::Utc::now().timestamp();
    let aud = audience(&EventSlug::parse(event).unwrap());
    let mut claims = json!({"kind": kind, "aud": aud, "evt": event, "sub": "attacker"});
    claims["iat"] = now.into();
    claims["exp"] = (now + exp_in).into();
    for (k, v) in fields.as_object().unwrap() {
        claims[k] = v.clone();
    }
    serde_json::from_value(claims).unwrap()
}

/// A client that shows the edge's redirects rather than following them: where the edge
/// sends a visitor is what the tests check.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The queue on, admitting `rate` a minute (0: nobody until the test says so).
pub fn on(rate: u32) -> AdmissionSettings {
    AdmissionSettings {
        mode: Mode::On,
        rate_per_minute: rate,
        max_active: 1000,
        admission_ttl_seconds: 300,
        opens_at: None,
    }
}

/// [`on`] but in another mode (paused, off, pre-queue), the rest as it was.
pub fn in_mode(mode: Mode) -> AdmissionSettings {
    AdmissionSettings { mode, ..on(0) }
}

/// `n` milliseconds: how often the tests poll.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub async fn json(r: Response) -> Value {
    r.json().await.unwrap()
}

/// Serves `app` on a free loopback port (for as long as the test runs): its address, for
/// [`Setup::upstream`].
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

/// Sends `request(i)` until one is refused with 429 (at most `max` times), failing unless
/// every one before it was served (2xx or 3xx); returns how many got through, after
/// checking the refusal is the API error with a `Retry-After`.
pub async fn flood_until_limited(
    what: &str,
    max: usize,
    request: impl FnMut(usize) -> RequestBuilder,
) -> usize {
    until_limited(what, max, request, |s| s.is_success() || s.is_redirection()).await
}

/// [`flood_until_limited`] for guesses: what gets through may well be refused (a wrong
/// token is a 401), only where the 429 starts matters.
pub async fn guess_until_limited(
    what: &str,
    max: usize,
    request: impl FnMut(usize) -> RequestBuilder,
) -> usize {
    until_limited(what, max, request, |_| true).await
}

async fn until_limited(
    what: &str,
    max: usize,
    mut request: impl FnMut(usize) -> RequestBuilder,
    passed: impl Fn(StatusCode) -> bool,
) -> usize {
    for i in 0..max {
        let r = request(i).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = r.headers()["retry-after"].to_str().unwrap();
            let retry: u64 = retry.parse().unwrap();
            assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
            let b = json(r).await;
            assert_eq!(b["error"], "rate_limited", "{what}: {b}");
            assert!(b["message"].is_string(), "{what}: {b}");
            return i;
        }
        assert!(passed(r.status()), "{what}: {}", r.status());
    }
    panic!("{what}: {max} requests were never limited");
}

/// Sends `n` requests at once, each from a client (connection) of its own: their
/// answers, in the order they came back.
pub async fn crowd(n: usize, request: impl Fn(reqwest::Client) -> RequestBuilder) -> Vec<Response> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = request(client());
        tasks.spawn(async move { req.send().await.unwrap() });
    }
    let mut answers = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    answers
}
