//! Attacks on the console, against the real Postgres and Redis: every action without
//! credentials, with the wrong role, and (for sessions) without the CSRF token whatever
//! the content type; session fixation, logout and cookie flags; malformed input.
//!
//! `desk.rs` and `api.rs` already check refund/resend/email and event creation for
//! anonymous and host callers, a JSON resend and a form without CSRF, a new session id
//! per login and the login throttle; the matrices here cover every route.

mod support;

use std::ops::Deref;

use console::auth::{Role, create_token};
use platform::testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::queue::Waitroom;

use support::{PASSWORD, TestConsole, session_of};

/// A console with the sign-in accounts and the event `gig` (see [`seed`]).
struct Console {
    console: TestConsole,
    order: Uuid,
    ticket: Uuid,
}

/// The attacks run against the console: `c.url(..)`, `c.admin`, `c.sign_in(..)`.
impl Deref for Console {
    type Target = TestConsole;

    fn deref(&self) -> &TestConsole {
        &self.console
    }
}

async fn spawn(secure_cookies: bool) -> Console {
    let console = support::spawn_with(|c| c.secure_cookies = secure_cookies).await;
    support::create_operators(&console.db).await;
    let (order, ticket) = seed(&console.db, &console.room).await;
    Console {
        console,
        order,
        ticket,
    }
}

/// The event `gig` (queue on, in Redis too) with one paid order of one ticket.
async fn seed(db: &TestDb, room: &Waitroom) -> (Uuid, Uuid) {
    let req: orders::events::NewEventRequest = serde_json::from_value(json!({
        "slug": "gig", "title": "The Gig",
        "starts_at": chrono::Utc::now() + chrono::Duration::days(10),
        "ends_at": chrono::Utc::now() + chrono::Duration::days(10) + chrono::Duration::hours(2),
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "tiers": [{"code": "ga", "name": "General", "price_cents": 2000, "currency": "EUR", "capacity": 10}],
        "queue": {"mode": "on", "rate_per_minute": 60, "max_active": 10}
    }))
    .unwrap();
    let new = req.parse().unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let e = orders::events::create(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    room.apply_settings(&new.slug, &new.admission)
        .await
        .unwrap();
    let (order, ticket): (Uuid, Uuid) = sqlx::query_as(
        r#"WITH t AS (SELECT id FROM tiers WHERE event_id = $1),
           h AS (INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti, buyer_email, buyer_name, status, expires_at)
                 SELECT gen_random_uuid(), $1, t.id, 1, 'j1', 'buyer@example.org', 'Bea Buyer', 'converted', now()
                 FROM t RETURNING id, tier_id),
           o AS (INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency, buyer_email,
                                     buyer_name, status, payment_provider, payment_intent_id, paid_at, admission_jti)
                 SELECT gen_random_uuid(), $1, h.id, h.tier_id, 1, 2000, 'EUR', 'buyer@example.org', 'Bea Buyer',
                        'paid', 'sandbox', 'pi_j1', now(), 'j1'
                 FROM h RETURNING id, tier_id)
           INSERT INTO tickets (id, order_id, event_id, tier_id, seat_no, code, holder_email, holder_name)
           SELECT gen_random_uuid(), o.id, $1, o.tier_id, 1, 'FG-ATTACK0001', 'buyer@example.org', 'Bea Buyer'
           FROM o RETURNING order_id, id"#,
    )
    .bind(e.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE tiers SET sold = 1 WHERE event_id = $1")
        .bind(e.id)
        .execute(&db.pool)
        .await
        .unwrap();
    (order, ticket)
}

