//! A real console for tests: a fresh database and Redis prefix, port 0, built through
//! `console::startup` as the binary builds it (without the background workers, which
//! tests drive themselves), and the tokens and data most tests start from.

#![allow(dead_code)]

use std::net::SocketAddr;

use console::app::AppState;
use console::auth::{Role, create_token};
use console::config::ConsoleConfig;
use console::startup::Application;
use platform::shutdown::{Shutdown, Trigger};
use platform::testing::TestDb;
use serde_json::json;
use uuid::Uuid;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;

pub const PASSWORD: &str = "correct horse battery staple";

/// A running console; it stops when `stop` is dropped.
pub struct TestConsole {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub room: Waitroom,
    pub state: AppState,
    pub stop: Trigger,
}

pub async fn spawn() -> TestConsole {
    spawn_with(|_| {}).await
}

/// A console whose config the test adjusts first (secure cookies, feed linger).
pub async fn spawn_with(adjust: impl FnOnce(&mut ConsoleConfig)) -> TestConsole {
    let db = TestDb::new().await;
    let listener = platform::listener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ConsoleConfig {
        database_url: db.url.clone(),
        database_read_url: None,
        redis: RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: format!("t-{}", Uuid::new_v4().simple()),
            ..RedisConfig::default()
        },
        listen: listener.local_addr().unwrap().to_string(),
        secure_cookies: false,
        feed_linger: std::time::Duration::from_secs(15),
        workers: false,
    };
    adjust(&mut config);
    let app = Application::on(listener, db.pool.clone(), config)
        .await
        .unwrap();
    let (addr, state) = (app.local_addr(), app.state().clone());
    let (stop, shutdown) = Shutdown::new();
    app.spawn(shutdown);
    TestConsole {
        addr,
        db,
        room: state.room.clone(),
        state,
        stop,
    }
}

/// API tokens for the three roles: alice (admin), olga (operator), hank (host).
pub struct Tokens {
    pub admin: String,
    pub operator: String,
    pub host: String,
    pub host_id: Uuid,
}

pub async fn tokens(db: &TestDb) -> Tokens {
    let admin = create_token(&db.pool, "alice", Role::Admin)
        .await
        .unwrap()
        .1;
    let operator = create_token(&db.pool, "olga", Role::Operator)
        .await
        .unwrap()
        .1;
    let (host_id, host) = create_token(&db.pool, "hank", Role::Host).await.unwrap();
    Tokens {
        admin,
        operator,
        host,
        host_id,
    }
}

/// An event with `n` paid orders (one ticket each), starting in two days (inside a
/// 48 h refund policy only if the policy were shorter).
pub async fn seed_event(db: &TestDb, slug: &str, n: i32, first: i32) -> Uuid {
    let req: orders::events::NewEventRequest = serde_json::from_value(json!({
        "slug": slug, "title": format!("Event {slug}"),
        "starts_at": chrono::Utc::now() + chrono::Duration::days(2),
        "ends_at": chrono::Utc::now() + chrono::Duration::days(2) + chrono::Duration::hours(2),
        "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
        "refund_policy": {"refundable_until_hours_before": 72},
        "tiers": [{"code": "ga", "name": "General", "price_cents": 2000, "currency": "EUR", "capacity": 5000}],
        "queue": {"mode": "off"}
    }))
    .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let e = orders::events::create(&mut tx, &req.parse().unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query(
        r#"WITH t AS (SELECT id FROM tiers WHERE event_id = $1),
           h AS (INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti, buyer_email, buyer_name, status, expires_at)
                 SELECT gen_random_uuid(), $1, t.id, 1, 'j' || g, 'buyer' || g || '@example.org', 'Buyer ' || g, 'converted', now()
                 FROM t, generate_series($2, $3) g RETURNING id, tier_id, buyer_email, buyer_name, admission_jti),
           o AS (INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency, buyer_email,
                                     buyer_name, status, payment_provider, payment_intent_id, paid_at, admission_jti)
                 SELECT gen_random_uuid(), $1, h.id, h.tier_id, 1, 2000, 'EUR', h.buyer_email, h.buyer_name, 'paid',
                        'sandbox', 'pi_' || h.admission_jti, now(), h.admission_jti
                 FROM h RETURNING id, tier_id, buyer_email, buyer_name)
           INSERT INTO tickets (id, order_id, event_id, tier_id, seat_no, code, holder_email, holder_name)
           SELECT gen_random_uuid(), o.id, $1, o.tier_id, 1, 'FG-' || upper(substr(md5(o.id::text), 1, 10)), o.buyer_email, o.buyer_name
           FROM o"#,
    )
    .bind(e.id)
    .bind(first)
    .bind(first + n - 1)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE tiers SET sold = $2 WHERE event_id = $1")
        .bind(e.id)
        .bind(n)
        .execute(&db.pool)
        .await
        .unwrap();
    e.id
}
