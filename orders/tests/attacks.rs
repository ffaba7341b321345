//! Attacks on the orders API itself (it trusts no hop, so each must fail here even if
//! the gateway were bypassed), against the real Postgres, Redis and payment sandbox.
//!
//! Already covered elsewhere and not repeated: one admission racing itself for holds
//! (`holds.rs`), missing / foreign-event admissions and bad hold fields (`holds.rs`),
//! webhooks with no signature, a wrong secret or a stale timestamp (`payments.rs`).

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{TestApp, WEBHOOK_SECRET, spawn_app, spawn_with_sandbox};
use waitroom::EventSlug;
use waitroom::tokens::{
    AdmissionClaims, QueueClaims, TokenKind, TokenSigner, audience, generate_keypair,
};

const NO_PAYMENTS: &str = "http://127.0.0.1:9";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn claims(slug: &str, exp_in: i64) -> AdmissionClaims {
    let now = chrono::Utc::now().timestamp();
    let event = EventSlug::parse(slug).unwrap();
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

fn hand_made(header: &Value, claims: &impl serde::Serialize, hmac_key: Option<&[u8]>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = hmac_key.map_or(String::new(), |key| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(input.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    });
    format!("{input}.{sig}")
}

/// Replaces the payload of a signed token, keeping its header and signature.
fn with_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.to_string()),
        parts[2]
    )
}

/// Every bad admission an attacker can make for `slug`, with the error code expected.
fn bad_admissions(app: &TestApp, slug: &str) -> Vec<(String, String, &'static str)> {
    let c = claims(slug, 600);
    let (other_sk, _) = generate_keypair();
    let valid = app.signer.sign(&c);
    let now = chrono::Utc::now().timestamp();
    let event = EventSlug::parse(slug).unwrap();
    let mut out: Vec<(String, String, &'static str)> = vec![
        (
            "alg none".into(),
            hand_made(&json!({"alg": "none", "kid": "t"}), &c, None),
            "invalid_token",
        ),
        (
            "HS256 keyed with the public key".into(),
            hand_made(
                &json!({"alg": "HS256", "typ": "JWT", "kid": "t"}),
                &c,
                Some(app.public_pem.as_bytes()),
            ),
            "invalid_token",
        ),
        (
            "HS256 with an empty key".into(),
            hand_made(&json!({"alg": "HS256", "kid": "t"}), &c, Some(b"")),
            "invalid_token",
        ),
        (
            "signed by another key under our kid".into(),
            TokenSigner::from_pem("t", other_sk.as_bytes())
                .unwrap()
                .sign(&c),
            "invalid_token",
        ),
        (
            "unknown kid".into(),
            TokenSigner::from_pem("rotated-out", other_sk.as_bytes())
                .unwrap()
                .sign(&c),
            "invalid_token",
        ),
        (
            "jti swapped after signing".into(),
            with_payload(&valid, |p| p["jti"] = json!("someone-else")),
            "invalid_token",
        ),
        (
            "expiry extended after signing".into(),
            with_payload(&valid, |p| p["exp"] = json!(now + 86_400)),
            "invalid_token",
        ),
        (
            "signature stripped".into(),
            format!("{}.", valid.rsplit_once('.').unwrap().0),
            "invalid_token",
        ),
        (
            "expired".into(),
            app.signer.sign(&claims(slug, -60)),
            "token_expired",
        ),
        (
            "another event's admission".into(),
            app.signer.sign(&claims("elsewhere", 600)),
            "invalid_token",
        ),
        (
            "this event's evt but another audience".into(),
            app.signer.sign(&AdmissionClaims {
                aud: "floodgate:elsewhere".into(),
                ..claims(slug, 600)
            }),
            "invalid_token",
        ),
        (
            "a queue token".into(),
            app.signer.sign(&QueueClaims {
                kind: TokenKind::Queue,
                aud: audience(&event),
                evt: event.clone(),
                sub: "v".into(),
                seq: Some(1),
                pq: None,
                iat: now,
                exp: now + 600,
            }),
            "invalid_token",
        ),
        (
            "a queue token's kind flipped to admission".into(),
            with_payload(
                &app.signer.sign(&QueueClaims {
                    kind: TokenKind::Queue,
                    aud: audience(&event),
                    evt: event.clone(),
                    sub: "v".into(),
                    seq: Some(1),
                    pq: None,
                    iat: now,
                    exp: now + 600,
                }),
                |p| {
                    p["kind"] = json!("admission");
                    p["jti"] = json!("j");
                },
            ),
            "invalid_token",
        ),
        ("garbage".into(), "x.y.z".into(), "invalid_token"),
    ];
    out.push((
        "a token of nothing but dots".into(),
        "..".into(),
        "invalid_token",
    ));
    out
}

