//! The support desk: sign-in, search, an order's page and the fixes, against the real
//! Postgres and Redis.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use support::PASSWORD;
use support::desk::Desk;

/// "big" has a thousand buyers: one is found among them by a fragment of their email.
async fn spawn() -> Desk {
    Desk::spawn(1000).await
}

/// The search API's hits for `q`, as the bearer of `token`.
async fn search(d: &Desk, token: &str, q: &str) -> Value {
    let search = d.http.get(d.url("/console/api/search")).query(&[("q", q)]);
    let hits = search.bearer_auth(token).send().await.unwrap();
    hits.json().await.unwrap()
}

#[tokio::test]
async fn one_buyer_among_a_thousand_is_found_by_a_fragment() {
    let d = spawn().await;
    let hits: Value = search(&d, &d.operator, "buyer737@exa").await;
    assert_eq!(hits[0]["buyer_email"], "buyer737@example.org", "{hits}");
    // Fuzzy: a typo in the name still finds them.
    let fuzzy: Value = search(&d, &d.operator, "Buyr 737").await;
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
    let loose: Value = search(&d, &d.operator, "kim prak").await;
    assert_eq!(loose[0]["buyer_email"], "buyer5@example.org", "{loose}");
    // By order id and ticket code.
    let order = d.order_of("buyer42@example.org").await;
    let by_id = search(&d, &d.operator, &order.to_string()).await;
    assert_eq!(by_id[0]["order_id"], order.to_string());
    let code: String = sqlx::query_scalar("SELECT code FROM tickets WHERE order_id = $1")
        .bind(order)
        .fetch_one(&d.db.pool)
        .await
        .unwrap();
    let by_code = search(&d, &d.operator, &code.to_lowercase()).await;
    assert_eq!(by_code[0]["order_id"], order.to_string());
    // A host sees only their event.
    let host = search(&d, &d.host, "buyer737").await;
    assert!(
        host.as_array()
            .unwrap()
            .iter()
            .all(|h| h["event_slug"] == "other"),
        "a host sees only their event: {host}"
    );
    // Their event keeps addresses from hosts: the whole address finds the order, shown
    // masked; a part of it finds nothing (it would spell the address out).
    let host_other = search(&d, &d.host, "Buyer1001@Example.org").await;
    assert_eq!(
        host_other[0]["buyer_email"], "b•••@example.org",
        "{host_other}"
    );
    assert_eq!(host_other[0]["matched"], json!(["email"]));
    let part = search(&d, &d.host, "buyer1001").await;
    assert_eq!(part, json!([]), "{part}");
    let hidden = d
        .get(&format!("/console/api/orders/{order}"), &d.host)
        .await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
}

/// The reasons a hit gives, as the API spells them.
fn reasons(hits: &Value, email: &str) -> Vec<String> {
    let hit = hits
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["buyer_email"] == email)
        .unwrap_or_else(|| panic!("{email} among the hits: {hits}"));
    serde_json::from_value(hit["matched"].clone()).unwrap()
}

/// Runs a fix through the API as Olga; it is done.
async fn fixed(d: &Desk, path: &str, body: &Value) {
    let r = d.post_json(path, &d.operator, body).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
}