/// Every state-changing API route with a body that would succeed for an admin.
fn changes(c: &Console) -> Vec<(Method, String, Value)> {
    let (o, t) = (c.order, c.ticket);
    vec![
        (
            Method::POST,
            "/console/api/events".into(),
            new_event("fresh"),
        ),
        (
            Method::PUT,
            "/console/api/events/gig/admission".into(),
            json!({"mode": "paused", "reason": "attack"}),
        ),
        (
            Method::POST,
            format!("/console/api/orders/{o}/refund"),
            json!({"reason": "attack", "override_policy": true}),
        ),
        (
            Method::POST,
            format!("/console/api/orders/{o}/resend"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/console/api/orders/{o}/email"),
            json!({"email": "attacker@example.org"}),
        ),
        (
            Method::POST,
            format!("/console/api/tickets/{t}/transfer"),
            json!({"email": "attacker@example.org", "name": "Mallory"}),
        ),
        (
            Method::POST,
            "/console/api/events/gig/reschedule".into(),
            json!({"starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T20:00:00Z", "notify": true}),
        ),
        (
            Method::POST,
            "/console/api/events/gig/cancel".into(),
            json!({"reason": "attack"}),
        ),
        (
            Method::POST,
            "/console/api/events/gig/resend-undelivered".into(),
            json!({}),
        ),
    ]
}

fn reads(c: &Console) -> Vec<String> {
    let o = c.order;
    vec![
        "/console/api/events".into(),
        "/console/api/events/gig".into(),
        "/console/api/events/gig/admission".into(),
        "/console/api/search?q=buyer".into(),
        format!("/console/api/orders/{o}"),
        "/console/api/events/gig/audit".into(),
        "/console/api/events/gig/live".into(),
    ]
}

fn new_event(slug: &str) -> Value {
    json!({
        "slug": slug, "title": "Fresh",
        "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "tiers": [{"code": "ga", "name": "General", "price_cents": 100, "currency": "EUR", "capacity": 5}],
        "queue": {"mode": "on", "rate_per_minute": 60, "max_active": 10}
    })
}

impl Console {
    /// Everything an action could have changed, to compare before and after.
    async fn state(&self) -> Value {
        let mode = self
            .room
            .settings(&EventSlug::parse("gig").unwrap())
            .await
            .unwrap()
            .map(|s| s.mode);
        let row: (String, String, String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
            r#"SELECT o.status, t.holder_email, e.status, e.starts_at
               FROM orders o JOIN tickets t ON t.order_id = o.id JOIN events e ON e.id = o.event_id"#,
        )
        .fetch_one(&self.db.pool)
        .await
        .unwrap();
        json!({
            "redis_mode": mode.map(|m| m.to_string()),
            "order": row.0, "holder": row.1, "event": row.2, "starts_at": row.3,
            "events": self.count("SELECT count(*) FROM events").await,
            "outbox": self.count("SELECT count(*) FROM outbox").await,
            "audit": self.count("SELECT count(*) FROM operator_audit").await,
            "refunds": self.count("SELECT count(*) FROM refunds").await,
            "actions": self.count("SELECT count(*) FROM operator_actions").await,
        })
    }
}

async fn assert_shape(r: reqwest::Response, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    let b = error_of(r, what).await;
    assert_eq!(b["error"], code, "{what}: {b}");
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// The refusal's body, which must be JSON (the error shape's fields are the caller's to
/// check).
async fn error_of(r: reqwest::Response, what: &str) -> Value {
    r.json()
        .await
        .unwrap_or_else(|e| panic!("{what}: not the error shape ({e})"))
}

#[tokio::test]
async fn every_route_refuses_callers_without_valid_credentials() {
    let c = spawn(false).await;
    let before = c.state().await;
    let h = &c.http;
    // A revoked admin token is no token.
    let (revoked_id, revoked) = create_token(&c.db.pool, "gone", Role::Admin).await.unwrap();
    sqlx::query("UPDATE operator_tokens SET revoked_at = now() WHERE id = $1")
        .bind(revoked_id)
        .execute(&c.db.pool)
        .await
        .unwrap();
    let credentials: Vec<(&str, Option<(&str, String)>)> = vec![
        ("nothing", None),
        (
            "a made-up token",
            Some((
                "authorization",
                "Bearer fgo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            )),
        ),
        (
            "a revoked admin token",
            Some(("authorization", format!("Bearer {revoked}"))),
        ),
        (
            "an admin token without Bearer",
            Some(("authorization", c.admin.clone())),
        ),
        (
            "an admin token under Basic",
            Some(("authorization", format!("Basic {}", c.admin))),
        ),
        (
            "an admin token as a cookie",
            Some(("cookie", format!("fg_console={}", c.admin))),
        ),
        (
            "a made-up session",
            Some((
                "cookie",
                "fg_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            )),
        ),
        ("an empty session", Some(("cookie", "fg_console=".into()))),
    ];
    for (who, credential) in &credentials {
        let with = |req: reqwest::RequestBuilder| match credential {
            Some((name, value)) => req.header(*name, value),
            None => req,
        };
        for (method, path, body) in changes(&c) {
            let r = with(h.request(method.clone(), c.url(&path)))
                .header("x-csrf-token", "guess")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_shape(
                r,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &format!("{who}: {method} {path}"),
            )
            .await;
        }
        for path in reads(&c) {
            let r = with(h.get(c.url(&path))).send().await.unwrap();
            assert_shape(
                r,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &format!("{who}: GET {path}"),
            )
            .await;
        }
    }
    // The HTML side sends strangers to the login page and does nothing.
    let (o, t) = (c.order, c.ticket);
    for path in [
        format!("/console/orders/{o}/refund"),
        format!("/console/orders/{o}/resend"),
        format!("/console/orders/{o}/email"),
        format!("/console/tickets/{t}/transfer"),
        "/console/logout".into(),
    ] {
        let form = [
            ("csrf", "guess"),
            ("reason", "x"),
            ("email", "a@example.org"),
            ("name", "M"),
        ];
        let r = c.submit("", &path, &form).await;
        assert!(
            r.status() == StatusCode::SEE_OTHER && r.headers()["location"] == "/console/login",
            "POST {path}: {}",
            r.status()
        );
    }
    for path in [
        format!("/console/orders/{o}"),
        "/console/events/gig/live".into(),
        "/console/?q=buyer".into(),
    ] {
        let r = c.get(&path, "").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "GET {path}");
        assert_eq!(r.headers()["location"], "/console/login", "GET {path}");
    }
    assert_eq!(c.state().await, before, "nothing changed");
}

#[tokio::test]
async fn every_change_needs_the_right_role() {
    let c = spawn(false).await;
    let before = c.state().await;
    // Hosts change nothing at all; operators do not cancel events.
    let (o, _) = (c.order, c.ticket);
    let mut refused: Vec<(&str, &str, Method, String, Value)> = changes(&c)
        .into_iter()
        .map(|(m, p, b)| ("host", c.host.as_str(), m, p, b))
        .collect();
    refused.push((
        "operator",
        c.operator.as_str(),
        Method::POST,
        "/console/api/events/gig/cancel".into(),
        json!({"reason": "attack"}),
    ));
    for (who, token, method, path, body) in refused {
        let r = c.send_json(method.clone(), &path, token, &body).await;
        assert_shape(
            r,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{who}: {method} {path}"),
        )
        .await;
    }
    // A host signed in with a session is refused the same way in the HTML forms.
    let (session, csrf) = c.sign_in("hank@floodgate.test").await;
    for path in [
        format!("/console/orders/{o}/refund"),
        format!("/console/orders/{o}/resend"),
        format!("/console/orders/{o}/email"),
        format!("/console/tickets/{}/transfer", c.ticket),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("reason", "x"),
            ("email", "a@example.org"),
            ("name", "M"),
        ];
        let r = c.submit(&session, &path, &form).await;
        // The forms answer with a page saying why, with the role's status.
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "host form {path}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("role=\"alert\"") && html.contains("your role may not do this"),
            "host form {path}: {html}"
        );
    }
    // A host sees only the events on its token: none here.
    for path in [
        "/console/api/events/gig",
        "/console/api/events/gig/admission",
        "/console/api/events/gig/audit",
    ] {
        let r = c.get(path, &c.host).await;
        assert!(
            matches!(r.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "host reads {path}: {}",
            r.status()
        );
    }
    let listed = c.get_json("/console/api/events", &c.host).await;
    assert_eq!(listed, json!([]), "a host lists only its events");
    assert_eq!(c.state().await, before, "nothing changed");
    // The same calls by an admin do work, so the refusals were about the role.
    let pause = json!({"mode": "paused", "reason": "check"});
    let r = c.set_queue("gig", &c.admin, &pause).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn session_changes_need_the_csrf_token_whatever_the_content_type() {
    let c = spawn(false).await;
    let h = &c.http;
    let (session, csrf) = c.sign_in("alice@floodgate.test").await;
    let before = c.state().await;
    for (method, path, body) in changes(&c) {
        let bodies: Vec<(&str, Option<&str>, &str, Vec<u8>)> = vec![
            (
                "JSON, no token",
                Some("application/json"),
                "",
                body.to_string().into_bytes(),
            ),
            (
                "JSON, a wrong token",
                Some("application/json"),
                "wrong",
                body.to_string().into_bytes(),
            ),
            (
                "JSON, another session's token",
                Some("application/json"),
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                body.to_string().into_bytes(),
            ),
            // What a cross-site HTML form can send without a preflight.
            (
                "a form post",
                Some("application/x-www-form-urlencoded"),
                "",
                b"reason=attack&csrf=guess".to_vec(),
            ),
            (
                "a form post naming JSON later",
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                "",
                b"{}".to_vec(),
            ),
            (
                "text/plain",
                Some("text/plain"),
                "",
                body.to_string().into_bytes(),
            ),
            (
                "multipart",
                Some("multipart/form-data; boundary=x"),
                "",
                b"--x--".to_vec(),
            ),
            ("no content type", None, "", Vec::new()),
        ];
        for (how, content_type, token, bytes) in bodies {
            let mut req = h
                .request(method.clone(), c.url(&path))
                .header("cookie", &session)
                .body(bytes);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if !token.is_empty() {
                req = req.header("x-csrf-token", token);
            }
            let r = req.send().await.unwrap();
            assert_shape(
                r,
                StatusCode::FORBIDDEN,
                "csrf",
                &format!("{method} {path}, {how}"),
            )
            .await;
        }
    }
    // The HTML forms check their field.
    let o = c.order;
    for path in [
        format!("/console/orders/{o}/refund"),
        format!("/console/orders/{o}/email"),
        format!("/console/tickets/{}/transfer", c.ticket),
        "/console/logout".into(),
    ] {
        for csrf_field in [None, Some("wrong"), Some("")] {
            let mut form = vec![
                ("reason", "x"),
                ("email", "a@example.org"),
                ("name", "M"),
                ("override_policy", "true"),
            ];
            if let Some(v) = csrf_field {
                form.push(("csrf", v));
            }
            let (status, _) = c.post(&session, &path, &form).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "form {path} with csrf {csrf_field:?}"
            );
        }
    }
    assert_eq!(c.state().await, before, "nothing changed");
    // Still signed in (logout without the token did not log out), and the right token works.
    let resend = format!("/console/api/orders/{o}/resend");
    let r = c.browser_post(&resend, &session, &csrf).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_cannot_be_fixed_and_die_at_logout_and_at_the_next_login() {
    let c = spawn(true).await;
    let h = &c.http;
    let api = |cookie: String| {
        let h = h.clone();
        let url = c.url("/console/api/events");
        async move {
            h.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // An attacker plants a session id of their choosing before the victim signs in.
    let planted = "fg_console=attacker-chosen-session-id-0123456789abcdef";
    let r = h
        .post(c.url("/console/login"))
        .header("cookie", planted)
        .form(&[("email", "olga@floodgate.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let raw = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let first = session_of(&r).unwrap();
    assert_ne!(first, planted, "the server picks the id");
    assert_eq!(api(planted.into()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api(first.clone()).await, StatusCode::OK);
    // Flags: not readable by scripts, never sent cross-site, only over TLS, only to the console.
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
        assert!(raw.split("; ").any(|f| f == flag), "{flag} missing: {raw}");
    }
    let id = first.trim_start_matches("fg_console=");
    assert!(id.len() >= 43, "256 random bits: {id}");

    // Signing in again from the same browser: a new id, and the old one is dead.
    let again = h
        .post(c.url("/console/login"))
        .header("cookie", &first)
        .form(&[("email", "olga@floodgate.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let second = session_of(&again).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        api(first.clone()).await,
        StatusCode::UNAUTHORIZED,
        "the replaced session is dead"
    );
    assert_eq!(api(second.clone()).await, StatusCode::OK);

    // Logging out kills the session server-side, not just the cookie.
    let (_, page) = c.page(&second, "/console/").await;
    let csrf = support::csrf_of(&page);
    let out = c
        .submit(&second, "/console/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure"),
        "{cleared}"
    );
    assert_eq!(
        api(second).await,
        StatusCode::UNAUTHORIZED,
        "dead after logout"
    );

    // A throttled sign-in says when to come back.
    for _ in 0..5 {
        h.post(c.url("/console/login"))
            .form(&[
                ("email", "hank@floodgate.test"),
                ("password", "wrong password!!"),
            ])
            .send()
            .await
            .unwrap();
    }
    let throttled = h
        .post(c.url("/console/login"))
        .form(&[("email", "hank@floodgate.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert!(session_of(&throttled).is_none());
}

#[tokio::test]
async fn malformed_input_gets_4xx_in_the_error_shape_and_changes_nothing() {
    let c = spawn(false).await;
    let h = &c.http;
    let before = c.state().await;
    let send = |method: Method, path: String, body: Vec<u8>| {
        h.request(method, c.url(&path))
            .bearer_auth(&c.admin)
            .header("content-type", "application/json")
            .body(body)
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = new_event("fresh");
        edit(&mut v);
        v.to_string().into_bytes()
    };
    let o = c.order;
    let mut cases: Vec<(String, reqwest::RequestBuilder, StatusCode)> = Vec::new();
    for (method, path, _) in changes(&c) {
        for (how, body, status) in [
            ("empty", Vec::new(), StatusCode::BAD_REQUEST),
            (
                "truncated",
                b"{\"reason\": \"x".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            ("an array", b"[]".to_vec(), StatusCode::BAD_REQUEST),
            (
                "invalid UTF-8",
                b"{\"reason\": \"\xff\"}".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "nested deep",
                format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "over the limit",
                vec![b' '; 300 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            // Routes without a body ignore what is sent; the rest must refuse it.
            if path.ends_with("/resend") || path.ends_with("/resend-undelivered") {
                continue;
            }
            cases.push((
                format!("{method} {path}: {how}"),
                send(method.clone(), path.clone(), body),
                status,
            ));
        }
    }
    let nul = "Ni\u{0}ght";
    for (what, body) in [
        ("NUL in the title", with(&|v| v["title"] = json!(nul))),
        (
            "NUL in a tier name",
            with(&|v| v["tiers"][0]["name"] = json!(nul)),
        ),
        (
            "NUL in the meeting details",
            with(&|v| v["meeting"]["room"] = json!(nul)),
        ),
        (
            "NUL in a meeting key",
            with(&|v| v["meeting"][nul] = json!("x")),
        ),
        (
            "capacity beyond i32",
            with(&|v| v["tiers"][0]["capacity"] = json!(1u64 << 40)),
        ),
        (
            "a date that is not one",
            with(&|v| v["starts_at"] = json!("tomorrow")),
        ),
        (
            "year 10000",
            with(&|v| v["starts_at"] = json!("+10000-01-01T00:00:00Z")),
        ),
    ] {
        cases.push((
            what.into(),
            send(Method::POST, "/console/api/events".into(), body),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    for (what, path, body) in [
        (
            "NUL in a refund reason",
            format!("/console/api/orders/{o}/refund"),
            json!({"reason": nul, "override_policy": true}),
        ),
        (
            "NUL in an admission reason",
            "/console/api/events/gig/admission".into(),
            json!({"mode": "paused", "reason": nul}),
        ),
        (
            "NUL in a cancel reason",
            "/console/api/events/gig/cancel".into(),
            json!({"reason": nul}),
        ),
        (
            "NUL in a transfer name",
            format!("/console/api/tickets/{}/transfer", c.ticket),
            json!({"email": "a@example.org", "name": nul}),
        ),
        (
            "negative refund",
            format!("/console/api/orders/{o}/refund"),
            json!({"reason": "x", "amount_cents": -5}),
        ),
        (
            "refund beyond i64",
            format!("/console/api/orders/{o}/refund"),
            json!({"reason": "x", "amount_cents": 1e30}),
        ),
        (
            "rate beyond u32",
            "/console/api/events/gig/admission".into(),
            json!({"rate_per_minute": 1u64 << 40}),
        ),
        (
            "an unknown mode",
            "/console/api/events/gig/admission".into(),
            json!({"mode": "open_sesame"}),
        ),
    ] {
        let method = if path.ends_with("/admission") {
            Method::PUT
        } else {
            Method::POST
        };
        cases.push((
            what.into(),
            send(method, path, body.to_string().into_bytes()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    for (what, path) in [
        ("order id not a uuid", "/console/api/orders/42".to_owned()),
        (
            "ticket id not a uuid",
            "/console/api/tickets/x/transfer".to_owned(),
        ),
        (
            "search with a NUL",
            "/console/api/search?q=bu%00yer".to_owned(),
        ),
        ("search without q", "/console/api/search".to_owned()),
        (
            "audit limit not a number",
            "/console/api/events/gig/audit?limit=lots".to_owned(),
        ),
        (
            "event slug with a NUL",
            "/console/api/events/g%00ig".to_owned(),
        ),
        (
            "admission of a NUL slug",
            "/console/api/events/g%00ig/admission".to_owned(),
        ),
    ] {
        let method = if path.ends_with("/transfer") {
            Method::POST
        } else {
            Method::GET
        };
        cases.push((
            what.into(),
            h.request(method, c.url(&path))
                .bearer_auth(&c.admin)
                .json(&json!({"email": "a@example.org", "name": "M"})),
            StatusCode::BAD_REQUEST,
        ));
    }
    for (what, req, status) in cases {
        let r = req.send().await.unwrap();
        let got = r.status();
        // The exact 4xx may be 400, 404 or 422 depending on where the input is refused;
        // what matters is a client error, in the error shape, and no change.
        assert!(
            got.is_client_error(),
            "{what}: {got} (wanted about {status})"
        );
        let b = error_of(r, &what).await;
        assert!(
            b["error"].is_string() && b["message"].is_string(),
            "{what}: {b}"
        );
    }
    // A malformed login form is refused without a crash or a session.
    for form in [
        "email=x",
        "",
        "password=only",
        "email=%00&password=%00%00%00%00%00%00%00%00%00%00%00%00",
    ] {
        let r = h
            .post(c.url("/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "login {form:?}: {}",
            r.status()
        );
        assert!(session_of(&r).is_none());
    }
    assert_eq!(c.state().await, before, "nothing changed");
    let r = c.get("/healthz", "").await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// An operator's `Idempotency-Key` is bound to what it did. Sent again with the same
/// request it answers with the first result, as a retry should; with another body,
/// another action, another target or from another operator it is refused (422
/// `idempotency_key_reused`) and changes nothing — before, a reused key answered
/// "done" with the first action's result for an action that never ran.
#[tokio::test]
async fn an_idempotency_key_cannot_be_replayed_for_something_else() {
    let c = spawn(false).await;
    let h = &c.http;
    let post = |token: &str, path: &str, key: &str, body: &Value| {
        h.post(c.url(path))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let o = c.order;
    let refund = format!("/console/api/orders/{o}/refund");
    let asked = json!({"amount_cents": 500, "reason": "the stream started late"});
    let first = post(&c.admin, &refund, "fix-1", &asked).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let before = c.state().await;
    let again = post(&c.admin, &refund, "fix-1", &asked).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the same request is a retry"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, json!({"repeated": true, "result": first}));
    assert_eq!(c.state().await, before, "a retry does nothing");

    let transfer = format!("/console/api/tickets/{}/transfer", c.ticket);
    let resend = format!("/console/api/orders/{o}/resend");
    for (what, token, path, body) in [
        (
            "a larger amount",
            &c.admin,
            &refund,
            json!({"amount_cents": 2000, "reason": "the stream started late"}),
        ),
        (
            "another reason",
            &c.admin,
            &refund,
            json!({"amount_cents": 500, "reason": "goodwill"}),
        ),
        (
            "the policy overridden",
            &c.admin,
            &refund,
            json!({"amount_cents": 500, "reason": "the stream started late", "override_policy": true}),
        ),
        ("another action on the order", &c.admin, &resend, json!({})),
        (
            "a transfer of its ticket",
            &c.admin,
            &transfer,
            json!({"email": "mallory@example.org", "name": "Mallory"}),
        ),
        ("another operator", &c.operator, &refund, asked.clone()),
    ] {
        let r = post(token, path, "fix-1", &body).await.unwrap();
        assert_shape(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            what,
        )
        .await;
    }
    assert_eq!(c.state().await, before, "a refused key changes nothing");

    // The same action with the same (empty) body on another target.
    let r = c.create_event(&c.admin, &new_event("fresh")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bulk = |slug: &str| format!("/console/api/events/{slug}/resend-undelivered");
    let r = post(&c.admin, &bulk("gig"), "bulk-1", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before = c.state().await;
    let r = post(&c.admin, &bulk("fresh"), "bulk-1", &json!({}))
        .await
        .unwrap();
    assert_shape(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "another event",
    )
    .await;
    assert_eq!(c.state().await, before);
}

/// Sign-in attempts are counted before the password is checked: a parallel burst of
/// 20 wrong passwords (from 20 addresses, so only the account's limit applies) gets 5
/// checked and the rest 429 — before, every attempt of a burst read "no failures
/// yet" and all 20 were checked. The right password is refused too until the window
/// has passed.
#[tokio::test]
async fn a_parallel_burst_of_wrong_passwords_gets_five_guesses() {
    let c = spawn(false).await;
    let h = &c.http;
    let sign_in = |client: String, password: &'static str| {
        h.post(c.url("/console/login"))
            .header("x-forwarded-for", client)
            .form(&[("email", "olga@floodgate.test"), ("password", password)])
            .send()
    };
    let burst = (0..20).map(|i| sign_in(format!("198.51.100.{i}"), "wrong password!!"));
    let statuses: Vec<StatusCode> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, throttled), (5, 15), "{statuses:?}");

    let r = sign_in("203.0.113.7".into(), PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "still throttled");
    assert!(session_of(&r).is_none());
    // The window passes (the failures age out) and the right password works again.
    sqlx::query("UPDATE login_attempts SET at = at - interval '16 minutes'")
        .execute(&c.db.pool)
        .await
        .unwrap();
    let r = sign_in("203.0.113.7".into(), PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(session_of(&r).is_some());
}

/// An event title with a line break (or any control character) is refused where it is
/// typed — the API and the set-up page's edit form — with a 400 that says why, and
/// nothing is written: such a title would otherwise reach calendar invites, email
/// subjects and the waiting room's pages.
#[tokio::test]
async fn an_event_title_with_control_characters_is_refused() {
    let c = spawn(false).await;
    let before = c.state().await;
    for title in [
        "Gig\r\nATTENDEE:mailto:evil@x",
        "Gig\nX-INJECTED:1",
        "Gig\rfolded",
        "Tab\there",
        "Bell\u{7}",
        "Next\u{85}line",
        "Line\u{2028}separator",
    ] {
        let mut body = new_event("fresh");
        body["title"] = json!(title);
        let r = c.create_event(&c.admin, &body).await;
        assert_shape(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", title).await;
    }
    assert_eq!(c.state().await, before, "no event created");

    let (session, csrf) = c.sign_in("olga@floodgate.test").await;
    let tier = c.tier_of("gig").await;
    let (price, capacity) = (
        format!("tier_{tier}_price"),
        format!("tier_{tier}_capacity"),
    );
    let form = [
        ("csrf", csrf.as_str()),
        ("action_key", "edit-1"),
        ("title", "The Gig\r\nATTENDEE:mailto:evil@x"),
        ("timezone", "Europe/Amsterdam"),
        ("meeting_provider", "jitsi"),
        ("meeting_url", ""),
        ("refundable_until_hours_before", "48"),
        (&price, "20.00"),
        (&capacity, "10"),
        ("reason", "rename"),
    ];
    let r = c.submit(&session, "/console/events/gig/edit", &form).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text().await.unwrap().contains("line breaks"),
        "the page says why"
    );
    let title: String = sqlx::query_scalar("SELECT title FROM events WHERE slug = 'gig'")
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(title, "The Gig");
    assert_eq!(c.state().await, before, "nothing changed");
}
