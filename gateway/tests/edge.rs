//! End-to-end tests of the real gateway binary against the real Redis, with a small
//! axum server standing in for the upstream services (it is what the gateway proxies
//! to, not a mock of anything running on the machine).

mod support;

use std::time::{Duration, Instant};

use platform::poll::{eventually, eventually_by};
use reqwest::StatusCode;
use support::{Gateway, Setup, flood_until_limited, in_mode, json, ms, on, serve};
use waitroom::admission::Admitter;
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::tokens::{TokenSigner, generate_keypair};

/// The gateway under test (the shared harness), with its own small upstream.
type Stack = Gateway;

/// An upstream that says what reached it: the path, and the sizes of a cookie or body
/// worth mentioning.
async fn upstream() -> String {
    serve(
        axum::Router::new().fallback(|req: axum::extract::Request| async move {
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
        }),
    )
    .await
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

/// The JWT payload of `token`, decoded (no signature checked).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Polls `answer` (a status poll or a join) until its state is `state`: that answer.
async fn until_state(
    state: &str,
    deadline: Instant,
    answer: impl AsyncFn() -> serde_json::Value,
) -> serde_json::Value {
    eventually_by(deadline, ms(20), async || {
        let r = answer().await;
        (r["state"] == state)
            .then_some(r.clone())
            .ok_or(format!("still {r}"))
    })
    .await
}

#[tokio::test]
async fn a_protected_path_sends_to_the_queue_until_admitted_then_proxies() {
    let s = start(on(60_000), &[]).await;

    let page = s.get("/e/gig").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::FOUND);
    assert_eq!(page.headers()["location"], "/queue/gig");
    let api = s.get("/api/events/gig").send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(api).await["error"], "missing_token");

    let joined = s.join().await;
    assert_eq!(joined["state"], "waiting");
    assert_eq!(joined["position"], 1);
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();

    // Joining again with the token keeps the place.
    let again = s.rejoin(&queue_token).await;
    assert_eq!(again["position"], 1);
    assert_eq!(s.counters().await.1, 1);

    s.admit_all().await;
    // The gateway's snapshot is refreshed within a few hundred ms.
    let status = eventually(Duration::from_secs(2), ms(50), async || {
        let r = s.status(&queue_token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let admission_cookie = r.headers().get_all("set-cookie").iter().any(|v| {
            let v = v.to_str().unwrap();
            v.starts_with("fg_a_gig=") && v.contains("HttpOnly")
        });
        let body = json(r).await;
        if body["state"] != "admitted" {
            return Err(format!("not admitted: {body}"));
        }
        assert!(admission_cookie);
        Ok(body)
    })
    .await;
    let admission = status["admission_token"].as_str().unwrap();

    let proxied = s.get("/e/gig").bearer_auth(admission);
    let proxied = proxied.send().await.unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    assert_eq!(proxied.text().await.unwrap(), "upstream saw /e/gig");
    let by_cookie = s
        .get("/api/events/gig/holds")
        .header("cookie", format!("fg_a_gig={admission}"));
    let by_cookie = by_cookie.send().await.unwrap().text().await.unwrap();
    assert_eq!(by_cookie, "upstream saw /api/events/gig/holds");

    // The same admission is returned on later polls (one jti per place).
    let later = json(s.status(&queue_token).await).await;
    let later = later["admission_token"].as_str().unwrap();
    assert_eq!(claims_of(admission)["jti"], claims_of(later)["jti"]);
    s.cleanup().await;
}

#[tokio::test]
async fn bad_tokens_get_401_and_change_nothing() {
    use base64::Engine as _;
    let s = start(on(60_000), &[]).await;
    let token = s.join_token().await;
    let before = s.counters().await;

    // Tampered: move the place forward without re-signing.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(&token);
    claims["seq"] = 0.into();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // Signed by a key the gateway does not know.
    let (other_key, _) = generate_keypair();
    let foreign_key = TokenSigner::from_pem("k", other_key.as_bytes()).unwrap();
    let expired = s.signer.sign(&s.admission_claims("gig", -60));
    let other_event = s.signer.sign(&s.admission_claims("other", 300));
    let wrong_key = foreign_key.sign(&s.admission_claims("gig", 300));

    for (what, t) in [
        ("tampered", tampered.as_str()),
        ("garbage", "not-a-token"),
        ("admission as queue token", other_event.as_str()),
    ] {
        let r = s.status(t).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    let missing = s.get("/queue/gig/status").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(missing).await["error"], "missing_token");

    for (what, t, code) in [
        ("expired", expired.as_str(), "token_expired"),
        ("foreign event", other_event.as_str(), "invalid_token"),
        ("unknown key", wrong_key.as_str(), "invalid_token"),
        ("queue token", token.as_str(), "invalid_token"),
    ] {
        let r = s.post("/api/events/gig/holds").bearer_auth(t);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(json(r).await["error"], code, "{what}");
    }
    assert_eq!(before, s.counters().await);
    s.cleanup().await;
}

