//! End-to-end tests of the real gateway binary against the real Redis, with a small
//! axum server standing in for the upstream services (it is what the gateway proxies
//! to, not a mock of anything running on the machine).

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use support::{Gateway, Setup};
use waitroom::EventSlug;
use waitroom::admission::Admitter;
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::tokens::{AdmissionClaims, TokenKind, TokenSigner, audience, generate_keypair};

/// The gateway under test (the shared harness), with its own small upstream.
type Stack = Gateway;

async fn upstream() -> String {
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let path = req.uri().path().to_owned();
        let cookie_len = req.headers().get("cookie").map_or(0, |v| v.len());
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap();
        if body.is_empty() && cookie_len < 1000 {
            format!("upstream saw {path}")
        } else {
            format!(
                "upstream saw {path}: cookie {cookie_len} bytes, body {} bytes",
                body.len()
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

async fn start(settings: AdmissionSettings, extra_env: &[(&str, &str)]) -> Stack {
    let upstream = upstream().await;
    Gateway::start(Setup {
        settings,
        title: Some("The Gig"),
        upstream: &upstream,
        env: extra_env,
    })
    .await
}

impl Stack {
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

async fn json(r: reqwest::Response) -> serde_json::Value {
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_protected_path_sends_to_the_queue_until_admitted_then_proxies() {
    let s = start(on(60_000), &[]).await;
    let c = client();

    let page = c.get(s.url("/e/gig")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::FOUND);
    assert_eq!(page.headers()["location"], "/queue/gig");
    let api = c.get(s.url("/api/events/gig")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(api).await["error"], "missing_token");

    let joined = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
    assert_eq!(joined["state"], "waiting");
    assert_eq!(joined["position"], 1);
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();

    // Joining again with the token keeps the place.
    let again = json(
        c.post(s.url("/queue/gig/join"))
            .bearer_auth(&queue_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again["position"], 1);
    assert_eq!(s.room.snapshot(&s.event).await.unwrap().tail, 1);

    s.admit_all().await;
    // The gateway's snapshot is refreshed within a few hundred ms.
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(&queue_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = json(r).await;
        if body["state"] == "admitted" {
            assert!(
                cookies
                    .iter()
                    .any(|c| c.starts_with("fg_a_gig=") && c.contains("HttpOnly"))
            );
            break body;
        }
        assert!(Instant::now() < deadline, "not admitted: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admission = status["admission_token"].as_str().unwrap();

    let proxied = c
        .get(s.url("/e/gig"))
        .bearer_auth(admission)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    assert_eq!(proxied.text().await.unwrap(), "upstream saw /e/gig");
    let by_cookie = c
        .get(s.url("/api/events/gig/holds"))
        .header("cookie", format!("fg_a_gig={admission}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_cookie.text().await.unwrap(),
        "upstream saw /api/events/gig/holds"
    );

    // The same admission is returned on later polls (one jti per place).
    let later = json(
        c.get(s.url("/queue/gig/status"))
            .bearer_auth(&queue_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let jti = |t: &str| -> serde_json::Value {
        let payload = t.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["jti"].clone()
    };
    assert_eq!(
        jti(admission),
        jti(later["admission_token"].as_str().unwrap())
    );
    s.cleanup().await;
}

#[tokio::test]
async fn bad_tokens_get_401_and_change_nothing() {
    let s = start(on(60_000), &[]).await;
    let c = client();
    let joined = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
    let token = joined["queue_token"].as_str().unwrap().to_owned();
    let before = s.room.snapshot(&s.event).await.unwrap();

    // Tampered: move the place forward without re-signing.
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["seq"] = 0.into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // Signed by a key the gateway does not know.
    let (other_key, _) = generate_keypair();
    let foreign_key = TokenSigner::from_pem("k", other_key.as_bytes()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let admission = |event: &str, exp: i64| AdmissionClaims {
        kind: TokenKind::Admission,
        aud: audience(&EventSlug::parse(event).unwrap()),
        evt: EventSlug::parse(event).unwrap(),
        sub: "v".into(),
        jti: "j".into(),
        seq: 1,
        iat: now,
        exp,
    };
    let expired = s.signer.sign(&admission("gig", now - 60));
    let other_event = s.signer.sign(&admission("other", now + 300));
    let wrong_key = foreign_key.sign(&admission("gig", now + 300));

    for (what, t) in [
        ("tampered", tampered.as_str()),
        ("garbage", "not-a-token"),
        ("admission as queue token", other_event.as_str()),
    ] {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    let missing = c.get(s.url("/queue/gig/status")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(missing).await["error"], "missing_token");

    for (what, t, code) in [
        ("expired", expired.as_str(), "token_expired"),
        ("foreign event", other_event.as_str(), "invalid_token"),
        ("unknown key", wrong_key.as_str(), "invalid_token"),
        ("queue token", token.as_str(), "invalid_token"),
    ] {
        let r = c
            .post(s.url("/api/events/gig/holds"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(json(r).await["error"], code, "{what}");
    }
    let after = s.room.snapshot(&s.event).await.unwrap();
    assert_eq!(
        (before.head, before.tail, before.claimed),
        (after.head, after.tail, after.claimed)
    );
    s.cleanup().await;
}

#[tokio::test]
async fn requests_far_larger_than_the_read_buffer_pass_through_whole() {
    // The gateway reads ahead 4 KiB per connection (bin/gateway.rs); a request's
    // headers and body beyond that must still reach the upstream intact, on a kept
    // connection too.
    let s = start(on(0), &[]).await;
    let c = client();
    for (cookie_len, body_len) in [(6_000usize, 300_000usize), (100, 9_000), (7_000, 0)] {
        let r = c
            .post(s.url("/console/api/echo"))
            .header("cookie", format!("big={}", "c".repeat(cookie_len - 4)))
            .body("b".repeat(body_len))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.text().await.unwrap(),
            format!(
                "upstream saw /console/api/echo: cookie {cookie_len} bytes, body {body_len} bytes"
            )
        );
    }
    s.cleanup().await;
}

#[tokio::test]
async fn a_flood_from_one_address_gets_429() {
    // No allow-list: loopback is just another client here.
    let s = start(
        on(60),
        &[
            ("FLOODGATE_RATE_ALLOWLIST", ""),
            ("FLOODGATE_JOIN_PER_MIN", "30"),
        ],
    )
    .await;
    let c = client();
    let mut limited = None;
    for _ in 0..60 {
        let r = c.post(s.url("/queue/gig/join")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("60 joins in a burst were never limited");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(json(r).await["error"], "rate_limited");
    let metrics = c
        .get(format!("{}/metrics", s.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("floodgate_gateway_rate_limited_total{route=\"join\"}"));
    s.cleanup().await;
}

#[tokio::test]
async fn settings_changes_reach_the_edge_within_a_second() {
    let s = start(on(0), &[]).await;
    let c = client();
    let joined = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
    let token = joined["queue_token"].as_str().unwrap().to_owned();

    let changed = Instant::now();
    s.room
        .apply_settings(
            &s.event,
            &AdmissionSettings {
                mode: Mode::Paused,
                ..on(0)
            },
        )
        .await
        .unwrap();
    loop {
        let r = json(
            c.get(s.url("/queue/gig/status"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if r["state"] == "paused" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "still {r} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Queue off: the protected page passes without any token.
    s.room
        .apply_settings(
            &s.event,
            &AdmissionSettings {
                mode: Mode::Off,
                ..on(0)
            },
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let r = c.get(s.url("/e/gig")).send().await.unwrap();
        if r.status() == StatusCode::OK {
            assert_eq!(r.text().await.unwrap(), "upstream saw /e/gig");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue off not applied within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.cleanup().await;
}

#[tokio::test]
async fn the_waiting_page_joins_and_shows_the_place() {
    let s = start(on(0), &[]).await;
    let c = client();
    // Someone ahead.
    c.post(s.url("/queue/gig/join")).send().await.unwrap();
    let r = c.get(s.url("/queue/gig")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("fg_q_gig="))
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("The Gig"));
    assert!(html.contains(r#"<dd id="position">2</dd>"#), "{html}");
    assert!(html.contains(r#"<dd id="ahead">1</dd>"#));
    assert!(html.contains("aria-live"));

    let unknown = c.get(s.url("/queue/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    s.cleanup().await;
}

#[tokio::test]
async fn pre_queue_arrivals_get_lottery_places_that_anyone_can_verify() {
    let opens_at = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let s = start(
        AdmissionSettings {
            mode: Mode::Prequeue,
            opens_at: Some(opens_at),
            ..on(0)
        },
        &[],
    )
    .await;
    let c = client();
    let before = json(c.get(s.url("/queue/gig/lottery")).send().await.unwrap()).await;
    assert!(before["commitment"].is_string());
    assert!(
        before["seed"].is_null(),
        "the seed stays secret until the draw"
    );

    let mut tokens = Vec::new();
    for _ in 0..20 {
        let j = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        assert_eq!(j["state"], "prequeue");
        assert!(j["position"].is_null(), "no place before the draw");
        tokens.push(j["queue_token"].as_str().unwrap().to_owned());
    }

    let admitter = Admitter::new(s.room.clone(), Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.room.settings(&s.event).await.unwrap().unwrap().mode != Mode::On {
        admitter.step(&s.event).await.unwrap();
        assert!(Instant::now() < deadline, "never drawn");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every entrant now has a distinct place 1..=20 (rate 0: nobody admitted yet).
    let mut positions = Vec::new();
    for t in &tokens {
        let deadline = Instant::now() + Duration::from_secs(2);
        let st = loop {
            let st = json(
                c.get(s.url("/queue/gig/status"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if st["state"] == "waiting" {
                break st;
            }
            assert!(Instant::now() < deadline, "still {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            st["queue_token"].is_string(),
            "the drawn place comes as a new token"
        );
        positions.push(st["position"].as_u64().unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=20).collect::<Vec<u64>>());

    let record: waitroom::lottery::LotteryRecord = c
        .get(s.url("/queue/gig/lottery"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record.commitment, before["commitment"].as_str().unwrap());
    record
        .verify()
        .expect("the published draw reproduces from the seed");
    s.cleanup().await;
}

#[tokio::test]
async fn two_gateways_both_apply_a_settings_change_within_a_second() {
    let a = start(on(0), &[]).await;
    // A second gateway process on the same queue (another replica behind the balancer).
    let b = a.replica("127.0.0.1:9").await;
    let b_base = b.base.clone();
    let c = client();
    let joined = json(c.post(a.url("/queue/gig/join")).send().await.unwrap()).await;
    let token = joined["queue_token"].as_str().unwrap().to_owned();
    // Both have seen the event before the change.
    for base in [a.base.as_str(), b_base.as_str()] {
        let r = json(
            c.get(format!("{base}/queue/gig/status"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r["state"], "waiting");
    }

    let changed = Instant::now();
    a.room
        .apply_settings(
            &a.event,
            &AdmissionSettings {
                mode: Mode::Paused,
                ..on(0)
            },
        )
        .await
        .unwrap();
    let mut pending = vec![a.base.clone(), b_base.clone()];
    while !pending.is_empty() {
        let mut still = Vec::new();
        for base in pending {
            let r = json(
                c.get(format!("{base}/queue/gig/status"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if r["state"] != "paused" {
                still.push(base);
            }
        }
        pending = still;
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "not applied within 1 s by {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    a.cleanup().await;
}

/// Redis restarted without persistence forgets the queue: the edge must hold people
/// where they are, paused, rather than say the event does not exist or let anyone in,
/// and pick the queue up again once it is restored.
#[tokio::test]
async fn a_queue_lost_from_redis_shows_paused_until_it_is_restored() {
    let s = start(on(0), &[]).await;
    let c = client();
    let joined = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
    assert_eq!(joined["state"], "waiting", "{joined}");
    let token = joined["queue_token"].as_str().unwrap().to_owned();

    s.room.purge(&s.event).await.unwrap();
    let lost = Instant::now();
    let status = loop {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "a known event must not vanish");
        let body = json(r).await;
        if body["state"] == "paused" {
            break body;
        }
        assert!(lost.elapsed() < Duration::from_secs(2), "still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status["admission_token"].is_null(), "{status}");
    // Newcomers get no place (none can be handed out safely) and are told to retry.
    let r = c.post(s.url("/queue/gig/join")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let newcomer = json(r).await;
    assert_eq!(newcomer["state"], "paused", "{newcomer}");
    assert!(newcomer["queue_token"].is_null(), "{newcomer}");
    // The protected pages stay shut to anyone without an admission.
    let r = c.get(s.url("/e/gig")).send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK);

    // Restored (by the console, paused) and resumed: the edge follows.
    s.room.apply_settings(&s.event, &on(0)).await.unwrap();
    let resumed = Instant::now();
    loop {
        let r = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        if r["state"] == "waiting" {
            assert!(r["queue_token"].is_string(), "{r}");
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(2), "still {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.cleanup().await;
}

/// A place handed out before Redis lost the queue, beyond what the restore put back,
/// is claimed by its holder's next poll: the counter moves past it, so no newcomer
/// can be handed the same place.
#[tokio::test]
async fn an_old_place_beyond_the_restored_counter_is_never_handed_out_again() {
    let s = start(on(0), &[]).await;
    let c = client();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let joined = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        tokens.push(joined["queue_token"].as_str().unwrap().to_owned());
    }
    s.room.purge(&s.event).await.unwrap();
    // Restored with nothing to go on (no mark): counters from zero.
    let paused = waitroom::settings::AdmissionSettings {
        mode: Mode::Paused,
        ..on(0)
    };
    assert!(
        s.room
            .restore(&s.event, &paused, "Gig", 0, 0)
            .await
            .unwrap()
    );
    let polled = Instant::now();
    loop {
        let r = c
            .get(s.url("/queue/gig/status"))
            .bearer_auth(&tokens[2])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        if s.room.snapshot(&s.event).await.unwrap().tail >= 3 {
            break;
        }
        assert!(polled.elapsed() < Duration::from_secs(3), "tail not raised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.room.apply_settings(&s.event, &on(0)).await.unwrap();
    let resumed = Instant::now();
    let newcomer = loop {
        let r = json(c.post(s.url("/queue/gig/join")).send().await.unwrap()).await;
        if r["state"] == "waiting" {
            break r;
        }
        assert!(resumed.elapsed() < Duration::from_secs(2), "still {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(newcomer["position"], 4, "{newcomer}");
    s.cleanup().await;
}
