//! Black-box tests: a real sandbox on 127.0.0.1 port 0, driven over HTTP, with a
//! small axum server on port 0 as the webhook receiver (the peer, recording what
//! it gets). Nothing sleeps for a condition; `eventually` polls with a deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use reqwest::redirect::Policy;
use sandbox::{Faults, Rate, Sandbox, SandboxConfig, app};
use serde_json::{Value, json};
use sha2::Sha256;

const KEY: &str = "sk_test_floodgate";
const SECRET: &str = "whsec_test_secret";

// ---------------------------------------------------------------- harness

#[derive(Clone, Debug)]
struct Received {
    signature: String,
    body: Vec<u8>,
    event: Value,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// How many requests to answer 500 before answering 200.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, String) {
        let receiver = Receiver {
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// What was accepted (answered 200), in arrival order.
    fn accepted(&self) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }

    fn accepted_of(&self, kind: &str, intent: &str) -> Vec<Received> {
        self.accepted()
            .into_iter()
            .filter(|r| r.event["type"] == kind && about(&r.event) == intent)
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    r.got.lock().unwrap().push(Received {
        signature: headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

/// The payment intent an event is about (`data.object` is the intent, or a charge
/// naming it).
fn about(event: &Value) -> String {
    let object = &event["data"]["object"];
    match object["object"].as_str() {
        Some("payment_intent") => object["id"].as_str().unwrap_or_default().to_owned(),
        _ => object["payment_intent"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Checks a `Stripe-Signature` header the way a merchant does, computed here
/// independently of `sandbox::sign`.
fn signature_is_valid(header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// Polls `check` until it yields a value; fails the test after 15 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let still = format!("timed out waiting for {what}");
    let (within, every) = (Duration::from_secs(15), Duration::from_millis(20));
    platform::poll::eventually(within, every, async || check().await.ok_or(&still)).await
}

struct TestApp {
    base: String,
    client: reqwest::Client,
    hooks: Receiver,
}

async fn spawn(faults: Faults) -> TestApp {
    spawn_with(faults, 0).await
}

async fn spawn_with(faults: Faults, hook_failures: usize) -> TestApp {
    spawn_configured(faults, hook_failures, None).await
}

async fn spawn_configured(
    faults: Faults,
    hook_failures: usize,
    state_file: Option<std::path::PathBuf>,
) -> TestApp {
    let (hooks, url) = Receiver::start(hook_failures).await;
    let config = SandboxConfig {
        webhook_url: url,
        webhook_secret: sandbox::Secret::new(SECRET),
        faults,
        state_file,
        ..SandboxConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(Sandbox::new(config).unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        client,
        hooks,
    }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(KEY)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(KEY)
    }

    /// `POST path` with the key and a form body.
    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post(path).form(form).send().await.unwrap()
    }

    /// `POST path` with the key and a JSON body.
    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post(path).json(body).send().await.unwrap()
    }

    /// `GET path` with the key: the answer's JSON, whatever the status.
    async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// `GET path` as a browser or a scraper does it, without the key: the answer.
    async fn visit(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The text of [`TestApp::visit`]'s answer.
    async fn page(&self, path: &str) -> String {
        self.visit(path).await.text().await.unwrap()
    }

    /// A submit of the hosted payment page of `intent` with `card`.
    async fn pay(&self, intent: &str, card: &str) -> reqwest::Response {
        let form = [("card_number", card)];
        let page = self.client.post(self.url(&format!("/pay/{intent}")));
        page.form(&form).send().await.unwrap()
    }

    /// `POST /v1/refunds` with `form`.
    async fn refund(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form("/v1/refunds", form).await
    }

    /// Creates an intent for €15.00 (form-encoded) and returns its id.
    async fn intent(&self, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("amount", "1500"), ("currency", "eur")];
        form.extend_from_slice(extra);
        let response = self.post_form("/v1/payment_intents", &form).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn confirm(&self, id: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form(&format!("/v1/payment_intents/{id}/confirm"), form)
            .await
    }

    /// Confirms `id` with the test payment method `pm` (`pm_card_visa` pays).
    async fn confirm_with(&self, id: &str, pm: &str) -> reqwest::Response {
        self.confirm(id, &[("payment_method", pm)]).await
    }

    /// Confirms `id` with `pm_card_visa` under the idempotency key `key`.
    async fn confirm_keyed(&self, id: &str, key: &str) -> reqwest::Response {
        self.post(&format!("/v1/payment_intents/{id}/confirm"))
            .header("Idempotency-Key", key)
            .form(&[("payment_method", "pm_card_visa")])
            .send()
            .await
            .unwrap()
    }

    async fn paid_intent(&self) -> String {
        let id = self.intent(&[]).await;
        assert_eq!(self.confirm_with(&id, "pm_card_visa").await.status(), 200);
        id
    }

    async fn payment_intent(&self, id: &str) -> Value {
        let response = self
            .get(&format!("/v1/payment_intents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn faults(&self, patch: Value) -> reqwest::Response {
        self.client
            .put(self.url("/admin/faults"))
            .json(&patch)
            .send()
            .await
            .unwrap()
    }

    async fn deliveries(&self) -> Vec<Value> {
        let list: Value = self.visit("/admin/webhooks").await.json().await.unwrap();
        list["data"].as_array().unwrap().clone()
    }

    /// Waits until `kind` for `intent` has been accepted `n` times.
    async fn webhook(&self, kind: &str, intent: &str, n: usize) -> Vec<Received> {
        eventually(&format!("{n} × {kind} for {intent}"), || async {
            let got = self.hooks.accepted_of(kind, intent);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    body["error"].clone()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

// ---------------------------------------------------------------- intents

#[tokio::test]
async fn creates_intents_from_form_and_from_json() {
    let app = spawn(Faults::default()).await;

    let form = [
        ("amount", "1500"),
        ("currency", "EUR"),
        ("metadata[order_id]", "ord_1"),
        ("return_url", "https://shop.test/orders/ord_1"),
    ];
    let response = app.post_form("/v1/payment_intents", &form).await;
    assert_eq!(response.status(), 200);
    let pi = json_of(response).await;
    let id = pi["id"].as_str().unwrap();
    assert!(id.starts_with("pi_") && id.len() == 27, "{id}");
    assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["amount"], 1500);
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["status"], "requires_payment_method");
    assert!(
        pi["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}_secret_"))
    );
    assert_eq!(pi["metadata"], json!({"order_id": "ord_1"}));
    assert!(pi["created"].as_i64().unwrap() > 1_700_000_000);
    assert!(pi["last_payment_error"].is_null());
    assert!(pi["latest_charge"].is_null());
    assert_eq!(pi["amount_refunded"], 0);

    let body = json!({
        "amount": 2500, "currency": "usd",
        "metadata": {"order_id": "ord_2"}, "return_url": "https://shop.test/orders/ord_2",
    });
    let response = app.post_json("/v1/payment_intents", &body).await;
    assert_eq!(response.status(), 200);
    let pi2 = json_of(response).await;
    assert_eq!(pi2["amount"], 2500);
    assert_eq!(pi2["currency"], "usd");
    assert_eq!(pi2["metadata"]["order_id"], "ord_2");
    assert_ne!(pi2["id"], pi["id"]);

    assert_eq!(app.payment_intent(id).await, pi);

    let missing = app.get("/v1/payment_intents/pi_nope").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let error = error_of(missing).await;
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "resource_missing");
}

#[tokio::test]
async fn refuses_bad_amounts_currencies_and_parameters() {
    let app = spawn(Faults::default()).await;
    // Each body is a valid intent but for the one field under test.
    let with = |field: &str, value: Value| {
        let mut body = json!({"amount": 1500, "currency": "eur"});
        body[field] = value;
        body
    };
    let cases = [
        (with("amount", json!(0)), "amount", "amount_too_small"),
        (with("amount", json!(-5)), "amount", "amount_too_small"),
        (
            with("amount", json!(100_000_000)),
            "amount",
            "amount_too_large",
        ),
        (
            with("amount", json!(12.5)),
            "amount",
            "parameter_invalid_integer",
        ),
        (
            with("amount", json!("ten")),
            "amount",
            "parameter_invalid_integer",
        ),
        (json!({"currency": "eur"}), "amount", "parameter_missing"),
        (
            with("currency", json!("eu1")),
            "currency",
            "parameter_invalid_string",
        ),
        (
            with("currency", json!("euro")),
            "currency",
            "parameter_invalid_string",
        ),
        (
            with("return_url", json!("javascript:x")),
            "return_url",
            "url_invalid",
        ),
        (with("amont", json!(1)), "amont", "parameter_unknown"),
    ];
    for (body, param, code) in cases {
        let response = app.post_json("/v1/payment_intents", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error = error_of(response).await;
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}");
        assert_eq!(error["code"], code, "{body}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let bad_json = app
        .post("/v1/payment_intents")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_eq!(error_of(bad_json).await["type"], "invalid_request_error");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_intent_and_refuses_other_params() {
    let app = spawn(Faults::default()).await;
    let create = |key: &str, amount: &str| {
        app.post("/v1/payment_intents")
            .header("Idempotency-Key", key)
            .form(&[
                ("amount", amount),
                ("currency", "eur"),
                ("metadata[order_id]", "ord_1"),
            ])
            .send()
    };

    let first = create("order-ord_1", "1500").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first).await;

    let again = create("order-ord_1", "1500").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json_of(again).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["client_secret"], first["client_secret"]);

    // The same request in JSON is the same request.
    let as_json = app
        .post("/v1/payment_intents")
        .header("Idempotency-Key", "order-ord_1")
        .json(&json!({"amount": 1500, "currency": "eur", "metadata": {"order_id": "ord_1"}}));
    let as_json = json_of(as_json.send().await.unwrap()).await;
    assert_eq!(as_json["id"], first["id"]);

    let conflict = create("order-ord_1", "1600").await.unwrap();
    assert_eq!(conflict.status(), 400);
    assert_eq!(error_of(conflict).await["type"], "idempotency_error");

    // A key belongs to one endpoint.
    let id = first["id"].as_str().unwrap();
    let other_endpoint = app.confirm_keyed(id, "order-ord_1").await;
    assert_eq!(other_endpoint.status(), 400);
    assert_eq!(error_of(other_endpoint).await["type"], "idempotency_error");
    assert_eq!(
        app.payment_intent(id).await["status"],
        "requires_payment_method"
    );

    // A request refused before it did anything is not recorded: the key stays usable.
    let invalid = create("order-ord_2", "0").await.unwrap();
    assert_eq!(invalid.status(), 400);
    let fixed = create("order-ord_2", "1500").await.unwrap();
    assert_eq!(fixed.status(), 200);
    assert!(fixed.headers().get("idempotent-replayed").is_none());
}

// ---------------------------------------------------------------- confirm

#[tokio::test]
async fn a_confirm_charges_and_sends_a_signed_webhook() {
    let app = spawn(Faults::default()).await;
    let id = app.intent(&[("metadata[order_id]", "ord_9")]).await;

    let response = app.confirm_with(&id, "pm_card_visa").await;
    assert_eq!(response.status(), 200);
    let pi = json_of(response).await;
    assert_eq!(pi["status"], "succeeded");
    assert!(pi["latest_charge"].as_str().unwrap().starts_with("ch_"));
    assert!(pi["last_payment_error"].is_null());

    let got = app.webhook("payment_intent.succeeded", &id, 1).await;
    let hook = &got[0];
    assert!(
        signature_is_valid(&hook.signature, &hook.body),
        "bad signature {}",
        hook.signature
    );
    // Tampering with the body breaks it.
    let mut tampered = hook.body.clone();
    tampered[0] = b' ';
    assert!(!signature_is_valid(&hook.signature, &tampered));
    let event = &hook.event;
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["object"], "event");
    assert!(event["created"].as_i64().unwrap() > 1_700_000_000);
    let object = &event["data"]["object"];
    assert_eq!(object["id"], id);
    assert_eq!(object["status"], "succeeded");
    assert_eq!(object["amount"], 1500);
    assert_eq!(object["metadata"]["order_id"], "ord_9");
    assert_eq!(object["latest_charge"], pi["latest_charge"]);

    assert_eq!(app.payment_intent(&id).await["status"], "succeeded");

    let deliveries = eventually("the delivery record", || async {
        let d = app.deliveries().await;
        (d.len() == 1 && d[0]["delivered"] == true).then_some(d)
    })
    .await;
    assert_eq!(deliveries[0]["event_id"], event["id"]);
    assert_eq!(deliveries[0]["type"], "payment_intent.succeeded");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(deliveries[0]["last_status"], 200);

    let metrics = app.page("/metrics").await;
    assert!(
        metrics.contains("floodgate_sandbox_payment_intents_created_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("floodgate_sandbox_confirms_total{outcome=\"succeeded\"} 1"));
    assert!(metrics.contains("floodgate_sandbox_webhooks_total{result=\"delivered\"} 1"));
}

#[tokio::test]
async fn a_declined_card_leaves_the_intent_payable() {
    let app = spawn(Faults::default()).await;
    let id = app.intent(&[]).await;

    let declining = json!({"card_number": "4000 0000 0000 0002"});
    let path = format!("/v1/payment_intents/{id}/confirm");
    let response = app.post_json(&path, &declining).await;
    assert_eq!(response.status(), 402);
    let error = error_of(response).await;
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");

    let failed = app.webhook("payment_intent.payment_failed", &id, 1).await;
    assert!(signature_is_valid(&failed[0].signature, &failed[0].body));
    assert_eq!(
        failed[0].event["data"]["object"]["last_payment_error"]["code"],
        "card_declined"
    );

    let pi = app.payment_intent(&id).await;
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["last_payment_error"]["code"], "card_declined");
    assert!(
        pi["last_payment_error"]["message"]
            .as_str()
            .unwrap()
            .contains("declined")
    );
    assert!(pi["latest_charge"].is_null());

    // The buyer tries another card.
    let retry = app
        .confirm(&id, &[("card_number", "4242424242424242")])
        .await;
    assert_eq!(retry.status(), 200);
    let pi = json_of(retry).await;
    assert_eq!(pi["status"], "succeeded");
    assert!(pi["last_payment_error"].is_null());

    // The declining test payment method, and a number that is not a card number
    // (refused before anything is attempted: no event).
    let other = app.intent(&[]).await;
    let declined = app.confirm_with(&other, "pm_card_chargeDeclined").await;
    assert_eq!(declined.status(), 402);
    let events_before = app.deliveries().await.len();
    let garbage = app.confirm(&other, &[("card_number", "1234 5678")]).await;
    assert_eq!(garbage.status(), 402);
    assert_eq!(error_of(garbage).await["code"], "incorrect_number");
    assert_eq!(app.deliveries().await.len(), events_before);
    let unknown_pm = app.confirm_with(&other, "pm_bogus").await;
    assert_eq!(unknown_pm.status(), 400);
}

#[tokio::test]
async fn a_second_confirm_is_refused_without_a_second_charge() {
    let app = spawn(Faults::default()).await;
    let id = app.intent(&[]).await;
    let first = json_of(app.confirm_with(&id, "pm_card_visa").await).await;
    let charge = first["latest_charge"].clone();

    let second = app.confirm_with(&id, "pm_card_visa").await;
    assert_eq!(second.status(), 400);
    let error = error_of(second).await;
    assert_eq!(error["code"], "payment_intent_unexpected_state");
    assert_eq!(error["payment_intent"]["latest_charge"], charge);
    assert_eq!(app.payment_intent(&id).await["latest_charge"], charge);

    // Events are queued in the same step as the change, so the record is complete
    // now: one event.
    assert_eq!(app.deliveries().await.len(), 1);
    // And on the wire: deliveries leave in order, so once a later event has arrived
    // a second one for this intent would have too.
    let marker = app.paid_intent().await;
    app.webhook("payment_intent.succeeded", &marker, 1).await;
    assert_eq!(
        app.hooks.accepted_of("payment_intent.succeeded", &id).len(),
        1
    );
}

// ---------------------------------------------------------------- refunds

#[tokio::test]
async fn refunds_update_the_intent_and_send_charge_refunded() {
    let app = spawn(Faults::default()).await;
    let id = app.intent(&[]).await;

    let early = app.refund(&[("payment_intent", id.as_str())]).await;
    assert_eq!(early.status(), 400);
    assert_eq!(
        error_of(early).await["code"],
        "payment_intent_unexpected_state"
    );

    app.confirm_with(&id, "pm_card_visa").await;

    let response = app
        .refund(&[("payment_intent", id.as_str()), ("amount", "500")])
        .await;
    assert_eq!(response.status(), 200);
    let refund = json_of(response).await;
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund["object"], "refund");
    assert_eq!(refund["amount"], 500);
    assert_eq!(refund["payment_intent"], id);
    assert_eq!(refund["status"], "succeeded");
    assert!(refund["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(app.payment_intent(&id).await["amount_refunded"], 500);

    let hooks = app.webhook("charge.refunded", &id, 1).await;
    assert!(signature_is_valid(&hooks[0].signature, &hooks[0].body));
    let charge = &hooks[0].event["data"]["object"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["payment_intent"], id);
    assert_eq!(charge["amount_refunded"], 500);
    assert_eq!(charge["refunded"], false);

    // Idempotent: the same refund twice is one refund.
    let keyed = || {
        app.post("/v1/refunds")
            .header("Idempotency-Key", "refund-1")
            .form(&[("payment_intent", id.as_str()), ("amount", "300")])
            .send()
    };
    let a = json_of(keyed().await.unwrap()).await;
    let b = json_of(keyed().await.unwrap()).await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.payment_intent(&id).await["amount_refunded"], 800);

    let over = app
        .refund(&[("payment_intent", id.as_str()), ("amount", "701")])
        .await;
    assert_eq!(over.status(), 400);
    assert_eq!(error_of(over).await["code"], "amount_too_large");

    // No amount: the rest.
    let rest = app
        .post_json("/v1/refunds", &json!({"payment_intent": id}))
        .await;
    let rest = json_of(rest).await;
    assert_eq!(rest["amount"], 700);
    assert_eq!(app.payment_intent(&id).await["amount_refunded"], 1500);
    let hooks = app.webhook("charge.refunded", &id, 3).await;
    assert_eq!(hooks[2].event["data"]["object"]["refunded"], true);
    assert_eq!(hooks[2].event["data"]["object"]["amount_refunded"], 1500);

    let again = app.refund(&[("payment_intent", id.as_str())]).await;
    assert_eq!(again.status(), 400);
    let fetched = app
        .get_json(&format!("/v1/refunds/{}", rest["id"].as_str().unwrap()))
        .await;
    assert_eq!(fetched, rest);
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn requests_without_the_key_are_refused() {
    let app = spawn(Faults::default()).await;
    let form = [("amount", "1500"), ("currency", "eur")];
    let create = || app.client.post(app.url("/v1/payment_intents"));

    let none = create().form(&form).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(error_of(none).await["type"], "invalid_request_error");

    let wrong = create().bearer_auth("sk_test_wrong_key_1234").form(&form);
    let wrong = wrong.send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let message = error_of(wrong).await["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!message.contains("sk_test_wrong_key_1234"), "{message}");

    let unknown = app.visit("/v1/customers").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(app.get("/v1/customers").send().await.unwrap().status(), 404);

    // Basic auth with the key as the user name, as `curl -u sk_test_...:` sends it.
    let basic = create().basic_auth(KEY, Some("")).form(&form);
    assert_eq!(basic.send().await.unwrap().status(), 200);

    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.visit(probe).await.status(), 200, "{probe}");
    }
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn duplicate_webhooks_deliver_each_event_twice() {
    let app = spawn(Faults {
        duplicate_webhooks: true,
        ..Faults::default()
    })
    .await;
    let id = app.paid_intent().await;
    let got = app.webhook("payment_intent.succeeded", &id, 2).await;
    assert_eq!(got[0].event["id"], got[1].event["id"]);
    assert!(
        got.iter()
            .all(|r| signature_is_valid(&r.signature, &r.body))
    );
    let copies: Vec<_> = app
        .deliveries()
        .await
        .iter()
        .map(|d| d["copy"].clone())
        .collect();
    assert_eq!(copies, [json!(1), json!(2)]);
}

#[tokio::test]
async fn dropped_webhooks_leave_the_change_to_be_found_by_polling() {
    let app = spawn(Faults {
        webhook_drop_rate: Rate::ALWAYS,
        ..Faults::default()
    })
    .await;
    let id = app.paid_intent().await;
    assert_eq!(app.payment_intent(&id).await["status"], "succeeded");
    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["state"], "dropped");
    assert_eq!(deliveries[0]["attempts"], 0);

    // Turn the fault off at run time; the next event arrives, the dropped one never.
    assert_eq!(
        app.faults(json!({"webhook_drop_rate": 0})).await.status(),
        200
    );
    let marker = app.paid_intent().await;
    app.webhook("payment_intent.succeeded", &marker, 1).await;
    assert!(app.hooks.all().iter().all(|r| about(&r.event) != id));
}

#[tokio::test]
async fn a_timed_out_confirm_has_still_charged() {
    let app = spawn(Faults {
        timeout_rate: Rate::ALWAYS,
        timeout_hold_ms: 5_000,
        ..Faults::default()
    })
    .await;
    let id = app.intent(&[]).await;

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(app.url(&format!("/v1/payment_intents/{id}/confirm")))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "confirm-1")
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    // The page timed out, but the money moved: the intent says so, and so does the
    // webhook.
    let pi = app.payment_intent(&id).await;
    assert_eq!(pi["status"], "succeeded");
    app.webhook("payment_intent.succeeded", &id, 1).await;

    // The merchant's retry under the same key gets the original answer, at once, and
    // charges nothing more.
    let retry = app.confirm_keyed(&id, "confirm-1").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let replayed = json_of(retry).await;
    assert_eq!(replayed["latest_charge"], pi["latest_charge"]);
    assert_eq!(app.deliveries().await.len(), 1);

    // A caller that waits out the hold gets a 504.
    app.faults(json!({"timeout_hold_ms": 50})).await;
    let other = app.intent(&[]).await;
    let held = app.confirm(&other, &[]).await;
    assert_eq!(held.status(), 504);
    assert_eq!(error_of(held).await["type"], "api_error");
    assert_eq!(app.payment_intent(&other).await["status"], "succeeded");
}

#[tokio::test]
async fn failed_webhook_deliveries_are_retried_until_accepted() {
    let app = spawn_with(Faults::default(), 2).await;
    let id = app.paid_intent().await;
    app.webhook("payment_intent.succeeded", &id, 1).await;

    let arrivals = app.hooks.all();
    assert_eq!(
        arrivals.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(
        arrivals
            .iter()
            .all(|r| r.event["id"] == arrivals[0].event["id"])
    );
    assert!(
        arrivals
            .iter()
            .all(|r| signature_is_valid(&r.signature, &r.body))
    );

    let deliveries = eventually("the delivery record", || async {
        let d = app.deliveries().await;
        (d[0]["delivered"] == true).then_some(d)
    })
    .await;
    assert_eq!(deliveries[0]["attempts"], 3);
    assert_eq!(deliveries[0]["last_status"], 200);
    assert_eq!(deliveries[0]["state"], "delivered");
}

#[tokio::test]
async fn decline_rate_and_latency_apply_at_run_time() {
    let app = spawn(Faults::default()).await;
    let faults = json_of(app.visit("/admin/faults").await).await;
    assert_eq!(faults["decline_rate"], 0.0);
    assert_eq!(faults["timeout_hold_ms"], 30_000);

    let changed = app
        .faults(json!({"decline_rate": 1, "latency_ms": 300}))
        .await;
    let changed = json_of(changed).await;
    assert_eq!(changed["decline_rate"], 1.0);
    assert_eq!(changed["latency_ms"], 300);
    assert_eq!(changed["timeout_hold_ms"], 30_000);

    let started = Instant::now();
    let id = app.intent(&[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    // No decisive card: the decline rate decides.
    assert_eq!(app.confirm(&id, &[]).await.status(), 402);
    // A decisive card is not subject to it.
    let decisive = app
        .confirm(&id, &[("card_number", "4242 4242 4242 4242")])
        .await;
    assert_eq!(decisive.status(), 200);

    for bad in [
        json!({"decline_rate": 2}),
        json!({"decline_rte": 1}),
        json!({"latency_ms": -1}),
    ] {
        let response = app.faults(bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn delayed_and_reordered_webhooks_all_arrive() {
    let app = spawn(Faults {
        webhook_delay_ms: 300,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let id = app.paid_intent().await;
    app.webhook("payment_intent.succeeded", &id, 1).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    app.faults(json!({"webhook_delay_ms": 0, "out_of_order_webhooks": true}))
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.paid_intent().await);
    }
    for id in &ids {
        app.webhook("payment_intent.succeeded", id, 1).await;
    }
    assert_eq!(app.hooks.accepted().len(), 6);
}

// ---------------------------------------------------------------- hosted page

const DECLINING_CARD: &str = "4000 0000 0000 0002";
const PAYING_CARD: &str = "4242 4242 4242 4242";

#[tokio::test]
async fn the_hosted_page_takes_a_test_card_and_returns_the_buyer() {
    let app = spawn(Faults::default()).await;
    let return_url = "https://shop.test/orders/ord_1?token=a&b=c";
    let id = app
        .intent(&[
            ("return_url", return_url),
            ("description", "<script>alert(1)</script> Early bird"),
        ])
        .await;
    let page_path = format!("/pay/{id}");

    let page = app.visit(&page_path).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("€15.00"), "{html}");
    assert!(html.contains("name=\"card_number\""));
    assert!(html.contains("value=\"\""));
    assert!(html.contains(">Pay</button>"));
    assert!(html.contains(PAYING_CARD) && html.contains(DECLINING_CARD));
    assert!(html.contains("width=device-width"));
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Early bird"));
    assert!(html.contains("https://shop.test/orders/ord_1?token=a&amp;b=c"));

    let declined = app.pay(&id, DECLINING_CARD).await;
    assert_eq!(declined.status(), 402);
    let html = declined.text().await.unwrap();
    assert!(html.contains("Your card was declined."));
    assert!(html.contains("name=\"card_number\""));
    assert!(
        !html.contains(&format!("{DECLINING_CARD}\"")),
        "the number is not echoed"
    );
    app.webhook("payment_intent.payment_failed", &id, 1).await;

    let paid = app.pay(&id, PAYING_CARD).await;
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"], return_url);
    assert_eq!(app.payment_intent(&id).await["status"], "succeeded");
    app.webhook("payment_intent.succeeded", &id, 1).await;

    // A second submit (double click, back button) charges nothing and lands the same.
    let again = app.pay(&id, PAYING_CARD).await;
    assert_eq!(again.status(), 303);
    assert_eq!(app.deliveries().await.len(), 2);
    let html = app.page(&page_path).await;
    assert!(html.contains("Payment received"));

    // Without a return URL the buyer sees the result; unknown intents are a 404.
    let plain = app.intent(&[]).await;
    let result = app.pay(&plain, "4242424242424242").await;
    assert_eq!(result.status(), 200);
    assert!(result.text().await.unwrap().contains("Payment received"));
    let missing = app.visit("/pay/pi_nope").await;
    assert_eq!(missing.status(), 404);
}

/// With a journal, a restarted sandbox knows every intent, charge, refund and
/// idempotency record it had: nothing charged is forgotten, nothing charged twice.
#[tokio::test]
async fn a_restarted_sandbox_remembers_its_books_from_the_journal() {
    let dir = std::env::temp_dir().join(format!("sandbox-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.jsonl", rand_suffix()));
    let before = spawn_configured(Faults::default(), 0, Some(path.clone())).await;
    let create = |app: &TestApp| {
        app.post("/v1/payment_intents")
            .header("Idempotency-Key", "order-1")
            .form(&[("amount", "1500"), ("currency", "eur")])
            .send()
    };
    let paid = json_of(create(&before).await.unwrap()).await;
    let paid = paid["id"].as_str().unwrap().to_owned();
    let confirmed = before.confirm_with(&paid, "pm_card_visa").await;
    assert_eq!(confirmed.status(), 200);
    let declined = before.intent(&[]).await;
    before
        .confirm_with(&declined, "pm_card_chargeDeclined")
        .await;
    let refund = before
        .refund(&[("payment_intent", paid.as_str()), ("amount", "500")])
        .await;
    assert_eq!(refund.status(), 200);
    let refund = json_of(refund).await;

    // A new process on the same journal.
    let after = spawn_configured(Faults::default(), 0, Some(path.clone())).await;
    let intent = after.payment_intent(&paid).await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount_refunded"], 500);
    let refund_id = refund["id"].as_str().unwrap();
    let r = after.get_json(&format!("/v1/refunds/{refund_id}")).await;
    assert_eq!(r["amount"], 500);
    assert_eq!(
        after.payment_intent(&declined).await["last_payment_error"]["decline_code"],
        "generic_decline"
    );
    // The idempotency record survived: the same request is the same intent.
    let again = json_of(create(&after).await.unwrap()).await;
    assert_eq!(again["id"], paid.as_str());
    // And the charge: a second confirm is refused, not a second charge.
    let second = after.confirm_with(&paid, "pm_card_visa").await;
    assert_eq!(second.status(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}")
}
