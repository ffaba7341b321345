//! A real orders service for tests: fresh database, own Redis prefix, own token keys,
//! bound to port 0. Payments go to `payments_base` (the sandbox, when a test starts it).

#![allow(dead_code)]

use std::time::Duration;

use orders::app::AppState;
use orders::config::{OrdersConfig, PaymentsConfig};
use orders::events::NewEventRequest;
use orders::startup::Application;
use platform::env::Secret;
use platform::poll::eventually;
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
    pub payments_base: String,
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
    let room = waitroom::testing::fresh_room().await;
    let (sk, pk) = generate_keypair();
    let signer = TokenSigner::from_pem("t", sk.as_bytes()).unwrap();
    let (base, state, stop) = start(&db.url, room.prefix(), payments_base, &pk).await;
    TestApp {
        base,
        db,
        room,
        signer,
        public_pem: pk,
        payments_base: payments_base.to_owned(),
        state,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

/// One orders service on port 0 over the given database and Redis prefix.
async fn start(
    database_url: &str,
    prefix: &str,
    payments_base: &str,
    public_pem: &str,
) -> (String, AppState, Trigger) {
    let verifier = TokenVerifier::new()
        .with_key("t", public_pem.as_bytes())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = OrdersConfig {
        database_url: database_url.to_owned(),
        listen: addr.to_string(),
        public_url: format!("http://{addr}"),
        redis: RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: prefix.to_owned(),
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
    (format!("http://{addr}"), state, stop)
}

/// A second orders replica beside a [`TestApp`]: same database, Redis prefix and
/// keys, its own process state (its own hold writers); it stops when dropped.
pub struct Replica {
    pub base: String,
    _stop: Trigger,
}

impl TestApp {
    /// Starts another replica of this service, as a second `orders` process would be.
    pub async fn replica(&self) -> Replica {
        let (base, _, stop) = start(
            &self.db.url,
            self.room.prefix(),
            &self.payments_base,
            &self.public_pem,
        )
        .await;
        Replica { base, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// `POST /api/holds/{hold_id}/checkout` as the holder of `token`.
    pub async fn checkout(&self, hold_id: &str, token: &str) -> reqwest::Response {
        let path = format!("/api/holds/{hold_id}/checkout");
        self.post(&path).bearer_auth(token).send().await.unwrap()
    }

    /// `DELETE /api/holds/{hold_id}` as the holder of `token`.
    pub async fn release(&self, hold_id: &str, token: &str) -> reqwest::Response {
        let path = format!("/api/holds/{hold_id}");
        let req = self.http.delete(self.url(&path)).bearer_auth(token);
        req.send().await.unwrap()
    }

    /// The order as its buyer sees it (`GET /api/orders/{id}` with the order token).
    pub async fn order(&self, order_id: &str, order_token: &str) -> Value {
        let path = format!("/api/orders/{order_id}?order_token={order_token}");
        self.get(&path).send().await.unwrap().json().await.unwrap()
    }

    /// Polls the order until its status is `status`: the order then.
    pub async fn until_order_is(&self, order_id: &str, order_token: &str, status: &str) -> Value {
        eventually(
            Duration::from_secs(15),
            Duration::from_millis(50),
            async || {
                let o = self.order(order_id, order_token).await;
                (o["status"] == status)
                    .then_some(o.clone())
                    .ok_or(format!("order never became {status}: {o}"))
            },
        )
        .await
    }

    /// A webhook as the provider posts it: a JSON body, signed with `signature` if any.
    pub async fn post_webhook(
        &self,
        body: impl Into<reqwest::Body>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .post("/api/payments/webhook")
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            req = req.header("stripe-signature", signature);
        }
        req.send().await.unwrap()
    }

    /// Lets every hold lapse, as time would, and sweeps them: what was swept.
    pub async fn lapse_holds(&self) -> Vec<orders::holds::ClosedHold> {
        sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second'")
            .execute(&self.db.pool)
            .await
            .unwrap();
        self.sweep().await
    }

    /// [`TestApp::lapse_holds`] for one hold.
    pub async fn lapse_hold(&self, hold_id: &str) -> Vec<orders::holds::ClosedHold> {
        let hold: uuid::Uuid = hold_id.parse().unwrap();
        sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = $1")
            .bind(hold)
            .execute(&self.db.pool)
            .await
            .unwrap();
        self.sweep().await
    }

    async fn sweep(&self) -> Vec<orders::holds::ClosedHold> {
        orders::holds::sweep_expired(&self.db.pool, 100)
            .await
            .unwrap()
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

    /// Runs one statement on the test's database: the state a test starts from, set by
    /// hand.
    pub async fn exec(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.db.pool)
            .await
            .unwrap();
    }

    /// The one text value `sql` selects.
    pub async fn text(&self, sql: &str) -> String {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Fails unless `sql` counts `n`.
    pub async fn assert_count(&self, sql: &str, n: i64) {
        assert_eq!(self.count(sql).await, n, "{sql}");
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

/// The `hold_id` of a created hold's answer.
pub async fn hold_id_of(created: reqwest::Response) -> String {
    let hold: Value = created.json().await.unwrap();
    hold["hold_id"].as_str().unwrap().to_owned()
}

/// Confirms `intent` at the payment sandbox with the test payment method `method`,
/// through its API as a client with the secret key (or a page that gave up after
/// `timeout`) would.
pub async fn confirm_at_provider(
    sandbox_base: &str,
    intent: &str,
    method: &str,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    client
        .post(format!(
            "{sandbox_base}/v1/payment_intents/{intent}/confirm"
        ))
        .bearer_auth("sk_test_floodgate")
        .form(&[("payment_method", method)])
        .send()
        .await
}