async fn hold_with(app: &TestApp, slug: &str, auth: Auth<'_>) -> reqwest::Response {
    let req = app
        .http
        .post(app.url(&format!("/api/events/{slug}/holds")))
        .json(&json!({"tier": "ga", "quantity": 1, "email": "eve@example.org", "name": "Eve"}));
    auth.apply(req, slug).send().await.unwrap()
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

impl Auth<'_> {
    fn apply(self, req: reqwest::RequestBuilder, slug: &str) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Cookie(t) => req.header("cookie", format!("fg_a_{slug}={t}")),
        }
    }
}

async fn assert_error(r: reqwest::Response, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    let b: Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: not the error shape ({e})"));
    assert_eq!(b["error"], code, "{what}: {b}");
    assert!(
        b["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {b}"
    );
}

#[tokio::test]
async fn forged_confused_and_tampered_admissions_are_refused_by_orders_itself() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 10, 1000)]).await;
    for (what, token, code) in bad_admissions(&app, "gig") {
        for auth in [Auth::Bearer(&token), Auth::Cookie(&token)] {
            let r = hold_with(&app, "gig", auth).await;
            assert_error(r, StatusCode::UNAUTHORIZED, code, &what).await;
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM holds").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM order_events").await, 0);
    assert_eq!(app.tier("ga").await, (10, 0, 0));
    // The real thing still works, so the refusals above were about the tokens.
    let ok = hold_with(&app, "gig", Auth::Bearer(&app.admission("gig", 1))).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    app.cleanup(&["gig"]).await;
}

