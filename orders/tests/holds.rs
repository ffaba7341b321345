//! Holding inventory against the real Postgres, under contention.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, hold_id_of, spawn_app};
use tokio::task::JoinSet;

const NO_PAYMENTS: &str = "http://127.0.0.1:9";

/// Sends `n` holds for `slug` at once, the `i`th with `admission(i)` and `body(i)`: each
/// answer's status and body, in the order they came back.
async fn at_once(
    app: &TestApp,
    slug: &str,
    n: u64,
    admission: impl Fn(u64) -> String,
    body: impl Fn(u64) -> Value,
) -> Vec<(StatusCode, Value)> {
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let req = app.post(&format!("/api/events/{slug}/holds"));
        let req = req.bearer_auth(admission(i)).json(&body(i));
        tasks.spawn(async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    answers
}

/// `n` buyers at once, each with an admission and an address of their own, each
/// holding `quantity` seats of `ga`.
async fn buyers_at_once(
    app: &TestApp,
    slug: &str,
    n: u64,
    quantity: i64,
) -> Vec<(StatusCode, Value)> {
    let admission = |seq| app.admission(slug, seq);
    let body = |seq| json!({"tier": "ga", "quantity": quantity, "email": format!("b{seq}@example.org"), "name": "B"});
    at_once(app, slug, n, admission, body).await
}

#[tokio::test]
async fn a_thousand_buyers_race_for_the_last_hundred_seats() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("race", &[("ga", 1100, 2500)]).await;
    // 1,000 already sold: 100 left.
    app.exec("UPDATE tiers SET sold = 1000").await;

    let (mut won, mut lost) = (0, 0);
    for (status, body) in buyers_at_once(&app, "race", 1000, 1).await {
        match status {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "sold_out", "{body}");
                lost += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((won, lost), (100, 900));
    assert_eq!(app.tier("ga").await, (1100, 1000, 100));
    app.assert_count(
        "SELECT sum(quantity) FROM holds WHERE status = 'active'",
        100,
    )
    .await;
    app.assert_count(
        "SELECT count(*) FROM order_events WHERE action = 'hold.create'",
        100,
    )
    .await;

    // And the database itself refuses an oversell, whatever the code does.
    let err = sqlx::query("UPDATE tiers SET held = held + 1")
        .execute(&app.db.pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("tiers_no_oversell")
    );
    app.cleanup(&["race"]).await;
}

#[tokio::test]
async fn one_seat_left_is_not_split_between_pairs() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("last", &[("ga", 10, 2500)]).await;
    app.exec("UPDATE tiers SET sold = 9").await;
    for (status, body) in buyers_at_once(&app, "last", 20, 2).await {
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    assert_eq!(app.tier("ga").await, (10, 9, 0));
    let single = app.hold("last", &app.admission("last", 99), "ga", 1).await;
    assert_eq!(single.status(), StatusCode::CREATED);
    assert_eq!(app.tier("ga").await, (10, 9, 1));
    app.cleanup(&["last"]).await;
}

#[tokio::test]
async fn one_admission_holds_once_even_when_it_races_itself() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("once", &[("a", 100, 1000), ("b", 100, 1000)])
        .await;
    let token = app.admission("once", 1);
    // Both tiers at once: two writers, one admission.
    let tier = |i: u64| if i.is_multiple_of(2) { "a" } else { "b" };
    let answers = at_once(
        &app,
        "once",
        20,
        |_| token.clone(),
        |i| json!({"tier": tier(i), "quantity": 1, "email": "b@example.org", "name": "B"}),
    )
    .await;
    let mut created = 0;
    for (status, body) in answers {
        if status == StatusCode::CREATED {
            created += 1;
        } else {
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::CONFLICT, Some("hold_exists"))
            );
            assert!(
                body["hold_id"].is_string(),
                "the 409 names the hold: {body}"
            );
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.count("SELECT sum(held) FROM tiers").await, 1);
    app.cleanup(&["once"]).await;
}

