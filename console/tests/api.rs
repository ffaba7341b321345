//! The console's operator API against the real Postgres and Redis: a fresh database and
//! key prefix per test.

mod support;

use std::net::SocketAddr;

use console::app::AppState;
use platform::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use waitroom::EventSlug;
use waitroom::queue::Waitroom;
use waitroom::settings::Mode;

struct App {
    addr: SocketAddr,
    db: TestDb,
    room: Waitroom,
    state: AppState,
    admin: String,
    operator: String,
    host: String,
    http: reqwest::Client,
    /// Stops the console when the test is done.
    _stop: platform::shutdown::Trigger,
}

async fn spawn_app() -> App {
    let support::TestConsole {
        addr,
        db,
        room,
        state,
        stop,
    } = support::spawn().await;
    let support::Tokens {
        admin,
        operator,
        host,
        ..
    } = support::tokens(&db).await;
    App {
        addr,
        db,
        room,
        state,
        admin,
        operator,
        host,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn create(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/console/api/events"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn cleanup(&self, slugs: &[&str]) {
        for s in slugs {
            self.room
                .purge(&EventSlug::parse(s).unwrap())
                .await
                .unwrap();
        }
    }
}

fn event(slug: &str) -> Value {
    json!({
        "slug": slug, "title": "Night of Rust",
        "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "refund_policy": {"refundable_until_hours_before": 24},
        "tiers": [
            {"code": "early", "name": "Early bird", "price_cents": 1500, "currency": "EUR", "capacity": 100},
            {"code": "ga", "name": "General", "price_cents": 2500, "currency": "EUR", "capacity": 400}
        ],
        "queue": {"mode": "on", "rate_per_minute": 120, "max_active": 50}
    })
}

#[tokio::test]
async fn creating_an_event_stores_it_audits_it_and_arms_its_queue() {
    let app = spawn_app().await;
    let r = app.create(&app.operator, &event("night")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["slug"], "night");
    assert_eq!(body["tiers"][1]["available"], 400);

    let live = app
        .room
        .settings(&EventSlug::parse("night").unwrap())
        .await
        .unwrap()
        .unwrap();
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

    let again = app.create(&app.admin, &event("night")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "slug_taken");
    assert_eq!(app.count("events").await, 1);
    app.cleanup(&["night"]).await;
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let app = spawn_app().await;
    let mut bad_tier = event("bad");
    bad_tier["tiers"][0]["capacity"] = json!(-5);
    let mut unknown_field = event("bad");
    unknown_field["surprise"] = json!(true);
    let mut prequeue_without_opening = event("bad");
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
        let r = app.create(&app.admin, &body).await;
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
    assert_eq!(app.count("events").await, 0);
    assert_eq!(app.count("tiers").await, 0);
    assert_eq!(app.count("operator_audit").await, 0);
    assert!(
        app.room.events().await.unwrap().is_empty(),
        "nothing reached redis"
    );
}

#[tokio::test]
async fn only_staff_with_a_valid_token_may_change_things() {
    let app = spawn_app().await;
    let none = app
        .http
        .post(app.url("/console/api/events"))
        .json(&event("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let forged = app.create("fgo_not-a-real-token", &event("x")).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let host = app.create(&app.host, &event("x")).await;
    assert_eq!(host.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("events").await, 0);

    assert_eq!(
        app.create(&app.admin, &event("x")).await.status(),
        StatusCode::CREATED
    );
    // Hosts read only the events on their token.
    let not_theirs = app
        .http
        .get(app.url("/console/api/events/x/admission"))
        .bearer_auth(&app.host)
        .send()
        .await
        .unwrap();
    assert_eq!(not_theirs.status(), StatusCode::NOT_FOUND);
    sqlx::query(
        "UPDATE operator_tokens SET event_ids = ARRAY(SELECT id FROM events WHERE slug = 'x') WHERE name = 'hank'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let host_read = app
        .http
        .get(app.url("/console/api/events/x/admission"))
        .bearer_auth(&app.host)
        .send()
        .await
        .unwrap();
    assert_eq!(host_read.status(), StatusCode::OK);
    let host_write = app
        .http
        .put(app.url("/console/api/events/x/admission"))
        .bearer_auth(&app.host)
        .json(&json!({"mode": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(host_write.status(), StatusCode::FORBIDDEN);
    let live = app
        .room
        .settings(&EventSlug::parse("x").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.mode, Mode::On);
    app.cleanup(&["x"]).await;
}

#[tokio::test]
async fn admission_changes_are_live_in_redis_and_audited_with_before_and_after() {
    let app = spawn_app().await;
    app.create(&app.admin, &event("live")).await;
    let r = app
        .http
        .put(app.url("/console/api/events/live/admission"))
        .bearer_auth(&app.operator)
        .json(&json!({"rate_per_minute": 600, "mode": "paused", "reason": "payments slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["mode"].as_str(), body["rate_per_minute"].as_u64()),
        (Some("paused"), Some(600))
    );
    assert_eq!(body["max_active"], 50, "absent fields keep their value");

    let live = app
        .room
        .settings(&EventSlug::parse("live").unwrap())
        .await
        .unwrap()
        .unwrap();
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
        .http
        .put(app.url("/console/api/events/live/admission"))
        .bearer_auth(&app.operator)
        .json(&json!({"max_active": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let live = app
        .room
        .settings(&EventSlug::parse("live").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.max_active, 50);
    let audits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM operator_audit WHERE action = 'admission.update'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(audits, 1);
    let unknown = app
        .http
        .put(app.url("/console/api/events/nope/admission"))
        .bearer_auth(&app.operator)
        .json(&json!({"mode": "on"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.cleanup(&["live"]).await;
}

#[tokio::test]
async fn a_queue_lost_from_redis_comes_back_paused_never_admitting() {
    let app = spawn_app().await;
    app.create(&app.admin, &event("lost")).await;
    app.create(&app.admin, &{
        let mut e = event("free");
        e["queue"] = json!({"mode": "off"});
        e
    })
    .await;
    let lost = EventSlug::parse("lost").unwrap();
    let free = EventSlug::parse("free").unwrap();
    // Redis restarted without persistence.
    app.room.purge(&lost).await.unwrap();
    app.room.purge(&free).await.unwrap();

    assert_eq!(console::admission::mirror(&app.state).await.unwrap(), 2);
    let restored = app.room.settings(&lost).await.unwrap().unwrap();
    assert_eq!(restored.mode, Mode::Paused);
    assert_eq!(
        restored.rate_per_minute, 120,
        "the operator's other settings survive"
    );
    assert_eq!(
        app.room.settings(&free).await.unwrap().unwrap().mode,
        Mode::Off
    );
    assert_eq!(
        console::admission::mirror(&app.state).await.unwrap(),
        0,
        "idempotent"
    );
    app.cleanup(&["lost", "free"]).await;
}

/// Places handed out before the loss are never handed out again: the console marks
/// the queue, and restores it from the mark, also when an operator's change reaches
/// the lost queue before the mirror does.
#[tokio::test]
async fn a_lost_queue_comes_back_behind_every_place_handed_out_before() {
    use waitroom::queue::Joined;
    let app = spawn_app().await;
    app.create(&app.admin, &event("marked")).await;
    app.create(&app.admin, &event("changed")).await;
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

    app.room.purge(&marked).await.unwrap();
    app.room.purge(&changed).await.unwrap();
    // The operator resumes "changed" before the mirror has noticed the loss.
    let r = app
        .http
        .put(app.url("/console/api/events/changed/admission"))
        .bearer_auth(&app.operator)
        .json(&json!({"mode": "on", "reason": "resume"}))
        .send()
        .await
        .unwrap();
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
    assert_eq!(
        app.room.settings(&marked).await.unwrap().unwrap().mode,
        Mode::Paused
    );
    assert_eq!(
        app.room.settings(&changed).await.unwrap().unwrap().mode,
        Mode::On
    );
    app.cleanup(&["marked", "changed"]).await;
}