/// A hold answers only to the admission that made it: another buyer's valid admission,
/// a forged one or none cannot release it or check it out.
#[tokio::test]
async fn a_hold_obeys_only_its_own_admission() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 10, 1000)]).await;
    app.event("elsewhere", &[("ga", 10, 1000)]).await;
    let mine = app.admission("gig", 1);
    let r = hold_with(&app, "gig", Auth::Bearer(&mine)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let hold_id = r.json::<Value>().await.unwrap()["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = app.admission("gig", 2);
    let foreign = app.admission("elsewhere", 1);
    let mut intruders: Vec<(String, Auth<'_>, StatusCode, &str)> = vec![
        (
            "no admission".into(),
            Auth::None,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        ),
        (
            "another buyer's admission".into(),
            Auth::Bearer(&theirs),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "another event's admission".into(),
            Auth::Bearer(&foreign),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
    ];
    let bad = bad_admissions(&app, "gig");
    for (what, token, code) in &bad {
        intruders.push((
            what.clone(),
            Auth::Bearer(token),
            StatusCode::UNAUTHORIZED,
            code,
        ));
    }
    for (what, auth, status, code) in intruders {
        let release = auth
            .apply(
                app.http.delete(app.url(&format!("/api/holds/{hold_id}"))),
                "gig",
            )
            .send()
            .await
            .unwrap();
        assert_error(release, status, code, &format!("release, {what}")).await;
        let checkout = auth
            .apply(
                app.http
                    .post(app.url(&format!("/api/holds/{hold_id}/checkout"))),
                "gig",
            )
            .send()
            .await
            .unwrap();
        assert_error(checkout, status, code, &format!("checkout, {what}")).await;
    }
    let status: String = sqlx::query_scalar("SELECT status FROM holds")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "active");
    assert_eq!(
        app.count("SELECT sum(held)::int8 FROM tiers t JOIN events e ON e.id = t.event_id WHERE e.slug = 'gig'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    app.cleanup(&["gig", "elsewhere"]).await;
}

async fn pay(app: &TestApp, sandbox: &str, token: &str) -> (String, String) {
    let hold = hold_with(app, "gig", Auth::Bearer(token)).await;
    assert_eq!(hold.status(), StatusCode::CREATED);
    let hold_id = hold.json::<Value>().await.unwrap()["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let co: Value = app
        .http
        .post(app.url(&format!("/api/holds/{hold_id}/checkout")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent = co["payment"]["intent_id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{sandbox}/v1/payment_intents/{intent}/confirm"))
        .bearer_auth("sk_test_floodgate")
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "confirm: {}", r.status());
    let (order_id, order_token) = (
        co["order_id"].as_str().unwrap().to_owned(),
        co["order_token"].as_str().unwrap().to_owned(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o: Value = app
            .http
            .get(app.url(&format!("/api/orders/{order_id}?order_token={order_token}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["status"] == "paid" {
            return (order_id, order_token);
        }
        assert!(Instant::now() < deadline, "never paid: {o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An admission is a turn at the counter, not a season ticket: once it has bought, the
/// same token (still unexpired, replayed by its holder or anyone who copied it) must
/// not hold seats again, or one admission could buy the whole event within its TTL.
#[tokio::test]
async fn an_admission_that_has_bought_cannot_buy_again() {
    let (app, _sandbox, sandbox_base) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("gig", &[("ga", 50, 1000)]).await;
    let token = app.admission("gig", 1);
    pay(&app, &sandbox_base, &token).await;
    assert_eq!(app.tier("ga").await, (50, 1, 0));

    let replay = hold_with(&app, "gig", Auth::Bearer(&token)).await;
    assert_error(
        replay,
        StatusCode::UNAUTHORIZED,
        "admission_used",
        "replayed after purchase",
    )
    .await;
    assert_eq!(app.tier("ga").await, (50, 1, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM holds WHERE status = 'active'")
            .await,
        0
    );
    app.cleanup(&["gig"]).await;
}

fn signed(body: &[u8], t: i64) -> String {
    orders::webhooks::sign(WEBHOOK_SECRET, t, body)
}

#[tokio::test]
async fn forged_and_malformed_webhooks_get_400_and_change_nothing() {
    let (app, _sandbox, _sandbox_base) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("gig", &[("ga", 10, 1000)]).await;
    let token = app.admission("gig", 1);
    let hold = hold_with(&app, "gig", Auth::Bearer(&token)).await;
    let hold_id = hold.json::<Value>().await.unwrap()["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let co: Value = app
        .http
        .post(app.url(&format!("/api/holds/{hold_id}/checkout")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (order_id, intent) = (
        co["order_id"].as_str().unwrap(),
        co["payment"]["intent_id"].as_str().unwrap(),
    );
    let event = |id: &str| {
        json!({"id": id, "type": "payment_intent.succeeded",
               "data": {"object": {"id": intent, "status": "succeeded", "amount": 1000,
                                   "currency": "eur", "metadata": {"order_id": order_id}}}})
        .to_string()
    };
    let now = chrono::Utc::now().timestamp();
    let body = event("evt_attack");
    let sig = signed(body.as_bytes(), now);
    let v1 = sig.split_once(",v1=").unwrap().1.to_owned();
    let mut cases: Vec<(&str, String, String, &str)> = vec![
        (
            "body changed after signing",
            event("evt_attack_2"),
            sig.clone(),
            "invalid_signature",
        ),
        (
            "timestamp changed, signature kept",
            body.clone(),
            format!("t={},v1={v1}", now + 1),
            "invalid_signature",
        ),
        (
            "from the future",
            body.clone(),
            signed(body.as_bytes(), now + 3600),
            "invalid_signature",
        ),
        (
            "timestamp at the far end of i64 (overflowed the age check)",
            body.clone(),
            format!("t={},v1={v1}", i64::MIN),
            "invalid_signature",
        ),
        (
            "v1 not hex",
            body.clone(),
            format!("t={now},v1=zz{}", &v1[2..]),
            "invalid_signature",
        ),
        (
            "v1 empty",
            body.clone(),
            format!("t={now},v1="),
            "invalid_signature",
        ),
        (
            "v1 truncated",
            body.clone(),
            format!("t={now},v1={}", &v1[..32]),
            "invalid_signature",
        ),
        (
            "only a v0 signature",
            body.clone(),
            format!("t={now},v0={v1}"),
            "invalid_signature",
        ),
        (
            "t not a number",
            body.clone(),
            format!("t=now,v1={v1}"),
            "invalid_signature",
        ),
        (
            "huge header",
            body.clone(),
            format!("t={now},{}v1={}", "x=y,".repeat(2000), "00".repeat(32)),
            "invalid_signature",
        ),
        (
            "one good and many wrong candidates, for another body",
            event("evt_attack_3"),
            format!("{sig},v1={},v1={}", "00".repeat(32), "ff".repeat(32)),
            "invalid_signature",
        ),
    ];
    // Correctly signed but not a webhook event at all.
    for bad_body in [
        "{\"id\": \"evt_x\", \"type\": ".to_owned(),
        "[]".to_owned(),
        json!({"id": "evt_x", "type": "payment_intent.succeeded"}).to_string(),
        "\u{0}\u{1}\u{2}".to_owned(),
        // Valid JSON whose id Postgres cannot store.
        json!({"id": "evt_\u{0}", "type": "payment_intent.succeeded",
               "data": {"object": {"id": intent, "metadata": {"order_id": order_id}}}})
        .to_string(),
    ] {
        cases.push((
            "signed, but malformed",
            bad_body.clone(),
            signed(bad_body.as_bytes(), now),
            "bad_request",
        ));
    }
    for (what, body, header, code) in cases {
        let r = app
            .http
            .post(app.url("/api/payments/webhook"))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, code, what).await;
    }
    // Too big to be a webhook, whatever its signature says.
    let big = format!("{{\"id\":\"evt_big\",\"pad\":\"{}\"}}", "a".repeat(200_000));
    let r = app
        .http
        .post(app.url("/api/payments/webhook"))
        .header("stripe-signature", signed(big.as_bytes(), now))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "oversized",
    )
    .await;

    assert_eq!(app.count("SELECT count(*) FROM payment_events").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM orders")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending_payment");
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE subject = 'orders.paid'")
            .await,
        0
    );
    app.cleanup(&["gig"]).await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_4xx_in_the_error_shape() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 10, 1000)]).await;
    let token = app.admission("gig", 1);
    let url = app.url("/api/events/gig/holds");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let raw = |body: Vec<u8>| {
        app.http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    let valid = |edit: &dyn Fn(&mut Value)| {
        let mut v = json!({"tier": "ga", "quantity": 1, "email": "a@example.org", "name": "Ada"});
        edit(&mut v);
        raw(v.to_string().into_bytes())
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "empty body",
            raw(vec![]),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "truncated",
            raw(b"{\"tier\": \"ga\", \"quan".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "an array",
            raw(b"[1, 2]".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "a string",
            raw(b"\"hold\"".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "nested ten thousand deep",
            raw(deep.into_bytes()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "invalid UTF-8",
            raw(b"{\"tier\": \"g\xff\xfe\", \"quantity\": 1}".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "trailing garbage",
            raw(
                b"{\"tier\":\"ga\",\"quantity\":1,\"email\":\"a@example.org\",\"name\":\"A\"} xyz"
                    .to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "quantity beyond i64",
            valid(&|v| v["quantity"] = json!(1e30)),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "quantity a float",
            valid(&|v| v["quantity"] = json!(1.5)),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "quantity i64::MAX",
            valid(&|v| v["quantity"] = json!(i64::MAX)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "quantity i64::MIN",
            valid(&|v| v["quantity"] = json!(i64::MIN)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "null tier",
            valid(&|v| v["tier"] = Value::Null),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "missing name",
            valid(&|v| {
                v.as_object_mut().unwrap().remove("name");
            }),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "an extra field",
            valid(&|v| v["admin"] = json!(true)),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "NUL in the name",
            valid(&|v| v["name"] = json!("Ada\u{0}Lovelace")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "NUL in the email",
            valid(&|v| v["email"] = json!("a\u{0}@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "NUL in the tier",
            valid(&|v| v["tier"] = json!("g\u{0}a")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "a name of ten thousand characters",
            valid(&|v| v["name"] = json!("A".repeat(10_000))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "an email of a thousand characters",
            valid(&|v| v["email"] = json!(format!("{}@example.org", "a".repeat(1000)))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "over the body limit",
            raw(format!("{{\"tier\":\"{}\"}}", "a".repeat(100_000)).into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "no content type",
            app.http.post(&url).bearer_auth(&token).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (what, req, status, code) in cases {
        assert_error(req.send().await.unwrap(), status, code, what).await;
    }
    // Malformed ids and queries in paths.
    for (what, req, status) in [
        (
            "hold id not a uuid",
            app.http
                .delete(app.url("/api/holds/not-a-uuid"))
                .bearer_auth(&token),
            StatusCode::BAD_REQUEST,
        ),
        (
            "checkout of a hold id with a NUL",
            app.http
                .post(app.url("/api/holds/%00/checkout"))
                .bearer_auth(&token),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown hold",
            app.http
                .delete(app.url(&format!("/api/holds/{}", uuid::Uuid::new_v4())))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
        ),
        (
            "order id not a uuid",
            app.http.get(app.url("/api/orders/1?order_token=x")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "order token repeated",
            app.http.get(app.url(&format!(
                "/api/orders/{}?order_token=a&order_token=b",
                uuid::Uuid::new_v4()
            ))),
            StatusCode::BAD_REQUEST,
        ),
        (
            "event slug with a NUL",
            app.http.get(app.url("/api/events/g%00ig")),
            StatusCode::NOT_FOUND,
        ),
        (
            "event slug of 10k characters",
            app.http
                .get(app.url(&format!("/api/events/{}", "a".repeat(10_000)))),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        let b: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not the error shape ({e})"));
        assert!(
            b["error"].is_string() && b["message"].is_string(),
            "{what}: {b}"
        );
    }
    // The buyer pages answer HTML, but the same: a client error, never a 500.
    for (what, path) in [
        (
            "hold page, slug with a NUL",
            format!("/e/g%00ig/holds/{}", uuid::Uuid::new_v4()),
        ),
        ("hold page, id not a uuid", "/e/gig/holds/x".to_owned()),
        ("event page, slug with a NUL", "/e/g%00ig".to_owned()),
        (
            "order page, no token",
            format!("/orders/{}", uuid::Uuid::new_v4()),
        ),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert!(r.status().is_client_error(), "{what}: {}", r.status());
    }
    assert_eq!(app.count("SELECT count(*) FROM holds").await, 0);
    assert_eq!(app.tier("ga").await, (10, 0, 0));
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.cleanup(&["gig"]).await;
}
