//! The support desk: sign-in, search, an order's page and the fixes, against the real
//! Postgres and Redis.

mod support;

use std::net::SocketAddr;

use console::auth::Role;
use console::sessions::create_operator;
use platform::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

struct Desk {
    addr: SocketAddr,
    db: TestDb,
    admin: String,
    operator: String,
    host: String,
    event: Uuid,
    other_event: Uuid,
    /// Stops the console when the test is done.
    _stop: platform::shutdown::Trigger,
}

use support::PASSWORD;

async fn spawn() -> Desk {
    let support::TestConsole { addr, db, stop, .. } = support::spawn().await;
    let support::Tokens {
        admin,
        operator,
        host,
        host_id,
    } = support::tokens(&db).await;
    create_operator(
        &db.pool,
        "olga@floodgate.test",
        "Olga",
        Role::Operator,
        PASSWORD,
    )
    .await
    .unwrap();
    let event = support::seed_event(&db, "big", 1000, 1).await;
    let other_event = support::seed_event(&db, "other", 3, 1001).await;
    // The host may see the other event only.
    sqlx::query("UPDATE operator_tokens SET event_ids = ARRAY[$1]::uuid[] WHERE id = $2")
        .bind(other_event)
        .bind(host_id)
        .execute(&db.pool)
        .await
        .unwrap();
    Desk {
        addr,
        db,
        admin,
        operator,
        host,
        event,
        other_event,
        _stop: stop,
    }
}

