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
use platform::poll::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{
    Gateway, Setup, crowd, flood_until_limited, guess_until_limited, in_mode, json as body, ms, on,
    serve,
};
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::tokens::{QueueKeys, generate_queue_secret};

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
    serve(
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let proxied = proxied.clone();
            async move {
                proxied.fetch_add(1, Ordering::SeqCst);
                format!("upstream saw {}", req.uri().path())
            }
        }),
    )
    .await
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
    /// How many requests reached the upstream so far.
    fn proxied(&self) -> usize {
        self.proxied.load(Ordering::SeqCst)
    }
}

/// [`start`] for a flood: no allow-list (loopback is just another client here), the
/// given per-minute limits (`("JOIN", 30)` is `FLOODGATE_JOIN_PER_MIN=30`) and `env`.
async fn start_limited(
    settings: AdmissionSettings,
    per_min: &[(&str, u32)],
    env: &[(&str, &str)],
) -> Edge {
    let limits: Vec<(String, String)> = per_min
        .iter()
        .map(|(what, n)| (format!("FLOODGATE_{what}_PER_MIN"), n.to_string()))
        .collect();
    let mut all = vec![("FLOODGATE_RATE_ALLOWLIST", "")];
    all.extend(limits.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    all.extend_from_slice(env);
    start(settings, &all).await
}

/// Loopback is the proxy in front of the edge: its `X-Forwarded-For` names the client.
const TRUSTED_PROXY: (&str, &str) = ("FLOODGATE_TRUSTED_PROXIES", "127.0.0.1/32");

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
    // Someone is in line, so there is state that must not move.
    s.join().await;
    let before = s.counters().await;

    // A queue token claiming the very front (seq 0 is admitted whatever the head is).
    let front = s.queue_claims("gig", 0, 3600);
    let valid_queue = s.queue_keys.sign(&s.queue_claims("gig", 1, 3600));
    let mut attempts = confused(&front, &s.public_pem, &valid_queue);
    // Queue tokens carry an HMAC: the public key as its secret under the queue key's
    // id, and a place signed with the admission key, are refused too.
    attempts.push((
        "HS256 under the queue key's id, keyed with the public PEM".into(),
        hand_made(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "q"}),
            &front,
            Some(s.public_pem.as_bytes()),
        ),
    ));
    attempts.push((
        "a place signed with the admission key (EdDSA)".into(),
        s.signer.sign(&front),
    ));
    for (what, token) in attempts {
        let r = s.status(&token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "status with {what}");
        let b = body(r).await;
        assert_eq!(b["error"], "invalid_token", "status with {what}: {b}");
        assert!(b["admission_token"].is_null(), "{what}");
    }

    let admission = s.admission_claims("gig", 300);
    let valid_admission = s.signer.sign(&s.admission_claims("gig", 300));
    for (what, token) in confused(&admission, &s.public_pem, &valid_admission) {
        let api = s.post("/api/events/gig/holds").bearer_auth(&token);
        let api = api.send().await.unwrap();
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "api with {what}");
        assert_eq!(body(api).await["error"], "invalid_token", "{what}");
        // The same token as the admission cookie, on the event page: to the queue.
        let page = s
            .get("/e/gig")
            .header("cookie", format!("fg_a_gig={token}"));
        let page = page.send().await.unwrap();
        assert_eq!(page.status(), StatusCode::FOUND, "page with {what}");
        assert_eq!(page.headers()["location"], "/queue/gig", "{what}");
    }
    assert_eq!(s.proxied(), 0, "nothing reached orders");
    assert_eq!(s.counters().await, before, "the queue did not move");
    s.cleanup().await;
}