#[tokio::test]
async fn requests_far_larger_than_the_read_buffer_pass_through_whole() {
    // The gateway reads ahead 4 KiB per connection (bin/gateway.rs); a request's
    // headers and body beyond that must still reach the upstream intact, on a kept
    // connection too.
    let s = start(on(0), &[]).await;
    for (cookie_len, body_len) in [(6_000usize, 300_000usize), (100, 9_000), (7_000, 0)] {
        let r = s
            .post("/console/api/echo")
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
    // The refusal is checked there: a Retry-After of a second or more, `rate_limited`.
    flood_until_limited("60 joins in a burst", 60, |_| s.post("/queue/gig/join")).await;
    let metrics = s.metrics().await;
    assert!(metrics.contains("floodgate_gateway_rate_limited_total{route=\"join\"}"));
    s.cleanup().await;
}

#[tokio::test]
async fn settings_changes_reach_the_edge_within_a_second() {
    let s = start(on(0), &[]).await;
    let token = s.join_token().await;

    let within_a_second = Instant::now() + Duration::from_secs(1);
    let paused = in_mode(Mode::Paused);
    s.room.apply_settings(&s.event, &paused).await.unwrap();
    let status = async || json(s.status(&token).await).await;
    until_state("paused", within_a_second, status).await;

    // Queue off: the protected page passes without any token.
    let off = in_mode(Mode::Off);
    s.room.apply_settings(&s.event, &off).await.unwrap();
    eventually(Duration::from_secs(1), ms(20), async || {
        let r = s.get("/e/gig").send().await.unwrap();
        if r.status() != StatusCode::OK {
            return Err("queue off not applied within 1 s");
        }
        assert_eq!(r.text().await.unwrap(), "upstream saw /e/gig");
        Ok(())
    })
    .await;
    s.cleanup().await;
}

#[tokio::test]
async fn the_waiting_page_joins_and_shows_the_place() {
    let s = start(on(0), &[]).await;
    // Someone ahead.
    s.join().await;
    let r = s.get("/queue/gig").send().await.unwrap();
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

    let unknown = s.get("/queue/nope").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    s.cleanup().await;
}

#[tokio::test]
async fn pre_queue_arrivals_get_lottery_places_that_anyone_can_verify() {
    let opens_at = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let s = start(
        AdmissionSettings {
            opens_at: Some(opens_at),
            ..in_mode(Mode::Prequeue)
        },
        &[],
    )
    .await;
    let lottery = || async { json(s.get("/queue/gig/lottery").send().await.unwrap()).await };
    let before = lottery().await;
    assert!(before["commitment"].is_string());
    assert!(
        before["seed"].is_null(),
        "the seed stays secret until the draw"
    );

    let mut tokens = Vec::new();
    for _ in 0..20 {
        let j = s.join().await;
        assert_eq!(j["state"], "prequeue");
        assert!(j["position"].is_null(), "no place before the draw");
        tokens.push(j["queue_token"].as_str().unwrap().to_owned());
    }

    let admitter = Admitter::new(s.room.clone(), Duration::from_secs(2));
    eventually(Duration::from_secs(5), ms(50), async || {
        if s.room.settings(&s.event).await.unwrap().unwrap().mode == Mode::On {
            return Ok(());
        }
        admitter.step(&s.event).await.unwrap();
        Err("never drawn")
    })
    .await;
    // Every entrant now has a distinct place 1..=20 (rate 0: nobody admitted yet).
    let mut positions = Vec::new();
    for t in &tokens {
        let status = async || json(s.status(t).await).await;
        let st = until_state("waiting", Instant::now() + Duration::from_secs(2), status).await;
        assert!(
            st["queue_token"].is_string(),
            "the drawn place comes as a new token"
        );
        positions.push(st["position"].as_u64().unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=20).collect::<Vec<u64>>());

    let record: waitroom::lottery::LotteryRecord = serde_json::from_value(lottery().await).unwrap();
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
    let token = a.join_token().await;
    let state_at = async |base: &str| json(a.status_at(base, &token).await).await["state"].clone();
    // Both have seen the event before the change.
    for base in [a.base.as_str(), b_base.as_str()] {
        assert_eq!(state_at(base).await, "waiting");
    }

    let changed = Instant::now();
    a.room
        .apply_settings(&a.event, &in_mode(Mode::Paused))
        .await
        .unwrap();
    let mut pending = vec![a.base.clone(), b_base.clone()];
    while !pending.is_empty() {
        let mut still = Vec::new();
        for base in pending {
            if state_at(&base).await != "paused" {
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
    let joined = s.join().await;
    assert_eq!(joined["state"], "waiting", "{joined}");
    let token = joined["queue_token"].as_str().unwrap().to_owned();

    s.room.purge(&s.event).await.unwrap();
    let status = eventually(Duration::from_secs(2), ms(50), async || {
        let r = s.status(&token).await;
        assert_eq!(r.status(), StatusCode::OK, "a known event must not vanish");
        let body = json(r).await;
        (body["state"] == "paused")
            .then_some(body.clone())
            .ok_or(format!("still {body}"))
    })
    .await;
    assert!(status["admission_token"].is_null(), "{status}");
    // Newcomers get no place (none can be handed out safely) and are told to retry.
    let r = s.post("/queue/gig/join").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let newcomer = json(r).await;
    assert_eq!(newcomer["state"], "paused", "{newcomer}");
    assert!(newcomer["queue_token"].is_null(), "{newcomer}");
    // The protected pages stay shut to anyone without an admission.
    let r = s.get("/e/gig").send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK);

    // Restored (by the console, paused) and resumed: the edge follows.
    s.room.apply_settings(&s.event, &on(0)).await.unwrap();
    let resumed = Instant::now() + Duration::from_secs(2);
    let r = until_state("waiting", resumed, async || s.join().await).await;
    assert!(r["queue_token"].is_string(), "{r}");
    s.cleanup().await;
}

/// A place handed out before Redis lost the queue, beyond what the restore put back,
/// is claimed by its holder's next poll: the counter moves past it, so no newcomer
/// can be handed the same place.
#[tokio::test]
async fn an_old_place_beyond_the_restored_counter_is_never_handed_out_again() {
    let s = start(on(0), &[]).await;
    let tokens = s.join_tokens(3).await;
    s.room.purge(&s.event).await.unwrap();
    // Restored with nothing to go on (no mark): counters from zero.
    let paused = in_mode(Mode::Paused);
    let restored = s.room.restore(&s.event, &paused, "Gig", 0, 0).await;
    assert!(restored.unwrap());
    eventually(Duration::from_secs(3), ms(50), async || {
        let r = s.status(&tokens[2]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let raised = s.counters().await.1 >= 3;
        raised.then_some(()).ok_or("tail not raised")
    })
    .await;
    s.room.apply_settings(&s.event, &on(0)).await.unwrap();
    let resumed = Instant::now() + Duration::from_secs(2);
    let newcomer = until_state("waiting", resumed, async || s.join().await).await;
    assert_eq!(newcomer["position"], 4, "{newcomer}");
    s.cleanup().await;
}

/// An upstream on a runtime of its own, so that the test can kill it outright: stopping
/// the runtime closes its listener and every connection, as a SIGKILL would.
fn killable_upstream(reply: &'static str) -> (String, impl FnOnce()) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move || async move { reply });
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let _ = stopped.await;
        });
    });
    (addr, move || {
        stop.send(()).unwrap();
        thread.join().unwrap();
    })
}