impl Desk {
    /// The search API's hits for `q`, as the operator.
    async fn search(&self, c: &reqwest::Client, q: &str) -> Value {
        c.get(self.url("/console/api/search"))
            .query(&[("q", q)])
            .bearer_auth(&self.operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn order_of(&self, email: &str) -> Uuid {
        sqlx::query_scalar("SELECT id FROM orders WHERE buyer_email = $1")
            .bind(email)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_buyer_among_a_thousand_is_found_by_a_fragment() {
    let d = spawn().await;
    let c = http();
    let hits: Value = d.search(&c, "buyer737@exa").await;
    assert_eq!(hits[0]["buyer_email"], "buyer737@example.org", "{hits}");
    // Fuzzy: a typo in the name still finds them.
    let fuzzy: Value = d.search(&c, "Buyr 737").await;
    assert!(
        fuzzy
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["buyer_email"] == "buyer737@example.org"),
        "{fuzzy}"
    );
    // A short name whose one transposition scores under the strict threshold (0.38):
    // found by the looser pass that runs only when nothing else matched.
    sqlx::query(
        "UPDATE orders SET buyer_name = 'Kim Park' WHERE buyer_email = 'buyer5@example.org'",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    let loose: Value = d.search(&c, "kim prak").await;
    assert_eq!(loose[0]["buyer_email"], "buyer5@example.org", "{loose}");
    // By order id and ticket code.
    let order = d.order_of("buyer42@example.org").await;
    let by_id: Value = c
        .get(d.url(&format!("/console/api/search?q={order}")))
        .bearer_auth(&d.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_id[0]["order_id"], order.to_string());
    let code: String = sqlx::query_scalar("SELECT code FROM tickets WHERE order_id = $1")
        .bind(order)
        .fetch_one(&d.db.pool)
        .await
        .unwrap();
    let by_code: Value = c
        .get(d.url(&format!("/console/api/search?q={}", code.to_lowercase())))
        .bearer_auth(&d.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_code[0]["order_id"], order.to_string());
    // A host sees only their event.
    let host: Value = c
        .get(d.url("/console/api/search?q=buyer737"))
        .bearer_auth(&d.host)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        host.as_array()
            .unwrap()
            .iter()
            .all(|h| h["event_slug"] == "other"),
        "a host sees only their event: {host}"
    );
    let host_other: Value = c
        .get(d.url("/console/api/search?q=buyer1001"))
        .bearer_auth(&d.host)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(host_other[0]["buyer_email"], "buyer1001@example.org");
    let hidden = c
        .get(d.url(&format!("/console/api/orders/{order}")))
        .bearer_auth(&d.host)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let _ = (d.event, d.other_event);
}

#[tokio::test]
async fn every_action_refuses_anonymous_and_host_callers() {
    let d = spawn().await;
    let c = http();
    let order = d.order_of("buyer1001@example.org").await;
    for (path, body) in [
        ("refund", json!({"reason": "x"})),
        ("resend", json!({})),
        ("email", json!({"email": "new@example.org"})),
    ] {
        let url = d.url(&format!("/console/api/orders/{order}/{path}"));
        let anon = c.post(&url).json(&body).send().await.unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{path}");
        let host = c
            .post(&url)
            .bearer_auth(&d.host)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(host.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);
    assert_eq!(d.count("SELECT count(*) FROM operator_audit").await, 0);
}

#[tokio::test]
async fn refunds_outside_policy_need_an_admin_and_a_double_click_refunds_once() {
    let d = spawn().await;
    let c = http();
    let order = d.order_of("buyer5@example.org").await;
    let url = d.url(&format!("/console/api/orders/{order}/refund"));
    // The event starts in 2 days; the policy ends 72 h before: outside it.
    let plain = c
        .post(&url)
        .bearer_auth(&d.operator)
        .json(&json!({"reason": "asked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::CONFLICT);
    assert_eq!(
        plain.json::<Value>().await.unwrap()["error"],
        "outside_refund_policy"
    );
    let operator = c
        .post(&url)
        .bearer_auth(&d.operator)
        .json(&json!({"reason": "asked", "override_policy": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(operator.status(), StatusCode::FORBIDDEN);
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 0);

    let key = Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = c
            .post(&url)
            .bearer_auth(&d.admin)
            .header("Idempotency-Key", &key)
            .json(&json!({"reason": "flight cancelled", "override_policy": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        answers.push(r.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[1]["repeated"], true, "{:?}", answers);
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 1);
    assert_eq!(
        d.count("SELECT count(*) FROM jobs WHERE kind = 'refund'")
            .await,
        1
    );
    assert_eq!(
        d.count("SELECT count(*) FROM outbox WHERE subject = 'orders.refunded'")
            .await,
        1
    );
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(&d.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "refunded");
    let (actor, reason): (String, Option<String>) =
        sqlx::query_as("SELECT actor, reason FROM operator_audit WHERE action = 'order.refund'")
            .fetch_one(&d.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (actor.as_str(), reason.as_deref()),
        ("admin:alice", Some("flight cancelled"))
    );
    // The order's page shows it all in one timeline.
    let detail: Value = c
        .get(d.url(&format!("/console/api/orders/{order}")))
        .bearer_auth(&d.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"order.refund"), "{actions:?}");
    assert_eq!(detail["diagnosis"]["state"], "refunded");
}

#[tokio::test]
async fn correcting_an_email_tells_fulfilment_once() {
    let d = spawn().await;
    let c = http();
    let order = d.order_of("buyer9@example.org").await;
    let r = c
        .post(d.url(&format!("/console/api/orders/{order}/email")))
        .bearer_auth(&d.operator)
        .json(&json!({"email": "not an email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ok = c
        .post(d.url(&format!("/console/api/orders/{order}/email")))
        .bearer_auth(&d.operator)
        .json(&json!({"email": "buyer9@example.com", "reason": "typo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let holder: String = sqlx::query_scalar("SELECT holder_email FROM tickets WHERE order_id = $1")
        .bind(order)
        .fetch_one(&d.db.pool)
        .await
        .unwrap();
    assert_eq!(holder, "buyer9@example.com");
    assert_eq!(
        d.count("SELECT count(*) FROM outbox WHERE subject = 'orders.email_changed'")
            .await,
        1
    );
}

#[tokio::test]
async fn sessions_are_http_only_csrf_protected_and_throttled() {
    let d = spawn().await;
    let c = http();
    let login = |password: &'static str| {
        c.post(d.url("/console/login"))
            .form(&[("email", "olga@floodgate.test"), ("password", password)])
            .send()
    };
    let ok = login(PASSWORD).await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let again = login(PASSWORD).await.unwrap();
    let second = again.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(session, second, "a new session id at every login");

    // Signed in: pages work; a JSON change without the CSRF header is refused.
    let page = c
        .get(d.url("/console/?q=buyer3"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("buyer3@example.org"));
    let order = d.order_of("buyer3@example.org").await;
    let no_csrf = c
        .post(d.url(&format!("/console/api/orders/{order}/resend")))
        .header("cookie", &session)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let form_without = c
        .post(d.url(&format!("/console/orders/{order}/resend")))
        .header("cookie", &session)
        .form(&[("action_key", "k1")])
        .send()
        .await
        .unwrap();
    assert_eq!(form_without.status(), StatusCode::FORBIDDEN);
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);

    // Anonymous pages go to the login page.
    let anon = c.get(d.url("/console/")).send().await.unwrap();
    assert_eq!(anon.headers()["location"], "/console/login");

    // Five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        assert_eq!(
            login("wrong password!!").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(PASSWORD).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn cancelling_an_event_refunds_everyone_once_and_can_be_run_again() {
    let d = spawn().await;
    let c = http();
    let url = d.url("/console/api/events/other/cancel");
    let by_operator = c
        .post(&url)
        .bearer_auth(&d.operator)
        .json(&json!({"reason": "speaker ill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_operator.status(), StatusCode::FORBIDDEN);
    let first: Value = c
        .post(&url)
        .bearer_auth(&d.admin)
        .json(&json!({"reason": "speaker ill"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (first["orders"].as_u64(), first["refunded_now"].as_u64()),
        (Some(3), Some(3)),
        "{first}"
    );
    assert_eq!(first["failed"], json!([]));
    let again: Value = c
        .post(&url)
        .bearer_auth(&d.admin)
        .json(&json!({"reason": "speaker ill"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            again["refunded_now"].as_u64(),
            again["already_settled"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(
        d.count(&format!("SELECT count(*) FROM refunds r JOIN orders o ON o.id = r.order_id WHERE o.event_id = '{}'", d.other_event)).await,
        3
    );
    assert_eq!(d.count("SELECT count(*) FROM outbox WHERE subject = 'orders.refunded' AND payload->>'reason' = 'event_cancelled'").await, 3);
    assert_eq!(
        d.count("SELECT count(*) FROM events WHERE status = 'cancelled'")
            .await,
        1
    );
    assert_eq!(
        d.count("SELECT count(*) FROM operator_audit WHERE action = 'event.cancel'")
            .await,
        1
    );
}