#[tokio::test]
async fn queue_tokens_forged_expired_or_foreign_are_refused_at_status() {
    let s = start(on(0), &[]).await;
    s.join().await;
    let before = s.counters().await;
    let stranger = QueueKeys::new("q", generate_queue_secret().as_bytes()).unwrap();
    let unknown_kid = QueueKeys::new("q2", generate_queue_secret().as_bytes()).unwrap();
    let (front, expired) = (
        s.queue_claims("gig", 0, 3600),
        s.queue_claims("gig", 1, -60),
    );
    let cases = [
        (
            "made with another secret under our kid",
            stranger.sign(&front),
            "invalid_token",
        ),
        ("unknown kid", unknown_kid.sign(&front), "invalid_token"),
        ("expired", s.queue_keys.sign(&expired), "token_expired"),
        (
            "another event's queue token",
            s.queue_keys.sign(&s.queue_claims("other", 0, 3600)),
            "invalid_token",
        ),
        (
            "a place signed with the admission key",
            s.signer.sign(&front),
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
            let req = s.get("/queue/gig/status");
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
    let tokens = s.join_tokens(3).await;
    // The last in line rewrites its seq to the front, keeping the signature.
    let last = &tokens[2];
    let [h, p, sig] = last.split('.').collect::<Vec<_>>()[..] else {
        panic!("not a JWT: {last}");
    };
    let mut claims: Value = serde_json::from_slice(&B64.decode(p).unwrap()).unwrap();
    assert_eq!(claims["seq"], 3);
    let mut forward = Vec::new();
    for seq in [json!(1), json!(0), json!(-1), json!("1"), json!(1.5)] {
        claims["seq"] = seq.clone();
        let payload = B64.encode(claims.to_string());
        forward.push((format!("seq {seq}"), format!("{h}.{payload}.{sig}")));
    }
    // Or swaps in the first visitor's payload under its own signature.
    let first_payload = tokens[0].split('.').nth(1).unwrap();
    let swapped = format!("{h}.{first_payload}.{sig}");
    forward.push(("first's payload".into(), swapped));

    for (what, token) in &forward {
        let r = s.status(token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "status, {what}");
        // Joining "again" with it is a newcomer: a new place at the back, never the front.
        let j = s.rejoin(token).await;
        assert_eq!(j["state"], "waiting", "{what}: {j}");
        let tail = s.counters().await.1;
        assert_eq!(j["position"].as_u64(), Some(tail), "{what}: at the back");
        assert!(j["position"].as_u64().unwrap() > 3, "{what}: {j}");
    }
    // The honest holder of the token still has place 3.
    let st = body(s.status(last).await).await;
    assert_eq!(st["position"], 3, "{st}");
    s.cleanup().await;
}

/// The JWT payload of `token`, decoded (no signature checked).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_queue_token_shared_by_a_crowd_yields_one_admission() {
    let s = start(on(60_000), &[]).await;
    let token = s.join_token().await;
    let scout = s.join_token().await;
    s.admit_all().await;
    // The scout's poll shows when the edge has seen both admitted, without claiming
    // the shared token's admission.
    eventually(Duration::from_secs(3), ms(20), async || {
        let st = body(s.status(&scout).await).await;
        (st["state"] == "admitted")
            .then_some(())
            .ok_or(format!("never admitted: {st}"))
    })
    .await;
    assert_eq!(s.counters().await.2, 1);

    // Fifty clients (own connections) poll with the same token at once.
    let url = s.url("/queue/gig/status");
    let answers = crowd(50, |c| c.get(&url).bearer_auth(&token)).await;
    let mut jtis = std::collections::HashSet::new();
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
        let st = body(r).await;
        assert_eq!(st["state"], "admitted", "{st}");
        let admission = claims_of(st["admission_token"].as_str().unwrap());
        jtis.insert(admission["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis.len(), 1, "one place, one admission: {jtis:?}");
    assert_eq!(s.counters().await.2, 2);
    s.cleanup().await;
}

/// Guessing queue tokens at status and access links at `/join/{token}` is throttled per
/// address, and a client cannot escape its bucket by claiming another address.
#[tokio::test]
async fn token_guessing_at_status_and_access_links_is_rate_limited() {
    let s = start_limited(on(0), &[("STATUS", 60), ("ACCESS_LINK", 30)], &[]).await;
    for (route, path, per_min) in [
        ("status", "/queue/gig/status", 60u64),
        ("access link", "/join/", 30u64),
    ] {
        let allowed = guess_until_limited(route, 200, |i| {
            let guess = B64.encode(uuid::Uuid::new_v4().as_bytes());
            let url = if route == "status" {
                s.url(path)
            } else {
                s.url(&format!("{path}{guess}"))
            };
            s.http
                .get(url)
                .bearer_auth(&guess)
                // Not a trusted proxy: this header must not open a fresh bucket.
                .header("x-forwarded-for", format!("10.9.{}.{}", i / 250, i % 250))
        })
        .await as u64;
        // The burst is a sixth of the per-minute quota (at least five); a slow machine
        // may see a token or two refill while the burst is spent.
        assert!(
            allowed <= (per_min / 6).max(5) + 3,
            "{route}: {allowed} allowed"
        );
    }
    // Only the allowed access-link guesses reached fulfilment.
    assert!(s.proxied() <= 8);
    s.cleanup().await;
}

/// The `Set-Cookie` headers of an answer.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn token_cookies_are_secure_http_only_and_same_site_behind_https() {
    let s = start(
        on(60_000),
        &[("FLOODGATE_PUBLIC_URL", "https://tickets.example.org")],
    )
    .await;
    let j = s.post("/queue/gig/join").send().await.unwrap();
    let set = set_cookies(&j);
    let q = set.iter().find(|c| c.starts_with("fg_q_gig=")).unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(q.split("; ").any(|f| f == flag), "{flag} missing: {q}");
    }
    let token = body(j).await["queue_token"].as_str().unwrap().to_owned();
    s.admit_all().await;
    let a = eventually(Duration::from_secs(3), ms(50), async || {
        let r = s.get("/queue/gig/status");
        let r = r.header("cookie", format!("fg_q_gig={token}")).send().await;
        let set = set_cookies(&r.unwrap());
        let admission = set.into_iter().find(|c| c.starts_with("fg_a_gig="));
        admission.ok_or("never admitted")
    })
    .await;
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
    let long_slug = "a".repeat(5000);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("invalid slug", s.get("/queue/..%2f..%2fetc/status")),
        (
            "very long slug",
            s.get(&format!("/queue/{long_slug}/status")),
        ),
        ("unknown path", s.get("/wp-admin.php")),
        ("wrong method", s.http.delete(s.url("/queue/gig/join"))),
        (
            "garbage bearer",
            s.get("/queue/gig/status")
                .header("authorization", "Bearer ....."),
        ),
        (
            "huge bearer",
            s.get("/queue/gig/status").bearer_auth("a.".repeat(20_000)),
        ),
        (
            "base64 that is not JSON",
            s.get("/queue/gig/status").bearer_auth(format!(
                "{}.{}.{}",
                B64.encode("\u{0}\u{1}"),
                B64.encode([0xff, 0xfe]),
                "x"
            )),
        ),
        (
            "cookie without a value",
            s.get("/queue/gig/status").header("cookie", "fg_q_gig; x=="),
        ),
        (
            "a body on join (ignored or refused, never a crash)",
            s.post("/queue/gig/join")
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
    let r = s.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the gateway survived");
    assert_eq!(s.proxied(), 0);
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

/// A forged-webhook flood from one source is cut at the edge (each one would cost
/// orders an HMAC over its body); the provider's other addresses are untouched.
#[tokio::test]
async fn a_webhook_flood_from_one_source_is_limited_at_the_edge() {
    let s = start_limited(on(0), &[("WEBHOOK", 60)], &[TRUSTED_PROXY]).await;
    let webhook = |from: &str| {
        s.post("/api/payments/webhook")
            .header("x-forwarded-for", from)
            .header("stripe-signature", "t=1,v1=".to_owned() + &"0".repeat(64))
            .body(r#"{"type":"payment_intent.succeeded"}"#)
    };
    let allowed = flood_until_limited("webhook", 200, |_| webhook("203.0.113.9")).await;
    // Burst of a sixth of 60 is 10; a slow machine may see a token refill.
    assert!(allowed <= 10 + 3, "{allowed} forged webhooks got through");
    assert_eq!(s.proxied(), allowed, "only those reached orders");
    let other = webhook("198.51.100.7").send().await.unwrap();
    let other = other.status();
    assert_eq!(other, StatusCode::OK, "another source has its own bucket");
    s.cleanup().await;
}

/// `GET /queue/{event}` without a cookie takes a place; it must cost what a join costs,
/// or a script loads the page instead of joining and gets eight times the places.
#[tokio::test]
async fn the_waiting_page_is_not_a_cheaper_join() {
    let s = start_limited(on(0), &[("JOIN", 30), ("STATUS", 600)], &[]).await;
    let first = s.get("/queue/gig").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = set_cookies(&first)[0].split(';').next().unwrap().to_owned();
    let allowed = flood_until_limited("cookieless page", 60, |_| s.get("/queue/gig")).await;
    let (_, tail, _) = s.counters().await;
    // The join burst is five; one went to the first visit above.
    let page_loads = format!("{allowed} cookieless page loads got through");
    assert!(allowed <= 5 + 2, "{page_loads}");
    assert!(tail <= 5 + 3, "{tail} places taken by page loads");
    // A visitor who already has a place is only polling: the page still loads.
    let again = s.get("/queue/gig").header("cookie", &cookie);
    assert_eq!(again.send().await.unwrap().status(), StatusCode::OK);
    let now = s.counters().await.1;
    assert_eq!(now, tail, "no new place for a visitor with one");
    s.cleanup().await;
}

/// An IPv6 client holds a whole /64: rotating through its addresses is still one
/// client, while the next /64 is somebody else.
#[tokio::test]
async fn an_ipv6_client_rotating_through_its_64_is_one_client() {
    let s = start_limited(on(0), &[("JOIN", 30)], &[TRUSTED_PROXY]).await;
    let join_from = |addr: String| s.post("/queue/gig/join").header("x-forwarded-for", addr);
    let allowed = flood_until_limited("rotating /64", 100, |i| {
        join_from(format!("2001:db8:aa:bb:{i:x}:{i:x}::1"))
    })
    .await;
    assert!(allowed <= 5 + 2, "{allowed} joins from one /64 got through");
    let other = join_from("2001:db8:aa:bc::1".into()).send().await.unwrap();
    let other = other.status();
    assert_eq!(other, StatusCode::OK, "the next /64 is another client");
    s.cleanup().await;
}

/// With the queue off nothing ties a hold to one buyer, so without an admission holds
/// are limited per client: a script cannot hold the whole inventory every hold TTL.
/// Reads are not, and a hold with a valid admission is not either.
#[tokio::test]
async fn holds_without_an_admission_are_limited_per_client_when_the_queue_is_off() {
    let s = start_limited(in_mode(Mode::Off), &[("HOLDS_WITHOUT_ADMISSION", 6)], &[]).await;
    let allowed = flood_until_limited("holds without admission", 100, |_| {
        s.post("/api/events/gig/holds")
            .json(&json!({"tier": "ga", "quantity": 1, "email": "bot@example.org"}))
    })
    .await;
    assert!(
        allowed <= 5 + 2,
        "{allowed} holds without admission got through"
    );
    assert_eq!(s.proxied(), allowed, "only those reached orders");
    // Another spelling of the same write is the same limit.
    let r = s
        .http
        .put(s.url("/api/events/gig/holds/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let read = s.get("/api/events/gig").send().await.unwrap();
    let read = read.status();
    assert_eq!(read, StatusCode::OK, "reading the event is not a hold");
    let admission = s.signer.sign(&s.admission_claims("gig", 300));
    let admitted = s.post("/api/events/gig/holds").bearer_auth(admission);
    let admitted = admitted.send().await.unwrap().status();
    assert_eq!(admitted, StatusCode::OK, "an admitted hold passes");
    s.cleanup().await;
}

/// The lottery record lists every entrant: read from Redis per request, a crowd
/// refreshing it would be an `LRANGE` of the whole pre-queue each time. The edge reads
/// it at most once a second, and new entrants still show within that.
#[tokio::test]
async fn the_lottery_is_read_from_redis_at_most_once_a_second() {
    let s = start(
        AdmissionSettings {
            opens_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..in_mode(Mode::Prequeue)
        },
        &[],
    )
    .await;
    for _ in 0..20 {
        s.join().await;
    }
    let monitor = Monitor::start(&s.prefix).await;
    let started = Instant::now();
    let lottery = s.url("/queue/gig/lottery");
    for _ in 0..10 {
        for r in crowd(20, |c| c.get(&lottery)).await {
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
    s.join().await;
    eventually(Duration::from_secs(3), ms(100), async || {
        let r = body(s.http.get(&lottery).send().await.unwrap()).await;
        let entrants = r["entrants"].as_array().unwrap().len();
        (entrants == 21)
            .then_some(())
            .ok_or("the new entrant never showed")
    })
    .await;
    s.cleanup().await;
}

/// The edge's figures are for operators: not on the buyers' port, only on the metrics
/// listener.
#[tokio::test]
async fn the_metrics_are_not_served_on_the_buyers_port() {
    let s = start(on(0), &[]).await;
    let public = s.get("/metrics").send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(public).await["error"], "not_found");
    // The request is counted once its answer has gone out (Pingora's logging phase),
    // a moment after the client read it.
    eventually(Duration::from_secs(3), ms(100), async || {
        s.metrics()
            .await
            .contains("floodgate_gateway_requests_total")
            .then_some(())
            .ok_or("the metrics listener does not serve the request count")
    })
    .await;
    // Writes answered before a Redis replica confirmed them (none on one node).
    assert!(
        s.metrics()
            .await
            .contains("floodgate_gateway_redis_short_waits_total 0")
    );
    s.cleanup().await;
}

/// `GET /e/<random>` floods: each unknown slug costs one existence check and is then
/// remembered for a second, never joining the set the refresher re-reads every 200 ms.
#[tokio::test]
async fn random_event_slugs_cost_one_check_each_and_are_never_refreshed() {
    let s = start(on(0), &[]).await;
    let monitor = Monitor::start(&s.prefix).await;
    let slugs: Vec<String> = (0..100)
        .map(|_| format!("probe-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
        .collect();
    for slug in &slugs {
        let r = s.get(&format!("/e/{slug}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "to the waiting room");
    }
    for _ in 0..50 {
        s.get("/e/probe-again").send().await.unwrap();
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
    let s = start_limited(on(0), &[("JOIN", 30)], &[TRUSTED_PROXY]).await;
    let allowed = flood_until_limited("rotated first header", 100, |i| {
        s.post("/queue/gig/join")
            .header("x-forwarded-for", format!("10.66.{}.{}", i / 250, i % 250))
            .header("x-forwarded-for", "203.0.113.50")
    })
    .await;
    assert!(allowed <= 5 + 2, "{allowed} joins got through");
    let (_, tail, _) = s.counters().await;
    assert!(tail <= 5 + 2, "{tail} places taken");
    s.cleanup().await;
}