#[tokio::test]
async fn a_request_refused_by_a_dead_replica_is_retried_on_the_other_one() {
    // Two orders replicas; one dies before the gateway's health check (once a second)
    // can notice. Every request the dead one refuses must be answered by the other,
    // however the round robin turns meanwhile: none may end in a 502.
    let (dying, kill) = killable_upstream("dying");
    let living = upstream().await;
    let orders = format!("{dying},{living}");
    let s = start(
        AdmissionSettings {
            mode: Mode::Off,
            ..on(0)
        },
        &[("FLOODGATE_UPSTREAM_ORDERS", &orders)],
    )
    .await;
    kill();
    let c = support::client();
    let answers = futures::future::join_all(
        (0..64).map(|_| async { c.get(s.url("/e/gig")).send().await.unwrap() }),
    )
    .await;
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "upstream saw /e/gig");
    }
    s.cleanup().await;
}

/// An upstream that takes each request and hangs up without a word, as a replica does
/// when it dies under the requests it was given. Its port still accepts, so the health
/// check keeps it in the pool.
async fn swallowing_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_read_dropped_unanswered_by_one_replica_is_answered_by_the_other() {
    let swallowing = swallowing_upstream().await;
    let living = upstream().await;
    let orders = format!("{swallowing},{living}");
    let s = start(
        AdmissionSettings {
            mode: Mode::Off,
            ..on(0)
        },
        &[("FLOODGATE_UPSTREAM_ORDERS", &orders)],
    )
    .await;
    let c = support::client();
    let answers = futures::future::join_all(
        (0..32).map(|_| async { c.get(s.url("/e/gig")).send().await.unwrap() }),
    )
    .await;
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "upstream saw /e/gig");
    }
    // A write is not sent twice: the replica may have acted on it before it died.
    let mut failed = 0;
    for _ in 0..8 {
        let r = c.post(s.url("/api/events/gig/holds")).send().await.unwrap();
        if r.status() == StatusCode::BAD_GATEWAY {
            failed += 1;
        } else {
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    assert!(failed > 0, "no write met the swallowing replica");
    s.cleanup().await;
}