#[tokio::test]
async fn a_surname_alone_a_ticket_holder_and_an_old_address_find_the_order_and_say_why() {
    let d = spawn().await;
    sqlx::query(
        "UPDATE orders SET buyer_name = CASE buyer_email
             WHEN 'buyer5@example.org' THEN 'Ada Lindquist'
             ELSE 'Anna-Karin Maria Lindquist' END
         WHERE buyer_email IN ('buyer5@example.org', 'buyer6@example.org')",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    // A surname typed alone: both buyers of that name, by their name.
    let surname = search(&d, &d.operator, "lindquist").await;
    assert_eq!(surname.as_array().unwrap().len(), 2, "{surname}");
    assert_eq!(reasons(&surname, "buyer5@example.org"), ["name"]);
    // Misspelt, against a long name it is a small part of (0.24 as a whole, 0.54 as
    // words).
    let misspelt = search(&d, &d.operator, "lindqvist").await;
    assert_eq!(reasons(&misspelt, "buyer6@example.org"), ["similar_name"]);

    // Someone a ticket was given to, by name and by address: the buyer's order, found
    // because of its ticket holder.
    let ticket = d.ticket_of(d.order_of("buyer7@example.org").await).await;
    let given = json!({"email": "maja@example.net", "name": "Maja Berglund", "reason": "a gift"});
    fixed(
        &d,
        &format!("/console/api/tickets/{ticket}/transfer"),
        &given,
    )
    .await;
    for q in ["berglund", "maja@example.net", "Maja"] {
        let holder = search(&d, &d.operator, q).await;
        assert_eq!(holder.as_array().unwrap().len(), 1, "{q}: {holder}");
        assert_eq!(
            reasons(&holder, "buyer7@example.org"),
            ["ticket_holder"],
            "{q}"
        );
    }

    // The address an order had before it was corrected finds it, and says so.
    let order = d.order_of("buyer9@example.org").await;
    let corrected = json!({"email": "nine@example.net", "reason": "typo"});
    fixed(
        &d,
        &format!("/console/api/orders/{order}/email"),
        &corrected,
    )
    .await;
    let old = search(&d, &d.operator, "buyer9@example.org").await;
    assert_eq!(old[0]["order_id"], order.to_string(), "{old}");
    assert_eq!(reasons(&old, "nine@example.net"), ["old_address"]);
    let current = search(&d, &d.operator, "nine@example.net").await;
    assert_eq!(reasons(&current, "nine@example.net"), ["email"]);

    // The page says the reasons and the states in words.
    sqlx::query(
        "UPDATE orders SET status = 'pending_payment' WHERE buyer_email = 'buyer6@example.org'",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    let (session, _) = d.sign_in("olga@floodgate.test").await;
    let (status, page) = d.page(&session, "/console/?q=lindquist").await;
    assert_eq!(status, StatusCode::OK);
    for words in [
        "<span class=\"pill\">name</span>",
        "<span class=\"pill\">Paid</span>",
        "<span class=\"pill\">Waiting for payment</span>",
    ] {
        assert!(page.contains(words), "{words} on the page: {page}");
    }
    assert!(!page.contains("pending_payment") && !page.contains("pending payment"));
    let (_, page) = d.page(&session, "/console/?q=berglund").await;
    assert!(
        page.contains("<span class=\"pill\">ticket holder</span>"),
        "{page}"
    );
    let (_, page) = d.page(&session, &format!("/console/orders/{order}")).await;
    assert!(
        page.contains(">Paid</span>"),
        "the order's state in words: {page}"
    );
}

#[tokio::test]
async fn every_action_refuses_anonymous_and_host_callers() {
    let d = spawn().await;
    let order = d.order_of("buyer1001@example.org").await;
    for (path, body) in [
        ("refund", json!({"reason": "x"})),
        ("resend", json!({})),
        ("email", json!({"email": "new@example.org"})),
    ] {
        let url = format!("/console/api/orders/{order}/{path}");
        let anon = d.post_json(&url, "", &body).await;
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{path}");
        let host = d.post_json(&url, &d.host, &body).await;
        assert_eq!(host.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);
    assert_eq!(d.count("SELECT count(*) FROM operator_audit").await, 0);
}

#[tokio::test]
async fn refunds_outside_policy_need_an_admin_and_a_double_click_refunds_once() {
    let d = spawn().await;
    let order = d.order_of("buyer5@example.org").await;
    let url = format!("/console/api/orders/{order}/refund");
    // The event starts in 2 days; the policy ends 72 h before: outside it.
    let asked = json!({"reason": "asked"});
    let plain = d.post_json(&url, &d.operator, &asked).await;
    assert_eq!(plain.status(), StatusCode::CONFLICT);
    assert_eq!(
        plain.json::<Value>().await.unwrap()["error"],
        "outside_refund_policy"
    );
    let overriding = json!({"reason": "asked", "override_policy": true});
    let operator = d.post_json(&url, &d.operator, &overriding).await;
    assert_eq!(operator.status(), StatusCode::FORBIDDEN);
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 0);

    let key = Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = d
            .http
            .post(d.url(&url))
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
    assert_eq!(d.outbox("orders.refunded").await, 1);
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
    let detail = d
        .get_json(&format!("/console/api/orders/{order}"), &d.operator)
        .await;
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
    let order = d.order_of("buyer9@example.org").await;
    let url = format!("/console/api/orders/{order}/email");
    // A typo is refused; the corrected address is taken.
    for (body, status) in [
        (
            json!({"email": "not an email"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "buyer9@example.com", "reason": "typo"}),
            StatusCode::OK,
        ),
    ] {
        let r = d.post_json(&url, &d.operator, &body).await;
        assert_eq!(r.status(), status, "{body}");
    }
    let holder: String = sqlx::query_scalar("SELECT holder_email FROM tickets WHERE order_id = $1")
        .bind(order)
        .fetch_one(&d.db.pool)
        .await
        .unwrap();
    assert_eq!(holder, "buyer9@example.com");
    assert_eq!(d.outbox("orders.email_changed").await, 1);
}

#[tokio::test]
async fn sessions_are_http_only_csrf_protected_and_throttled() {
    let d = spawn().await;
    let login = |password: &'static str| {
        d.http
            .post(d.url("/console/login"))
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
    let (status, page) = d.page(&session, "/console/?q=buyer3").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("buyer3@example.org"));
    let order = d.order_of("buyer3@example.org").await;
    let resend = format!("/console/api/orders/{order}/resend");
    let no_csrf = d.browser_post(&resend, &session, "").await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let (form_without, _) = d
        .post(
            &session,
            &format!("/console/orders/{order}/resend"),
            &[("action_key", "k1")],
        )
        .await;
    assert_eq!(form_without, StatusCode::FORBIDDEN);
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);

    // Anonymous pages go to the login page.
    let anon = d.get("/console/", "").await;
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
    let url = "/console/api/events/other/cancel";
    let reason = json!({"reason": "speaker ill"});
    let by_operator = d.post_json(url, &d.operator, &reason).await;
    assert_eq!(by_operator.status(), StatusCode::FORBIDDEN);
    let first = d.post_answer(url, &d.admin, &reason).await;
    assert_eq!(
        (first["orders"].as_u64(), first["refunded_now"].as_u64()),
        (Some(3), Some(3)),
        "{first}"
    );
    assert_eq!(first["failed"], json!([]));
    let again = d.post_answer(url, &d.admin, &reason).await;
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
    assert_eq!(d.audited("event.cancel").await, 1);
}
