//! A real orders service for tests: fresh database, own Redis prefix, own token keys,
//! bound to port 0. Payments go to `payments_base` (the sandbox, when a test starts it).

#![allow(dead_code)]

use std::time::Duration;

use orders::app::AppState;
use orders::config::{OrdersConfig, PaymentsConfig};
use orders::events::NewEventRequest;
use orders::startup::Application;
use platform::env::Secret;
use platform::shutdown::{Shutdown, Trigger};
use platform::testing::TestDb;
use serde_json::{Value, json};
use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;
use waitroom::settings::AdmissionSettings;
use waitroom::tokens::{
    AdmissionClaims, TokenKind, TokenSigner, TokenVerifier, audience, generate_keypair,
};

pub const WEBHOOK_SECRET: &str = "whsec_test_orders";

/// A buyer's address of its own for each hold, as in an on-sale (one shared address
/// would meet the per-buyer cap after a few holds).
pub fn buyer_email() -> String {
    format!("ada.{}@example.org", uuid::Uuid::new_v4().simple())
}

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub room: Waitroom,
    pub signer: TokenSigner,
    /// The verifying key as PEM: public, so attack tests may use it as an attacker would.
    pub public_pem: String,
    pub state: AppState,
    pub http: reqwest::Client,
    /// Stops the service when the test drops it.
    _stop: Trigger,
}

/// An orders service wired to a real payment sandbox on its own port, whose webhooks
/// come back to this service.
pub async fn spawn_with_sandbox(faults: sandbox::Faults) -> (TestApp, sandbox::Sandbox, String) {
    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox_base = format!("http://{}", sandbox_listener.local_addr().unwrap());
    let app = spawn_app(&sandbox_base).await;
    let sb = sandbox::Sandbox::new(sandbox::SandboxConfig {
        webhook_url: app.url("/api/payments/webhook"),
        webhook_secret: sandbox::Secret::new(WEBHOOK_SECRET),
        faults,
        ..sandbox::SandboxConfig::default()
    })
    .unwrap();
    let router = sandbox::app(sb.clone());
    tokio::spawn(async move { axum::serve(sandbox_listener, router).await.unwrap() });
    (app, sb, sandbox_base)
}

pub async fn spawn_app(payments_base: &str) -> TestApp {
    let db = TestDb::new().await;
    let room = Waitroom::connect(&RedisConfig {
        url: "redis://127.0.0.1:6379".into(),
        prefix: format!("t-{}", uuid::Uuid::new_v4().simple()),
        ..RedisConfig::default()
    })
    .await
    .unwrap();
    let (sk, pk) = generate_keypair();
    let signer = TokenSigner::from_pem("t", sk.as_bytes()).unwrap();
    let verifier = TokenVerifier::new().with_key("t", pk.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = OrdersConfig {
        database_url: db.url.clone(),
        listen: addr.to_string(),
        public_url: format!("http://{addr}"),
        redis: RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: room.prefix().to_owned(),
            ..RedisConfig::default()
        },
        payments: PaymentsConfig {
            provider: "sandbox",
            api_base: payments_base.to_owned(),
            pay_base: payments_base.to_owned(),
            secret_key: Secret::new("sk_test_floodgate"),
            webhook_secret: Secret::new(WEBHOOK_SECRET),
        },
        order_token_secret: Secret::new("test-order-token-secret-0123456789abcdef"),
        reconcile_after: Duration::from_millis(300),
        workers: false,
        hold_writers_per_tier: 1,
        holds_per_buyer: orders::holds::DEFAULT_HOLDS_PER_BUYER,
    };
    let app = Application::on(listener, config, verifier).await.unwrap();
    let state = app.state().clone();
    let (stop, shutdown) = Shutdown::new();
    app.spawn(shutdown);
    TestApp {
        base: format!("http://{addr}"),
        db,
        room,
        signer,
        public_pem: pk,
        state,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates an event (queue `on`) with the given tiers `(code, capacity, price)`.
    pub async fn event(&self, slug: &str, tiers: &[(&str, i32, i64)]) -> uuid::Uuid {
        let tiers: Vec<Value> = tiers
            .iter()
            .map(|(code, capacity, price)| {
                json!({"code": code, "name": code, "price_cents": price, "currency": "EUR",
                       "capacity": capacity, "max_per_order": 10})
            })
            .collect();
        let req: NewEventRequest = serde_json::from_value(json!({
            "slug": slug, "title": format!("Event {slug}"),
            "starts_at": "2030-05-01T18:00:00Z", "ends_at": "2030-05-01T20:00:00Z",
            "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
            "tiers": tiers, "queue": {"mode": "on", "rate_per_minute": 600, "max_active": 5000}
        }))
        .unwrap();
        let new = req.parse().unwrap();
        let mut tx = self.db.pool.begin().await.unwrap();
        let e = orders::events::create(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        self.room
            .apply_settings(
                &EventSlug::parse(slug).unwrap(),
                &AdmissionSettings {
                    max_active: 5000,
                    ..new.admission
                },
            )
            .await
            .unwrap();
        e.id
    }

    /// A fresh admission token for the event, as the gateway would issue it.
    pub fn admission(&self, slug: &str, seq: u64) -> String {
        let now = chrono::Utc::now().timestamp();
        let event = EventSlug::parse(slug).unwrap();
        self.signer.sign(&AdmissionClaims {
            kind: TokenKind::Admission,
            aud: audience(&event),
            evt: event,
            sub: format!("visitor-{seq}"),
            jti: uuid::Uuid::new_v4().to_string(),
            seq,
            iat: now,
            exp: now + 600,
        })
    }

    pub async fn hold(
        &self,
        slug: &str,
        token: &str,
        tier: &str,
        quantity: i64,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/events/{slug}/holds")))
            .bearer_auth(token)
            .json(&json!({"tier": tier, "quantity": quantity, "email": buyer_email(), "name": "Ada Lovelace"}))
            .send()
            .await
            .unwrap()
    }

    pub async fn tier(&self, code: &str) -> (i32, i32, i32) {
        sqlx::query_as("SELECT capacity, sold, held FROM tiers WHERE code = $1")
            .bind(code)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn cleanup(&self, slugs: &[&str]) {
        for s in slugs {
            self.room
                .purge(&EventSlug::parse(s).unwrap())
                .await
                .unwrap();
        }
    }
}
