//! A fulfilment service for tests: fresh database, its own JetStream stream and subject
//! prefix on the real NATS, a real SMTP sink on port 0, and paid orders made through the
//! orders crate's own hold and settlement code.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use fulfilment::app::AppState;
use fulfilment::config::FulfilmentConfig;
use fulfilment::sink::Sink;
use fulfilment::startup::Application;
use mailparse::ParsedMail;
use orders::buyers::{BuyerName, Email};
use orders::events::NewEventRequest;
use orders::holds::{HoldDesk, HoldRequest};
use orders::settlement::{self, Source};
use platform::env::Secret;
use platform::poll::eventually;
use platform::shutdown::{Shutdown, Trigger};
use platform::testing::TestDb;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

pub struct TestFulfilment {
    pub base: String,
    pub db: TestDb,
    pub state: AppState,
    pub sink: Sink,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    /// Stops the service when the test drops it.
    _stop: Trigger,
}

/// The order-link key the tests' fulfilment shares with "orders".
pub const ORDER_TOKEN_SECRET: &str = "test-order-token-secret-0123456789abcdef";

pub async fn spawn() -> TestFulfilment {
    let db = TestDb::new().await;
    let sink = Sink::start("127.0.0.1:0", None).await.unwrap();
    let id = Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = FulfilmentConfig {
        database_url: db.url.clone(),
        nats_url: "nats://127.0.0.1:4222".into(),
        stream: contract::stream::StreamConfig {
            stream: format!("TF{}", &id[..14]).to_uppercase(),
            prefix: format!("tf{}", &id[..14]),
            replicas: 1,
        },
        consumer: "fulfilment".into(),
        smtp_url: sink.url(),
        mail_from: "Floodgate <tickets@floodgate.test>".into(),
        public_url: base.clone(),
        listen: base.clone(),
        link_secret: Secret::new("test-link-secret-0123456789abcdef0123"),
        order_token_secret: Some(Secret::new(ORDER_TOKEN_SECRET)),
        window_before: Duration::from_secs(3600),
        jitsi_base: "https://meet.example".into(),
        zoom_api_base: "http://127.0.0.1:9".into(),
        zoom_token: None,
        reconcile_after: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        // Tests drive the consumer and the sender themselves.
        workers: false,
    };
    let app = Application::on(listener, config).await.unwrap();
    let state = app.state().clone();
    let (stop, shutdown) = Shutdown::new();
    app.spawn(shutdown);
    let js = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    TestFulfilment {
        base,
        db,
        state,
        sink,
        js,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _stop: stop,
    }
}

impl TestFulfilment {
    /// An event starting at `starts_at` with one tier.
    pub async fn event(&self, slug: &str, starts_at: DateTime<Utc>) -> Uuid {
        let req: NewEventRequest = serde_json::from_value(json!({
            "slug": slug, "title": "Rust & Friends <live>",
            "starts_at": starts_at, "ends_at": starts_at + chrono::Duration::hours(2),
            "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
            "tiers": [{"code": "ga", "name": "General", "price_cents": 2500, "currency": "EUR", "capacity": 100}],
            "queue": {"mode": "off"}
        }))
        .unwrap();
        let mut tx = self.db.pool.begin().await.unwrap();
        let e = orders::events::create(&mut tx, &req.parse().unwrap())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        e.id
    }

    /// An event starting `starts_in` from now with one tier.
    pub async fn event_in(&self, slug: &str, starts_in: chrono::Duration) -> Uuid {
        self.event(slug, Utc::now() + starts_in).await
    }

    /// A paid order of `quantity` tickets, made by the orders crate's own code paths.
    pub async fn paid_order(&self, event_id: Uuid, email: &str, quantity: i32) -> Uuid {
        let tier_id: Uuid = sqlx::query_scalar("SELECT id FROM tiers WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
        let hold = HoldDesk::new(self.db.pool.clone())
            .hold(HoldRequest {
                event_id,
                tier_id,
                quantity,
                jti: Uuid::new_v4().to_string(),
                seq: None,
                email: Email::parse(email).unwrap(),
                name: BuyerName::parse("Grace Hopper").unwrap(),
                ttl_seconds: 600,
            })
            .await
            .unwrap();
        let order_id = Uuid::now_v7();
        sqlx::query(
            r#"INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency,
                    buyer_email, buyer_name, status, payment_provider, payment_intent_id, admission_jti)
               VALUES ($1, $2, $3, $4, $5, $6, 'EUR', $7, 'Grace Hopper', 'pending_payment', 'sandbox', $8,
                       (SELECT admission_jti FROM holds WHERE id = $3))"#,
        )
        .bind(order_id)
        .bind(event_id)
        .bind(hold.hold_id)
        .bind(tier_id)
        .bind(quantity)
        .bind(hold.amount_cents)
        .bind(email)
        .bind(format!("pi_{}", order_id.simple()))
        .execute(&self.db.pool)
        .await
        .unwrap();
        let mut tx = self.db.pool.begin().await.unwrap();
        settlement::settle_paid(&mut tx, order_id, None, Source::Webhook)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        order_id
    }

