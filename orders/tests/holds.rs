//! Holding inventory against the real Postgres, under contention.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::spawn_app;
use tokio::task::JoinSet;

const NO_PAYMENTS: &str = "http://127.0.0.1:9";

#[tokio::test]
async fn a_thousand_buyers_race_for_the_last_hundred_seats() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("race", &[("ga", 1100, 2500)]).await;
    // 1,000 already sold: 100 left.
    sqlx::query("UPDATE tiers SET sold = 1000")
        .execute(&app.db.pool)
        .await
        .unwrap();

    let mut tasks = JoinSet::new();
    for seq in 0..1000 {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/api/events/race/holds"),
            app.admission("race", seq),
        );
        tasks.spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"tier": "ga", "quantity": 1, "email": format!("b{seq}@example.org"), "name": "B"}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
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
    assert_eq!(
        app.count("SELECT sum(quantity) FROM holds WHERE status = 'active'")
            .await,
        100
    );
    assert_eq!(
        app.count("SELECT count(*) FROM order_events WHERE action = 'hold.create'")
            .await,
        100
    );

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
    sqlx::query("UPDATE tiers SET sold = 9")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for seq in 0..20 {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/api/events/last/holds"),
            app.admission("last", seq),
        );
        tasks.spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"tier": "ga", "quantity": 2, "email": format!("b{seq}@example.org"), "name": "B"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), StatusCode::CONFLICT);
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
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/api/events/once/holds"),
            token.clone(),
        );
        // Both tiers at once: two writers, one admission.
        let tier = if i % 2 == 0 { "a" } else { "b" };
        tasks.spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"tier": tier, "quantity": 1, "email": "b@example.org", "name": "B"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
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

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("strict", &[("ga", 10, 1000)]).await;
    app.event("other", &[("ga", 10, 1000)]).await;
    let token = app.admission("strict", 1);
    let url = app.url("/api/events/strict/holds");
    let body = |q: Value, tier: &str, email: &str| json!({"tier": tier, "quantity": q, "email": email, "name": "Ada"});
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "quantity 0",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body(json!(0), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "negative",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body(json!(-3), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "over the per-order limit",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body(json!(11), "ga", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "quantity not a number",
            app.http.post(&url).bearer_auth(&token).json(&body(
                json!("two"),
                "ga",
                "a@example.org",
            )),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown tier",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body(json!(1), "vip", "a@example.org")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "malformed email",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body(json!(1), "ga", "not-an-email")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "wrong content type",
            app.http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "text/plain")
                .body("tier=ga"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            app.http
                .post(&url)
                .bearer_auth(&token)
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
    let h2: Value = app.hold("back", &b, "ga", 1).await.json().await.unwrap();
    assert_eq!(app.tier("ga").await, (2, 0, 2));

    // Released by its buyer (with someone else's admission: refused).
    let foreign = app
        .http
        .delete(app.url(&format!("/api/holds/{}", h1["hold_id"].as_str().unwrap())))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let released = app
        .http
        .delete(app.url(&format!("/api/holds/{}", h1["hold_id"].as_str().unwrap())))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.tier("ga").await, (2, 0, 1));
    assert_eq!(
        app.room.snapshot(&event).await.unwrap().active,
        2,
        "admission 1 may still buy"
    );

    // Expired: the sweeper returns it.
    sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(
            h2["hold_id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        )
        .execute(&app.db.pool)
        .await
        .unwrap();
    let swept = orders::holds::sweep_expired(&app.db.pool, 100)
        .await
        .unwrap();
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
    assert_eq!(
        app.count("SELECT count(*) FROM holds WHERE status = 'expired'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM order_events WHERE action = 'hold.expire'")
            .await,
        1
    );
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
    sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    for h in orders::holds::sweep_expired(&app.db.pool, 10)
        .await
        .unwrap()
    {
        orders::admissions::hold_closed(&app.state, &h)
            .await
            .unwrap();
    }
    assert_eq!(mode().await, waitroom::settings::Mode::On);
    assert!(created["hold_id"].is_string());
    app.cleanup(&["follow"]).await;
}
