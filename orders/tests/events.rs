//! The buyer's view of an event against the real Postgres.

mod support;

use orders::events::{self, NewEventRequest};
use platform::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn seed(db: &TestDb) {
    let req: NewEventRequest = serde_json::from_value(json!({
        "slug": "gig", "title": "Rust & <Roll>",
        "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
        "timezone": "America/New_York", "meeting": {"provider": "zoom", "meeting_id": "123"},
        "tiers": [{"code": "ga", "name": "General", "price_cents": 2500, "currency": "USD", "capacity": 10}]
    }))
    .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    events::create(&mut tx, &req.parse().unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_event_shows_what_is_left_and_hides_the_meeting() {
    let app = support::spawn_app("http://127.0.0.1:9").await;
    let db = &app.db;
    seed(db).await;
    let base = app.base.clone();
    sqlx::query("UPDATE tiers SET sold = 3, held = 2")
        .execute(&db.pool)
        .await
        .unwrap();

    let body: Value = reqwest::get(format!("{base}/api/events/gig"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tiers"][0]["available"], 5);
    assert_eq!(body["tiers"][0]["capacity"], 10);
    assert!(
        body.get("meeting").is_none(),
        "meeting details never reach buyers"
    );

    let page = reqwest::get(format!("{base}/e/gig"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Rust &amp; &lt;Roll&gt;"));
    assert!(page.contains("5 left"));
    assert!(
        page.contains("14:00"),
        "start shown in the event's time zone: {page}"
    );

    let missing = reqwest::get(format!("{base}/api/events/nope"))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let e: Value = missing.json().await.unwrap();
    assert_eq!(e["error"], "not_found");
}

#[tokio::test]
async fn the_database_refuses_an_oversell_whatever_the_code_does() {
    let db = TestDb::new().await;
    seed(&db).await;
    let err = sqlx::query("UPDATE tiers SET sold = 8, held = 3")
        .execute(&db.pool)
        .await
        .unwrap_err();
    let constraint = err
        .as_database_error()
        .and_then(|d| d.constraint().map(str::to_owned));
    assert_eq!(constraint.as_deref(), Some("tiers_no_oversell"));
}