    /// Publishes the order's outbox rows to this test's stream (the relay's job).
    pub async fn relay(&self) -> usize {
        let relay = orders::outbox::Relay::connect(
            self.db.pool.clone(),
            "nats://127.0.0.1:4222",
            self.state.config.stream.clone(),
        )
        .await
        .unwrap();
        relay.relay_once(1000).await.unwrap()
    }

    /// Sends everything due until nothing is queued or the deadline passes.
    pub async fn drain(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            fulfilment::deliveries::send_due(&self.state, 100)
                .await
                .unwrap();
            let queued: i64 =
                sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'queued'")
                    .fetch_one(&self.db.pool)
                    .await
                    .unwrap();
            if queued == 0 || Instant::now() > until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Queues `order`'s confirmation as the consumer would on its message.
    pub async fn queue_confirmation(&self, order: Uuid) -> bool {
        fulfilment::deliveries::queue_confirmation(&self.state, order)
            .await
            .unwrap()
    }

    /// One pass of the sender over what is due (the tests run no sender of their own).
    pub async fn send_due(&self) {
        fulfilment::deliveries::send_due(&self.state, 100)
            .await
            .unwrap();
    }

    /// Runs the consumer until [`Consuming::stop`].
    pub fn consume(&self) -> Consuming {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (state, js) = (self.state.clone(), self.js.clone());
        let task = tokio::spawn(async move {
            fulfilment::consumer::run(state, js, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Consuming { stop, task }
    }

    /// Publishes the outbox (how many rows it published), waits until the consumer has
    /// queued deliveries enough for `sql` to count `n` (`what`, if it never does), and
    /// sends them.
    pub async fn relay_and_send(&self, what: &str, sql: &str, n: i64) -> usize {
        let published = self.relay().await;
        until(what, Duration::from_secs(10), async || {
            self.count(sql).await == n
        })
        .await;
        self.drain(Duration::from_secs(10)).await;
        published
    }

    /// What visiting each link answers, in order.
    pub async fn visit(&self, links: &[String]) -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        for l in links {
            statuses.push(self.http.get(l).send().await.unwrap().status());
        }
        statuses
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn cleanup(&self) {
        let _ = self
            .js
            .delete_stream(&self.state.config.stream.stream)
            .await;
    }
}

/// The `/join/...` link in an email's plain-text part.
pub fn join_link(raw: &str) -> String {
    let start = raw.find("/join/").expect("a join link");
    let line_start = raw[..start].rfind("http").expect("absolute link");
    raw[line_start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

/// Every delivery fulfilment has queued, for [`TestFulfilment::relay_and_send`].
pub const ALL_DELIVERIES: &str = "SELECT count(*) FROM deliveries";

/// The consumer of [`TestFulfilment::consume`], running until stopped.
pub struct Consuming {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Consuming {
    /// Stops the consumer; it must end cleanly.
    pub async fn stop(self) {
        drop(self.stop);
        self.task.await.unwrap();
    }
}

/// Polls `probe` every 50 ms until it holds; fails the test, naming `what`, after
/// `timeout`.
pub async fn until(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let still = format!("timed out waiting for {what}");
    let every = Duration::from_millis(50);
    eventually(timeout, every, async || {
        probe().await.then_some(()).ok_or(&still)
    })
    .await
}

/// The part of `mail` of type `mime`, at any depth.
pub fn part<'a>(mail: &'a ParsedMail<'a>, mime: &str) -> Option<&'a ParsedMail<'a>> {
    if mail.ctype.mimetype == mime {
        return Some(mail);
    }
    mail.subparts.iter().find_map(|p| part(p, mime))
}

/// The body of the `mime` part of the raw message `raw`.
pub fn body_of(raw: &str, mime: &str) -> String {
    let parsed = mailparse::parse_mail(raw.as_bytes()).unwrap();
    let found = part(&parsed, mime).unwrap_or_else(|| panic!("no {mime} part"));
    found.get_body().unwrap()
}

/// Every `/join/...` link in an email's plain-text part, one per line it is on.
pub fn join_links(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("/join/"))
        .map(join_link)
        .collect()
}
