//! A real console for tests: a fresh database and Redis prefix, port 0, built through
//! `console::startup` as the binary builds it (without the background workers, which
//! tests drive themselves), the tokens and data most tests start from, and the steps
//! they take again and again — as an API caller (a bearer token, a JSON body) and as a
//! browser (a session cookie, the CSRF token read from the page, a form).

#![allow(dead_code)]

pub mod desk;

use std::net::SocketAddr;

use console::app::AppState;
use console::auth::{Role, create_token};
use console::config::ConsoleConfig;
use console::sessions::create_operator;
use console::startup::Application;
use platform::shutdown::{Shutdown, Trigger};
use platform::testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;
use waitroom::settings::AdmissionSettings;

pub const PASSWORD: &str = "correct horse battery staple";

/// A form as a browser posts it: names and values.
pub type Form<'a> = [(&'a str, &'a str)];

/// A running console; it stops when `stop` is dropped.
pub struct TestConsole {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub room: Waitroom,
    pub state: AppState,
    pub stop: Trigger,
    /// A client that does not follow redirects: a test sees where the console sends
    /// the browser (the sign-in page, `?done=`) instead of the page it lands on.
    pub http: reqwest::Client,
    /// API tokens for the three roles: alice (admin), olga (operator), hank (host, of
    /// no event until a test grants one; `host_id` is the token's row).
    pub admin: String,
    pub operator: String,
    pub host: String,
    pub host_id: Uuid,
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
        public_url: "https://tickets.example.org".into(),
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
    let token = |name: &'static str, role| create_token(&db.pool, name, role);
    let admin = token("alice", Role::Admin).await.unwrap().1;
    let operator = token("olga", Role::Operator).await.unwrap().1;
    let (host_id, host) = token("hank", Role::Host).await.unwrap();
    TestConsole {
        addr,
        room: state.room.clone(),
        db,
        state,
        stop,
        http: without_redirects(),
        admin,
        operator,
        host,
        host_id,
    }
}

/// A client that shows where a response sends the browser instead of following it.
fn without_redirects() -> reqwest::Client {
    let policy = reqwest::redirect::Policy::none();
    reqwest::Client::builder().redirect(policy).build().unwrap()
}

/// The accounts that sign in to the pages, all with [`PASSWORD`]: Olga (operator),
/// Alice (admin) and Hank (host, of no event until a test grants one).
pub async fn create_operators(db: &TestDb) {
    for (email, name, role) in [
        ("olga@floodgate.test", "Olga", Role::Operator),
        ("alice@floodgate.test", "Alice", Role::Admin),
        ("hank@floodgate.test", "Hank", Role::Host),
    ] {
        create_operator(&db.pool, email, name, role, PASSWORD)
            .await
            .unwrap();
    }
}

/// An event with `n` paid orders (one ticket each, buyers `buyer{first}@example.org`
/// on), starting in two days (inside a 48 h refund policy only if the policy were
/// shorter).
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

/// "Night of Rust" as the API creates it: two tiers (100 early birds, 400 general), a
/// 24 h refund policy, the queue on at 120 a minute with 50 in checkout.
pub fn event_body(slug: &str) -> Value {
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

/// The session cookie (`fg_console=…`, without its attributes) a response sets.
pub fn session_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fg_console="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// What `page` has between the first `start` and the `end` after it.
fn between<'a>(page: &'a str, start: &str, end: &str) -> Option<&'a str> {
    page.split(start)
        .nth(1)
        .and_then(|rest| rest.split(end).next())
}

/// The session's CSRF token as the first form on `page` carries it.
pub fn csrf_of(page: &str) -> String {
    between(page, "name=\"csrf\" value=\"", "\"")
        .unwrap_or_else(|| panic!("the page carries the CSRF token: {page}"))
        .to_owned()
}

