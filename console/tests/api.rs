//! The console's operator API against the real Postgres and Redis: a fresh database and
//! key prefix per test.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use waitroom::EventSlug;
use waitroom::settings::Mode;

use support::event_body;

#[tokio::test]
async fn creating_an_event_stores_it_audits_it_and_arms_its_queue() {
    let app = support::spawn().await;
    let r = app.create_event(&app.operator, &event_body("night")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["slug"], "night");
    assert_eq!(body["tiers"][1]["available"], 400);

    let live = app.queue("night").await;
    assert_eq!(
        (live.mode, live.rate_per_minute, live.max_active),
        (Mode::On, 120, 50)
    );
    let audit: (String, String) =
        sqlx::query_as("SELECT actor, action FROM operator_audit WHERE subject = 'night'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(audit, ("operator:olga".into(), "event.create".into()));

    let again = app.create_event(&app.admin, &event_body("night")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "slug_taken");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    app.purge(&["night"]).await;
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let app = support::spawn().await;
    let mut bad_tier = event_body("bad");
    bad_tier["tiers"][0]["capacity"] = json!(-5);
    let mut unknown_field = event_body("bad");
    unknown_field["surprise"] = json!(true);
    let mut prequeue_without_opening = event_body("bad");
    prequeue_without_opening["queue"] = json!({"mode": "prequeue"});
    for (what, body, status) in [
        (
            "negative capacity",
            bad_tier,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("unknown field", unknown_field, StatusCode::BAD_REQUEST),
        (
            "prequeue without opens_at",
            prequeue_without_opening,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = app.create_event(&app.admin, &body).await;
        assert_eq!(r.status(), status, "{what}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"].is_string() && e["message"].is_string(),
            "{what}: {e}"
        );
    }
    let not_json = app
        .http
        .post(app.url("/console/api/events"))
        .bearer_auth(&app.admin)
        .header("content-type", "text/plain")
        .body("slug=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = app
        .http
        .post(app.url("/console/api/events"))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM tiers").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM operator_audit").await, 0);
    assert!(
        app.room.events().await.unwrap().is_empty(),
        "nothing reached redis"
    );
}

#[tokio::test]
async fn only_staff_with_a_valid_token_may_change_things() {
    let app = support::spawn().await;
    let none = app.create_event("", &event_body("x")).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let forged = app
        .create_event("fgo_not-a-real-token", &event_body("x"))
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let host = app.create_event(&app.host, &event_body("x")).await;
    assert_eq!(host.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

    assert_eq!(
        app.create_event(&app.admin, &event_body("x"))
            .await
            .status(),
        StatusCode::CREATED
    );
    // Hosts read only the events on their token.
    let not_theirs = app.get("/console/api/events/x/admission", &app.host).await;
    assert_eq!(not_theirs.status(), StatusCode::NOT_FOUND);
    sqlx::query(
        "UPDATE operator_tokens SET event_ids = ARRAY(SELECT id FROM events WHERE slug = 'x') WHERE name = 'hank'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let host_read = app.get("/console/api/events/x/admission", &app.host).await;
    assert_eq!(host_read.status(), StatusCode::OK);
    let host_write = app
        .set_queue("x", &app.host, &json!({"mode": "paused"}))
        .await;
    assert_eq!(host_write.status(), StatusCode::FORBIDDEN);
    let live = app.queue("x").await;
    assert_eq!(live.mode, Mode::On);
    app.purge(&["x"]).await;
}

#[tokio::test]
async fn admission_changes_are_live_in_redis_and_audited_with_before_and_after() {
    let app = support::spawn().await;
    app.create_event(&app.admin, &event_body("live")).await;
    let slow = json!({"rate_per_minute": 600, "mode": "paused", "reason": "payments slow"});
    let r = app.set_queue("live", &app.operator, &slow).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["mode"].as_str(), body["rate_per_minute"].as_u64()),
        (Some("paused"), Some(600))
    );
    assert_eq!(body["max_active"], 50, "absent fields keep their value");

    let live = app.queue("live").await;
    assert_eq!((live.mode, live.rate_per_minute), (Mode::Paused, 600));
    let (before, after, reason): (Value, Value, Option<String>) = sqlx::query_as(
        "SELECT before, after, reason FROM operator_audit WHERE action = 'admission.update'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(before["rate_per_minute"], 120);
    assert_eq!(after["rate_per_minute"], 600);
    assert_eq!(after["mode"], "paused");
    assert_eq!(reason.as_deref(), Some("payments slow"));
    let stored: (String, i32) =
        sqlx::query_as("SELECT queue_mode, queue_rate_per_minute FROM events WHERE slug = 'live'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, ("paused".into(), 600));

    // An invalid change is refused and changes nothing anywhere.
    let bad = app
        .set_queue("live", &app.operator, &json!({"max_active": 0}))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let live = app.queue("live").await;
    assert_eq!(live.max_active, 50);
    let audits = "SELECT count(*) FROM operator_audit WHERE action = 'admission.update'";
    assert_eq!(app.count(audits).await, 1);
    let unknown = app
        .set_queue("nope", &app.operator, &json!({"mode": "on"}))
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.purge(&["live"]).await;
}

#[tokio::test]
async fn a_queue_lost_from_redis_comes_back_paused_never_admitting() {
    let app = support::spawn().await;
    app.create_event(&app.admin, &event_body("lost")).await;
    app.create_event(&app.admin, &{
        let mut e = event_body("free");
        e["queue"] = json!({"mode": "off"});
        e
    })
    .await;
    // Redis restarted without persistence.
    app.purge(&["lost", "free"]).await;

    assert_eq!(console::admission::mirror(&app.state).await.unwrap(), 2);
    let restored = app.queue("lost").await;
    assert_eq!(restored.mode, Mode::Paused);
    assert_eq!(
        restored.rate_per_minute, 120,
        "the operator's other settings survive"
    );
    assert_eq!(app.queue("free").await.mode, Mode::Off);
    assert_eq!(
        console::admission::mirror(&app.state).await.unwrap(),
        0,
        "idempotent"
    );
    app.purge(&["lost", "free"]).await;
}

/// Places handed out before the loss are never handed out again: the console marks
/// the queue, and restores it from the mark, also when an operator's change reaches
/// the lost queue before the mirror does.
#[tokio::test]
async fn a_lost_queue_comes_back_behind_every_place_handed_out_before() {
    use waitroom::queue::Joined;
    let app = support::spawn().await;
    app.create_event(&app.admin, &event_body("marked")).await;
    app.create_event(&app.admin, &event_body("changed")).await;
    let marked = EventSlug::parse("marked").unwrap();
    let changed = EventSlug::parse("changed").unwrap();
    for slug in [&marked, &changed] {
        for v in 0..40 {
            let j = app.room.join(slug, &format!("v{v}")).await.unwrap();
            assert!(matches!(j, Joined::Queued { .. }));
        }
    }
    assert_eq!(console::admission::mirror(&app.state).await.unwrap(), 0);
    let tail: i64 = sqlx::query_scalar(
        "SELECT tail FROM queue_marks m JOIN events e ON e.id = m.event_id WHERE e.slug = 'marked'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(tail, 40);

    app.purge(&["marked", "changed"]).await;
    // The operator resumes "changed" before the mirror has noticed the loss.
    let resume = json!({"mode": "on", "reason": "resume"});
    let r = app.set_queue("changed", &app.operator, &resume).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(console::admission::mirror(&app.state).await.unwrap(), 1);

    for slug in [&marked, &changed] {
        let snap = app.room.snapshot(slug).await.unwrap();
        assert!(
            snap.tail >= 40 + 50,
            "{slug}: tail {} must clear every old place and the margin",
            snap.tail
        );
        match app.room.join(slug, "newcomer").await.unwrap() {
            Joined::Queued { seq } => assert!(seq > 90, "{slug}: newcomer got {seq}"),
            other => panic!("{slug}: {other:?}"),
        }
    }
    assert_eq!(app.queue("marked").await.mode, Mode::Paused);
    assert_eq!(app.queue("changed").await.mode, Mode::On);
    app.purge(&["marked", "changed"]).await;
}

/// JSON Schema, and so the OpenAPI document, counts `120.0` as an integer: a body the
/// document allows is taken (it was refused as malformed), and a fraction still is not
/// (issue 19.14).
#[tokio::test]
async fn whole_number_floats_are_integers_as_the_schema_says() {
    let app = support::spawn().await;
    let mut body = event_body("floats");
    body["tiers"][0]["capacity"] = json!(40.0);
    let r = app.create_event(&app.admin, &body).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let change = json!({"rate_per_minute": 120.0, "max_active": 7.0, "reason": "floats"});
    let r = app.set_queue("floats", &app.admin, &change).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let q = app.queue("floats").await;
    assert_eq!((q.rate_per_minute, q.max_active), (120, 7));

    let fraction = json!({"rate_per_minute": 120.5, "reason": "floats"});
    let r = app.set_queue("floats", &app.admin, &fraction).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "bad_request");
    assert_eq!(
        app.queue("floats").await.rate_per_minute,
        120,
        "nothing changed"
    );
    app.purge(&["floats"]).await;
}
