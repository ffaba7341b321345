//! Attacks on the edge, against the real gateway binary and the real Redis: forged and
//! confused tokens, a queue token moved forward, a queue token shared by a crowd, token
//! guessing, cookie flags behind https, malformed requests; and the buyer's own
//! endpoints turned into floods (issue 15): webhooks from one source, the waiting page
//! as a cheaper join, an IPv6 client rotating through its /64, holds without a queue,
//! the lottery record and random event slugs as Redis load, the metrics on the buyers'
//! port, a client's `X-Forwarded-For` in front of the proxy's.
//!
//! `edge.rs` already covers a tampered `seq` at status, expired / foreign-event /
//! unknown-key admissions at a protected path and the join flood; this file covers the
//! rest. The upstream is a small axum server that counts what reaches it, so "refused at
//! the edge" means it was never proxied.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{Gateway, Setup};
use waitroom::EventSlug;
use waitroom::admission::Admitter;
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::tokens::{
    AdmissionClaims, QueueClaims, TokenKind, TokenSigner, audience, generate_keypair,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The gateway under attack, and how many requests reached its upstream.
struct Edge {
    gateway: Gateway,
    /// Requests that reached the upstream.
    proxied: Arc<AtomicUsize>,
}

impl std::ops::Deref for Edge {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.gateway
    }
}