/// The value of a hidden field inside the form with this id.
pub fn field(html: &str, form_id: &str, name: &str) -> String {
    let start = html
        .find(&format!("<form id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("no form#{form_id}"));
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    let at = form
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in form#{form_id}"))
        + format!("name=\"{name}\" value=\"").len();
    form[at..at + form[at..].find('"').unwrap()].to_owned()
}

/// The text of the page's alert banner (a refusal's reason).
pub fn alert(html: &str) -> String {
    between(html, "role=\"alert\">", "</p>")
        .unwrap_or_else(|| panic!("no alert: {html}"))
        .to_owned()
}

impl TestConsole {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request as the bearer of `token` ("" for a caller without one).
    fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match token {
            "" => req,
            token => req.bearer_auth(token),
        }
    }

    /// A request from the browser holding `cookie` ("" for one without a session).
    fn browse(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match cookie {
            "" => req,
            cookie => req.header("cookie", cookie),
        }
    }

    /// The one value `sql` selects.
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        T: Send + Unpin,
    {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// The number `sql` counts.
    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// Rows of `table` whose `column` is `value`.
    pub async fn rows(&self, table: &str, column: &str, value: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = '{value}'");
        self.count(&sql).await
    }

    /// Messages under `subject` in the outbox: what the other services are told.
    pub async fn outbox(&self, subject: &str) -> i64 {
        self.rows("outbox", "subject", subject).await
    }

    /// Audit rows of `action`, whoever did it and why.
    pub async fn audited(&self, action: &str) -> i64 {
        self.rows("operator_audit", "action", action).await
    }

    /// Audit rows of `action` by `actor` (`operator:Olga`), with `reason` where one is
    /// given.
    pub async fn audited_by(&self, action: &str, actor: &str, reason: Option<&str>) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM operator_audit WHERE action = $1 AND actor = $2 \
             AND ($3::text IS NULL OR reason = $3)",
        )
        .bind(action)
        .bind(actor)
        .bind(reason)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// The order of the buyer with this email (each seeded buyer has one).
    pub async fn order_of(&self, email: &str) -> Uuid {
        self.id_where("orders", "buyer_email", email).await
    }

    /// The ticket of a one-ticket order.
    pub async fn ticket_of(&self, order: Uuid) -> Uuid {
        self.id_where("tickets", "order_id", &order.to_string())
            .await
    }

    /// The id of the one row of `table` whose `column` is `value`.
    async fn id_where(&self, table: &str, column: &str, value: &str) -> Uuid {
        let sql = format!("SELECT id FROM {table} WHERE {column} = '{value}'");
        self.scalar(&sql).await
    }

    /// The tier of a one-tier event.
    pub async fn tier_of(&self, slug: &str) -> Uuid {
        self.scalar(&format!(
            "SELECT t.id FROM tiers t JOIN events e ON e.id = t.event_id WHERE e.slug = '{slug}'"
        ))
        .await
    }

    /// Changes the queue's settings through the admission API, as the bearer of `token`.
    pub async fn set_queue(&self, slug: &str, token: &str, change: &Value) -> reqwest::Response {
        let path = format!("/console/api/events/{slug}/admission");
        self.put_json(&path, token, change).await
    }

    /// The queue's settings as Redis holds them (what every gateway admits by).
    pub async fn queue(&self, slug: &str) -> AdmissionSettings {
        let slug = EventSlug::parse(slug).unwrap();
        self.room.settings(&slug).await.unwrap().expect("a queue")
    }

    /// Removes these events' queues from Redis, which outlives the test's database.
    pub async fn purge(&self, slugs: &[&str]) {
        for slug in slugs {
            let slug = EventSlug::parse(slug).unwrap();
            self.room.purge(&slug).await.unwrap();
        }
    }

    /// `method path` with `body` as JSON, as the bearer of `token` ("" for a caller
    /// without one): an API call.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.request(method, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.send_json(Method::POST, path, token, body).await
    }

    /// What a post of `body` answers the bearer of `token`, as JSON.
    pub async fn post_answer(&self, path: &str, token: &str, body: &Value) -> Value {
        self.post_json(path, token, body)
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.send_json(Method::PUT, path, token, body).await
    }

    /// `GET path` as the bearer of `token` ("" for a caller without one).
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    /// What `GET path` answers the bearer of `token`, as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get(path, token).await.json().await.unwrap()
    }

    /// Creates an event through the API as the bearer of `token`.
    pub async fn create_event(&self, token: &str, body: &Value) -> reqwest::Response {
        self.post_json("/console/api/events", token, body).await
    }

    /// Signs in through the login form; returns the session cookie.
    pub async fn login(&self, email: &str) -> String {
        let form = [("email", email), ("password", PASSWORD)];
        let r = self.submit("", "/console/login", &form).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login {email}");
        session_of(&r).expect("a session cookie")
    }

    /// Signs in; returns the session cookie and its CSRF token as the pages' forms
    /// carry it.
    pub async fn sign_in(&self, email: &str) -> (String, String) {
        let session = self.login(email).await;
        // The events list: every role's start page (a host's `/console/` sends them there).
        let (_, page) = self.page(&session, "/console/events").await;
        let csrf = csrf_of(&page);
        (session, csrf)
    }

    /// A page as the browser with this cookie gets it ("" for none).
    pub async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let r = self.browse(Method::GET, path, cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts `{}` as JSON from the browser holding `cookie`, with `csrf` in the header
    /// the pages' scripts send it in ("" for none): a change without a form.
    pub async fn browser_post(&self, path: &str, cookie: &str, csrf: &str) -> reqwest::Response {
        let req = self.browse(Method::POST, path, cookie).json(&json!({}));
        match csrf {
            "" => req,
            csrf => req.header("x-csrf-token", csrf),
        }
        .send()
        .await
        .unwrap()
    }

    /// Posts a form with this cookie ("" for none).
    pub async fn submit<F: serde::Serialize + ?Sized>(
        &self,
        cookie: &str,
        path: &str,
        form: &F,
    ) -> reqwest::Response {
        self.browse(Method::POST, path, cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Posts a form; returns the status and where it sends the browser.
    pub async fn post(&self, cookie: &str, path: &str, form: &Form<'_>) -> (StatusCode, String) {
        let r = self.submit(cookie, path, form).await;
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status(), location)
    }

    /// Posts a form that is refused: its status, and the page it answers with.
    pub async fn refused(&self, cookie: &str, path: &str, form: &Form<'_>) -> (StatusCode, String) {
        let r = self.submit(cookie, path, form).await;
        assert!(
            r.headers().get("location").is_none(),
            "refused, not redirected: {path}"
        );
        (r.status(), r.text().await.unwrap())
    }
}