/// Two orders replicas, each with its own hold writer per tier, on one database: the
/// seats and the one-hold-per-admission rule are kept by the database (the tier row
/// lock, `tiers_no_oversell`, `holds_one_live_per_admission`), not by one writer
/// being the only one (issue 17).
#[tokio::test]
async fn two_replicas_writing_holds_keep_every_invariant() {
    let app = spawn_app(NO_PAYMENTS).await;
    let replica = app.replica().await;
    app.event("pair", &[("a", 1100, 2500), ("b", 1100, 2500)])
        .await;
    app.exec("UPDATE tiers SET sold = 1000").await;
    let bases = [app.base.clone(), replica.base.clone()];

    // One admission sent 20 times at once, to both replicas and both tiers; then 800
    // buyers for the 199 seats left, spread the same way.
    let twice = app.admission("pair", 9999);
    let send = |i: u64, token: String, email: String| {
        let tier = if i.is_multiple_of(2) { "a" } else { "b" };
        let base = &bases[(i / 2 % 2) as usize];
        let req = app
            .http
            .post(format!("{base}/api/events/pair/holds"))
            .bearer_auth(token)
            .json(&json!({"tier": tier, "quantity": 1, "email": email, "name": "B"}));
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        tasks.spawn(send(i, twice.clone(), "twice@example.org".into()));
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (StatusCode::CREATED, _) => created += 1,
            (status, body) => assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::CONFLICT, Some("hold_exists")),
                "{body}"
            ),
        }
    }
    assert_eq!(created, 1, "one admission, one hold across replicas");

    for i in 0..800u64 {
        tasks.spawn(send(
            i,
            app.admission("pair", i),
            format!("b{i}@example.org"),
        ));
    }
    let (mut won, mut sold_out) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (StatusCode::CREATED, _) => won += 1,
            (StatusCode::CONFLICT, body) if body["error"] == "sold_out" => sold_out += 1,
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!((won, sold_out), (199, 601));
    assert_eq!(app.tier("a").await, (1100, 1000, 100));
    assert_eq!(app.tier("b").await, (1100, 1000, 100));
    app.assert_count(
        "SELECT count(*) FROM (SELECT admission_jti FROM holds \
         GROUP BY admission_jti HAVING count(*) > 1) twice",
        0,
    )
    .await;
    app.cleanup(&["pair"]).await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("strict", &[("ga", 10, 1000)]).await;
    app.event("other", &[("ga", 10, 1000)]).await;
    let token = app.admission("strict", 1);
    let url = app.url("/api/events/strict/holds");
    let body = |q: Value, tier: &str, email: &str| json!({"tier": tier, "quantity": q, "email": email, "name": "Ada"});
    // A hold with this event's admission.
    let admitted = || app.http.post(&url).bearer_auth(&token);
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "quantity 0",
            admitted().json(&body(json!(0), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "negative",
            admitted().json(&body(json!(-3), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "over the per-order limit",
            admitted().json(&body(json!(11), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "quantity not a number",
            admitted().json(&body(json!("two"), "ga", "a@example.org")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown tier",
            admitted().json(&body(json!(1), "vip", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "malformed email",
            admitted().json(&body(json!(1), "ga", "not-an-email")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "wrong content type",
            admitted()
                .header("content-type", "text/plain")
                .body("tier=ga"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            admitted()
                .header("content-type", "application/json")
                .body(vec![b' '; 200_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "no admission",
            app.http
                .post(&url)
                .json(&body(json!(1), "ga", "a@example.org")),
            StatusCode::UNAUTHORIZED,
            "missing_token",
        ),
        (
            "another event's admission",
            app.http
                .post(&url)
                .bearer_auth(app.admission("other", 1))
                .json(&body(json!(1), "ga", "a@example.org")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "unknown event",
            app.http
                .post(app.url("/api/events/nope/holds"))
                .bearer_auth(&token)
                .json(&body(json!(1), "ga", "a@example.org")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (what, req, status, code) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], code, "{what}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM holds").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM order_events").await, 0);
    assert_eq!(app.count("SELECT sum(held) FROM tiers").await, 0);
    app.cleanup(&["strict", "other"]).await;
}

/// Released or expired, a hold's seats come back at once; its admission is not spent
/// (it may hold again until it expires), so its `max_active` slot stays taken — freeing
/// it on release let one buyer release and re-hold while others were admitted into it.
#[tokio::test]
async fn released_and_expired_holds_give_their_seats_back_and_keep_the_admission() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("back", &[("ga", 2, 1000)]).await;
    let event = waitroom::EventSlug::parse("back").unwrap();
    // Two admitted visitors with slots in the waiting room.
    let a = app.admission("back", 1);
    let b = app.admission("back", 2);
    app.room.join(&event, "v1").await.unwrap();
    app.room.join(&event, "v2").await.unwrap();
    let admitter =
        waitroom::admission::Admitter::new(app.room.clone(), std::time::Duration::from_secs(2));
    while app.room.snapshot(&event).await.unwrap().head < 2 {
        admitter.step(&event).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.room.snapshot(&event).await.unwrap().active, 2);

    let h1: Value = app.hold("back", &a, "ga", 1).await.json().await.unwrap();
    let h2 = hold_id_of(app.hold("back", &b, "ga", 1).await).await;
    assert_eq!(app.tier("ga").await, (2, 0, 2));

    // Released by its buyer (with someone else's admission: refused).
    let h1 = h1["hold_id"].as_str().unwrap();
    let foreign = app.release(h1, &b).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let released = app.release(h1, &a).await;
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.tier("ga").await, (2, 0, 1));
    assert_eq!(
        app.room.snapshot(&event).await.unwrap().active,
        2,
        "admission 1 may still buy"
    );

    // Expired: the sweeper returns it.
    let swept = app.lapse_hold(&h2).await;
    assert_eq!(swept.len(), 1);
    for h in &swept {
        orders::admissions::hold_closed(&app.state, h)
            .await
            .unwrap();
    }
    assert_eq!(app.tier("ga").await, (2, 0, 0));
    assert_eq!(
        app.room.snapshot(&event).await.unwrap().active,
        2,
        "admission 2 may still buy"
    );
    app.assert_count("SELECT count(*) FROM holds WHERE status = 'expired'", 1)
        .await;
    app.assert_count(
        "SELECT count(*) FROM order_events WHERE action = 'hold.expire'",
        1,
    )
    .await;
    assert!(
        orders::holds::sweep_expired(&app.db.pool, 100)
            .await
            .unwrap()
            .is_empty()
    );
    app.cleanup(&["back"]).await;
}

#[tokio::test]
async fn the_queue_follows_the_inventory_to_sold_out_and_back() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("follow", &[("ga", 1, 1000)]).await;
    let event = waitroom::EventSlug::parse("follow").unwrap();
    let created: Value = app
        .hold("follow", &app.admission("follow", 1), "ga", 1)
        .await
        .json()
        .await
        .unwrap();
    // The next buyer finds nothing left: the queue closes its doors.
    let r = app
        .hold("follow", &app.admission("follow", 2), "ga", 1)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let mode = || async { app.room.settings(&event).await.unwrap().unwrap().mode };
    assert_eq!(mode().await, waitroom::settings::Mode::SoldOut);
    // The hold lapses: seats are back, and so is the queue.
    for h in app.lapse_holds().await {
        orders::admissions::hold_closed(&app.state, &h)
            .await
            .unwrap();
    }
    assert_eq!(mode().await, waitroom::settings::Mode::On);
    assert!(created["hold_id"].is_string());
    app.cleanup(&["follow"]).await;
}