async fn counting_upstream(proxied: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let proxied = proxied.clone();
        async move {
            proxied.fetch_add(1, Ordering::SeqCst);
            format!("upstream saw {}", req.uri().path())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

async fn start(settings: AdmissionSettings, env: &[(&str, &str)]) -> Edge {
    let proxied = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(proxied.clone()).await;
    let gateway = Gateway::start(Setup {
        settings,
        title: None,
        upstream: &upstream,
        env,
    })
    .await;
    Edge { gateway, proxied }
}

impl Edge {
    async fn counters(&self) -> (u64, u64, u64) {
        let s = self.room.snapshot(&self.event).await.unwrap();
        (s.head, s.tail, s.claimed)
    }

    async fn admit_all(&self) {
        let admitter = Admitter::new(self.room.clone(), Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            admitter.step(&self.event).await.unwrap();
            let s = self.room.snapshot(&self.event).await.unwrap();
            if s.head == s.tail {
                return;
            }
            assert!(Instant::now() < deadline, "admitter did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn queue_claims(&self, event: &str, seq: u64, exp_in: i64) -> QueueClaims {
        let now = chrono::Utc::now().timestamp();
        let event = EventSlug::parse(event).unwrap();
        QueueClaims {
            kind: TokenKind::Queue,
            aud: audience(&event),
            evt: event,
            sub: "attacker".into(),
            seq: Some(seq),
            pq: None,
            iat: now,
            exp: now + exp_in,
        }
    }

    fn admission_claims(&self, event: &str, exp_in: i64) -> AdmissionClaims {
        let now = chrono::Utc::now().timestamp();
        let event = EventSlug::parse(event).unwrap();
        AdmissionClaims {
            kind: TokenKind::Admission,
            aud: audience(&event),
            evt: event,
            sub: "attacker".into(),
            jti: uuid::Uuid::new_v4().to_string(),
            seq: 1,
            iat: now,
            exp: now + exp_in,
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn on(rate: u32) -> AdmissionSettings {
    AdmissionSettings {
        mode: Mode::On,
        rate_per_minute: rate,
        max_active: 1000,
        admission_ttl_seconds: 300,
        opens_at: None,
    }
}

async fn body(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

/// A JWT with any header, the given claims and an HMAC-SHA256 signature keyed with
/// `key` (empty key and `alg: none` give the unsigned shapes attackers try).
fn hand_made(header: &Value, claims: &impl serde::Serialize, hmac_key: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let signature = match hmac_key {
        Some(key) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(signing_input.as_bytes());
            B64.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

/// Every algorithm-confusion shape of one set of claims: unsigned (`none` in the
/// spellings libraries have accepted), HS256 keyed with the public key (PEM as is, and
/// trimmed), and an EdDSA header with its signature stripped.
fn confused(
    claims: &impl serde::Serialize,
    public_pem: &str,
    valid: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        out.push((
            format!("alg {alg}"),
            hand_made(&json!({"alg": alg, "typ": "JWT", "kid": "k"}), claims, None),
        ));
    }
    out.push((
        "HS256 keyed with the public PEM".into(),
        hand_made(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "k"}),
            claims,
            Some(public_pem.as_bytes()),
        ),
    ));
    out.push((
        "HS256 keyed with the trimmed public PEM".into(),
        hand_made(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "k"}),
            claims,
            Some(public_pem.trim().as_bytes()),
        ),
    ));
    out.push((
        "HS256 without kid, keyed with the public PEM".into(),
        hand_made(
            &json!({"alg": "HS256", "typ": "JWT"}),
            claims,
            Some(public_pem.as_bytes()),
        ),
    ));
    let mut parts = valid.split('.');
    let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
    out.push((
        "EdDSA with the signature stripped".into(),
        format!("{h}.{p}."),
    ));
    out.push(("EdDSA with two parts only".into(), format!("{h}.{p}")));
    out
}

#[tokio::test]
async fn algorithm_confusion_tokens_are_refused_and_nothing_is_proxied() {
    let s = start(on(0), &[]).await;
    let c = client();
    // Someone is in line, so there is state that must not move.
    c.post(s.url("/queue/gig/join")).send().await.unwrap();
    let before = s.counters().await;

    // A queue token claiming the very front (seq 0 is admitted whatever the head is).
    let front = s.queue_claims("gig", 0, 3600);
    let valid_queue = s.signer.sign(&s.queue_claims("gig", 1, 3600));
    for (what, token) in confused(&front, &s.public_pem, &valid_queue) {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "status with {what}");
        let b = body(r).await;
        assert_eq!(b["error"], "invalid_token", "status with {what}: {b}");
        assert!(b["admission_token"].is_null(), "{what}");
    }

    let admission = s.admission_claims("gig", 300);
    let valid_admission = s.signer.sign(&s.admission_claims("gig", 300));
    for (what, token) in confused(&admission, &s.public_pem, &valid_admission) {
        let api = c
            .post(s.url("/api/events/gig/holds"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "api with {what}");
        assert_eq!(body(api).await["error"], "invalid_token", "{what}");
        // The same token as the admission cookie, on the event page: to the queue.
        let page = c
            .get(s.url("/e/gig"))
            .header("cookie", format!("fg_a_gig={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::FOUND, "page with {what}");
        assert_eq!(page.headers()["location"], "/queue/gig", "{what}");
    }
    assert_eq!(
        s.proxied.load(Ordering::SeqCst),
        0,
        "nothing reached orders"
    );
    assert_eq!(s.counters().await, before, "the queue did not move");
    s.cleanup().await;
}

#[tokio::test]
async fn queue_tokens_forged_expired_or_foreign_are_refused_at_status() {
    let s = start(on(0), &[]).await;
    let c = client();
    c.post(s.url("/queue/gig/join")).send().await.unwrap();
    let before = s.counters().await;
    let (other_sk, _) = generate_keypair();
    let stranger = TokenSigner::from_pem("k", other_sk.as_bytes()).unwrap();
    let unknown_kid = TokenSigner::from_pem("k2", other_sk.as_bytes()).unwrap();
    let cases = [
        (
            "signed by another key under our kid",
            stranger.sign(&s.queue_claims("gig", 0, 3600)),
            "invalid_token",
        ),
        (
            "unknown kid",
            unknown_kid.sign(&s.queue_claims("gig", 0, 3600)),
            "invalid_token",
        ),
        (
            "expired",
            s.signer.sign(&s.queue_claims("gig", 1, -60)),
            "token_expired",
        ),
        (
            "another event's queue token",
            s.signer.sign(&s.queue_claims("other", 0, 3600)),
            "invalid_token",
        ),
        (
            "an admission token presented as a queue token",
            s.signer.sign(&s.admission_claims("gig", 300)),
            "invalid_token",
        ),
    ];
    for (what, token, code) in cases {
        for presented in ["bearer", "cookie"] {
            let req = c.get(s.url("/queue/gig/status"));
            let req = if presented == "bearer" {
                req.bearer_auth(&token)
            } else {
                req.header("cookie", format!("fg_q_gig={token}"))
            };
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} ({presented})");
            assert_eq!(body(r).await["error"], code, "{what} ({presented})");
        }
    }
    assert_eq!(s.counters().await, before, "no place was taken or claimed");
    s.cleanup().await;
}

#[tokio::test]
async fn a_queue_token_moved_forward_gets_no_earlier_place() {
    let s = start(on(0), &[]).await;
    let c = client();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let j = body(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        tokens.push(j["queue_token"].as_str().unwrap().to_owned());
    }
    // The last in line rewrites its seq to the front, keeping the signature.
    let last = &tokens[2];
    let mut parts = last.split('.');
    let (h, p, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: Value = serde_json::from_slice(&B64.decode(p).unwrap()).unwrap();
    assert_eq!(claims["seq"], 3);
    let mut forward = Vec::new();
    for seq in [json!(1), json!(0), json!(-1), json!("1"), json!(1.5)] {
        claims["seq"] = seq.clone();
        forward.push((
            format!("seq {seq}"),
            format!("{h}.{}.{sig}", B64.encode(claims.to_string())),
        ));
    }
    // Or swaps in the first visitor's payload under its own signature.
    let first_payload = tokens[0].split('.').nth(1).unwrap();
    forward.push((
        "first's payload".into(),
        format!("{h}.{first_payload}.{sig}"),
    ));

    for (what, token) in &forward {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "status, {what}");
        // Joining "again" with it is a newcomer: a new place at the back, never the front.
        let j = body(
            c.post(s.url("/queue/gig/join"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(j["state"], "waiting", "{what}: {j}");
        let tail = s.room.snapshot(&s.event).await.unwrap().tail;
        assert_eq!(j["position"].as_u64(), Some(tail), "{what}: at the back");
        assert!(j["position"].as_u64().unwrap() > 3, "{what}: {j}");
    }
    // The honest holder of the token still has place 3.
    let st = body(
        c.get(s.url("/queue/gig/status"))
            .bearer_auth(last)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st["position"], 3, "{st}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_queue_token_shared_by_a_crowd_yields_one_admission() {
    let s = start(on(60_000), &[]).await;
    let c = client();
    let join = || async {
        let j = body(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        j["queue_token"].as_str().unwrap().to_owned()
    };
    let token = join().await;
    let scout = join().await;
    s.admit_all().await;
    // The scout's poll shows when the edge has seen both admitted, without claiming
    // the shared token's admission.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let st = body(
            c.get(s.url("/queue/gig/status"))
                .bearer_auth(&scout)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if st["state"] == "admitted" {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.room.snapshot(&s.event).await.unwrap().claimed, 1);

    // Fifty clients (own connections) poll with the same token at once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (url, token) = (s.url("/queue/gig/status"), token.clone());
        tasks.spawn(async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut jtis = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let st = r.unwrap();
        assert_eq!(st["state"], "admitted", "{st}");
        let admission = st["admission_token"].as_str().unwrap();
        let claims: Value =
            serde_json::from_slice(&B64.decode(admission.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        jtis.insert(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis.len(), 1, "one place, one admission: {jtis:?}");
    assert_eq!(s.room.snapshot(&s.event).await.unwrap().claimed, 2);
    s.cleanup().await;
}

/// Guessing queue tokens at status and access links at `/join/{token}` is throttled per
/// address, and a client cannot escape its bucket by claiming another address.
#[tokio::test]
async fn token_guessing_at_status_and_access_links_is_rate_limited() {
    let s = start(
        on(0),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_STATUS_PER_MIN", "60"),
            ("FLOODGATE_ACCESS_LINK_PER_MIN", "30"),
        ],
    )
    .await;
    let c = client();
    for (route, path, per_min) in [
        ("status", "/queue/gig/status", 60u64),
        ("access link", "/join/", 30u64),
    ] {
        let mut allowed = 0u64;
        let mut limited = None;
        for i in 0..200u32 {
            let guess = B64.encode(uuid::Uuid::new_v4().as_bytes());
            let url = if route == "status" {
                s.url(path)
            } else {
                s.url(&format!("{path}{guess}"))
            };
            let r = c
                .get(url)
                .bearer_auth(&guess)
                // Not a trusted proxy: this header must not open a fresh bucket.
                .header("x-forwarded-for", format!("10.9.{}.{}", i / 250, i % 250))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(r);
                break;
            }
            allowed += 1;
        }
        let r = limited.unwrap_or_else(|| panic!("{route}: 200 guesses never limited"));
        // The burst is a sixth of the per-minute quota (at least five); a slow machine
        // may see a token or two refill while the burst is spent.
        assert!(
            allowed <= (per_min / 6).max(5) + 3,
            "{route}: {allowed} allowed"
        );
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{route}: Retry-After {retry}");
        let b = body(r).await;
        assert_eq!(b["error"], "rate_limited", "{route}: {b}");
        assert!(b["message"].is_string());
    }
    // Only the allowed access-link guesses reached fulfilment.
    assert!(s.proxied.load(Ordering::SeqCst) <= 8);
    s.cleanup().await;
}

#[tokio::test]
async fn token_cookies_are_secure_http_only_and_same_site_behind_https() {
    let s = start(
        on(60_000),
        &[("FLOODGATE_PUBLIC_URL", "https://tickets.example.org")],
    )
    .await;
    let c = client();
    let j = c.post(s.url("/queue/gig/join")).send().await.unwrap();
    let cookies = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let set = cookies(&j);
    let q = set.iter().find(|c| c.starts_with("fg_q_gig=")).unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(q.split("; ").any(|f| f == flag), "{flag} missing: {q}");
    }
    let token = body(j).await["queue_token"].as_str().unwrap().to_owned();
    s.admit_all().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = c
            .get(s.url("/queue/gig/status"))
            .header("cookie", format!("fg_q_gig={token}"))
            .send()
            .await
            .unwrap();
        let set = cookies(&r);
        if let Some(a) = set.iter().find(|c| c.starts_with("fg_a_gig=")) {
            for flag in ["HttpOnly", "SameSite=Lax", "Secure"] {
                assert!(a.split("; ").any(|f| f == flag), "{flag} missing: {a}");
            }
            let max_age: i64 = a
                .split("; ")
                .find_map(|f| f.strip_prefix("Max-Age="))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (1..=300).contains(&max_age),
                "lives as long as the admission"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.cleanup().await;
}

/// Raw bytes on a socket, for requests an HTTP client refuses to send.
async fn raw(base: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_edge_stays_up() {
    let s = start(on(0), &[]).await;
    let c = client();
    let long_slug = "a".repeat(5000);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("invalid slug", c.get(s.url("/queue/..%2f..%2fetc/status"))),
        (
            "very long slug",
            c.get(s.url(&format!("/queue/{long_slug}/status"))),
        ),
        ("unknown path", c.get(s.url("/wp-admin.php"))),
        ("wrong method", c.delete(s.url("/queue/gig/join"))),
        (
            "garbage bearer",
            c.get(s.url("/queue/gig/status"))
                .header("authorization", "Bearer ....."),
        ),
        (
            "huge bearer",
            c.get(s.url("/queue/gig/status"))
                .bearer_auth("a.".repeat(20_000)),
        ),
        (
            "base64 that is not JSON",
            c.get(s.url("/queue/gig/status")).bearer_auth(format!(
                "{}.{}.{}",
                B64.encode("\u{0}\u{1}"),
                B64.encode([0xff, 0xfe]),
                "x"
            )),
        ),
        (
            "cookie without a value",
            c.get(s.url("/queue/gig/status"))
                .header("cookie", "fg_q_gig; x=="),
        ),
        (
            "a body on join (ignored or refused, never a crash)",
            c.post(s.url("/queue/gig/join"))
                .header("content-type", "application/json")
                .body(vec![b'{'; 300_000]),
        ),
    ];
    for (what, req) in cases {
        let r = req.send().await.unwrap();
        let status = r.status();
        assert!(
            status.is_client_error() || (what.starts_with("a body") && status.is_success()),
            "{what}: {status}"
        );
        if status.is_client_error() {
            let b: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                b["error"].is_string() && b["message"].is_string(),
                "{what}: {b}"
            );
        }
    }
    // Bytes no client library would send.
    for (what, req) in [
        ("non-UTF-8 header", b"GET /queue/gig/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n".as_slice()),
        ("bad request line", b"GARBAGE\r\n\r\n".as_slice()),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost x\r\nConnection: close\r\n\r\n".as_slice()),
    ] {
        let answer = raw(&s.base, req).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{what}: {answer}");
    }
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the gateway survived");
    assert_eq!(s.proxied.load(Ordering::SeqCst), 0);
    s.cleanup().await;
}

/// Every command clients send Redis about this test's keys from now on, as Redis itself
/// reports them (MONITOR on a connection of our own): what the gateway costs Redis,
/// measured where it is paid. The commands a script runs inside Redis (logged as
/// `[0 lua]`) are left out: one script is one round trip.
struct Monitor {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    async fn start(prefix: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpStream::connect("127.0.0.1:6379")
            .await
            .unwrap();
        let (read, mut write) = sock.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(read).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mine, prefix) = (seen.clone(), prefix.to_owned());
        let task = tokio::spawn(async move {
            let _write = write;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&prefix) && !line.contains(" lua]") {
                    mine.lock().unwrap().push(line);
                }
            }
        });
        Self { seen, task }
    }

    /// Commands seen so far that mention `needle` (case-insensitive).
    fn count(&self, needle: &str) -> usize {
        let needle = needle.to_ascii_lowercase();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.to_ascii_lowercase().contains(&needle))
            .count()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `request()` until one is refused with 429 (at most `max` times); returns how
/// many got through and the refusal, after checking it is the API error with
/// `Retry-After`.
async fn flood_until_limited(
    what: &str,
    max: usize,
    mut request: impl FnMut(usize) -> reqwest::RequestBuilder,
) -> usize {
    for i in 0..max {
        let r = request(i).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
            let b = body(r).await;
            assert_eq!(b["error"], "rate_limited", "{what}: {b}");
            assert!(b["message"].is_string(), "{what}: {b}");
            return i;
        }
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{what}: {}",
            r.status()
        );
    }
    panic!("{what}: {max} requests were never limited");
}

/// A forged-webhook flood from one source is cut at the edge (each one would cost
/// orders an HMAC over its body); the provider's other addresses are untouched.
#[tokio::test]
async fn a_webhook_flood_from_one_source_is_limited_at_the_edge() {
    let s = start(
        on(0),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("FLOODGATE_WEBHOOK_PER_MIN", "60"),
        ],
    )
    .await;
    let c = client();
    let webhook = |from: &str| {
        c.post(s.url("/api/payments/webhook"))
            .header("x-forwarded-for", from)
            .header("stripe-signature", "t=1,v1=".to_owned() + &"0".repeat(64))
            .body(r#"{"type":"payment_intent.succeeded"}"#)
    };
    let allowed = flood_until_limited("webhook", 200, |_| webhook("203.0.113.9")).await;
    // Burst of a sixth of 60 is 10; a slow machine may see a token refill.
    assert!(allowed <= 10 + 3, "{allowed} forged webhooks got through");
    assert_eq!(
        s.proxied.load(Ordering::SeqCst),
        allowed,
        "only those reached orders"
    );
    let other = webhook("198.51.100.7").send().await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another source has its own bucket"
    );
    s.cleanup().await;
}

/// `GET /queue/{event}` without a cookie takes a place; it must cost what a join costs,
/// or a script loads the page instead of joining and gets eight times the places.
#[tokio::test]
async fn the_waiting_page_is_not_a_cheaper_join() {
    let s = start(
        on(0),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_JOIN_PER_MIN", "30"),
            ("FLOODGATE_STATUS_PER_MIN", "600"),
        ],
    )
    .await;
    let c = client();
    let first = c.get(s.url("/queue/gig")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let allowed = flood_until_limited("cookieless page", 60, |_| c.get(s.url("/queue/gig"))).await;
    let (_, tail, _) = s.counters().await;
    // The join burst is five; one went to the first visit above.
    assert!(
        allowed <= 5 + 2,
        "{allowed} cookieless page loads got through"
    );
    assert!(tail <= 5 + 3, "{tail} places taken by page loads");
    // A visitor who already has a place is only polling: the page still loads.
    let again = c
        .get(s.url("/queue/gig"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        s.counters().await.1,
        tail,
        "no new place for a visitor with one"
    );
    s.cleanup().await;
}

/// An IPv6 client holds a whole /64: rotating through its addresses is still one
/// client, while the next /64 is somebody else.
#[tokio::test]
async fn an_ipv6_client_rotating_through_its_64_is_one_client() {
    let s = start(
        on(0),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("FLOODGATE_JOIN_PER_MIN", "30"),
        ],
    )
    .await;
    let c = client();
    let allowed = flood_until_limited("rotating /64", 100, |i| {
        c.post(s.url("/queue/gig/join"))
            .header("x-forwarded-for", format!("2001:db8:aa:bb:{i:x}:{i:x}::1"))
    })
    .await;
    assert!(allowed <= 5 + 2, "{allowed} joins from one /64 got through");
    let other = c
        .post(s.url("/queue/gig/join"))
        .header("x-forwarded-for", "2001:db8:aa:bc::1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "the next /64 is another client"
    );
    s.cleanup().await;
}

/// With the queue off nothing ties a hold to one buyer, so without an admission holds
/// are limited per client: a script cannot hold the whole inventory every hold TTL.
/// Reads are not, and a hold with a valid admission is not either.
#[tokio::test]
async fn holds_without_an_admission_are_limited_per_client_when_the_queue_is_off() {
    let s = start(
        AdmissionSettings {
            mode: Mode::Off,
            ..on(0)
        },
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_HOLDS_WITHOUT_ADMISSION_PER_MIN", "6"),
        ],
    )
    .await;
    let c = client();
    let allowed = flood_until_limited("holds without admission", 100, |_| {
        c.post(s.url("/api/events/gig/holds"))
            .json(&json!({"tier": "ga", "quantity": 1, "email": "bot@example.org"}))
    })
    .await;
    assert!(
        allowed <= 5 + 2,
        "{allowed} holds without admission got through"
    );
    assert_eq!(
        s.proxied.load(Ordering::SeqCst),
        allowed,
        "only those reached orders"
    );
    // Another spelling of the same write is the same limit.
    let r = c.put(s.url("/api/events/gig/holds/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let read = c.get(s.url("/api/events/gig")).send().await.unwrap();
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "reading the event is not a hold"
    );
    let admitted = c
        .post(s.url("/api/events/gig/holds"))
        .bearer_auth(s.signer.sign(&s.admission_claims("gig", 300)))
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), StatusCode::OK, "an admitted hold passes");
    s.cleanup().await;
}

/// The lottery record lists every entrant: read from Redis per request, a crowd
/// refreshing it would be an `LRANGE` of the whole pre-queue each time. The edge reads
/// it at most once a second, and new entrants still show within that.
#[tokio::test]
async fn the_lottery_is_read_from_redis_at_most_once_a_second() {
    let s = start(
        AdmissionSettings {
            mode: Mode::Prequeue,
            opens_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..on(0)
        },
        &[],
    )
    .await;
    let c = client();
    for _ in 0..20 {
        c.post(s.url("/queue/gig/join")).send().await.unwrap();
    }
    let monitor = Monitor::start(&s.prefix).await;
    let started = Instant::now();
    for _ in 0..10 {
        let mut round = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let url = s.url("/queue/gig/lottery");
            round.spawn(async move { client().get(url).send().await.unwrap() });
        }
        while let Some(r) = round.join_next().await {
            let r = r.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(body(r).await["entrants"].as_array().unwrap().len(), 20);
        }
    }
    let seconds = started.elapsed().as_secs() as usize;
    let reads = monitor.count("\"lrange\"");
    assert!(
        reads <= seconds + 2,
        "{reads} reads of the pre-queue for 200 requests in {seconds} s"
    );
    // A new entrant is in the published record within about a second.
    c.post(s.url("/queue/gig/join")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = body(c.get(s.url("/queue/gig/lottery")).send().await.unwrap()).await;
        if r["entrants"].as_array().unwrap().len() == 21 {
            break;
        }
        assert!(Instant::now() < deadline, "the new entrant never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.cleanup().await;
}

/// The edge's figures are for operators: not on the buyers' port, only on the metrics
/// listener.
#[tokio::test]
async fn the_metrics_are_not_served_on_the_buyers_port() {
    let s = start(on(0), &[]).await;
    let c = client();
    let public = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(public).await["error"], "not_found");
    let text = c
        .get(format!("{}/metrics", s.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("floodgate_gateway_requests_total"),
        "the metrics listener serves them: {text}"
    );
    s.cleanup().await;
}

/// `GET /e/<random>` floods: each unknown slug costs one existence check and is then
/// remembered for a second, never joining the set the refresher re-reads every 200 ms.
#[tokio::test]
async fn random_event_slugs_cost_one_check_each_and_are_never_refreshed() {
    let s = start(on(0), &[]).await;
    let c = client();
    let monitor = Monitor::start(&s.prefix).await;
    let slugs: Vec<String> = (0..100)
        .map(|_| format!("probe-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
        .collect();
    for slug in &slugs {
        let r = c.get(s.url(&format!("/e/{slug}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "to the waiting room");
    }
    for _ in 0..50 {
        c.get(s.url("/e/probe-again")).send().await.unwrap();
    }
    // Long enough for five refresher rounds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let checks: usize = slugs
        .iter()
        .map(|slug| monitor.count(&format!("{{{slug}}}")))
        .sum();
    assert!(
        checks <= slugs.len(),
        "{checks} reads for {} probed slugs",
        slugs.len()
    );
    let again = monitor.count("{probe-again}");
    assert!(again <= 2, "{again} reads for one slug probed 50 times");
    s.cleanup().await;
}

/// Behind a trusted proxy, a client that sends its own `X-Forwarded-For` gets it
/// passed along as a first header, the proxy's as the last: only the proxy's counts,
/// so rotating the first header opens no fresh buckets.
#[tokio::test]
async fn a_clients_forwarded_for_header_in_front_of_the_proxys_does_not_count() {
    let s = start(
        on(0),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("FLOODGATE_JOIN_PER_MIN", "30"),
        ],
    )
    .await;
    let c = client();
    let allowed = flood_until_limited("rotated first header", 100, |i| {
        c.post(s.url("/queue/gig/join"))
            .header("x-forwarded-for", format!("10.66.{}.{}", i / 250, i % 250))
            .header("x-forwarded-for", "203.0.113.50")
    })
    .await;
    assert!(allowed <= 5 + 2, "{allowed} joins got through");
    let (_, tail, _) = s.counters().await;
    assert!(tail <= 5 + 2, "{tail} places taken");
    s.cleanup().await;
}
