//! Getting paid against the real payment sandbox (a separate HTTP server speaking
//! Stripe's API, with its fault knobs) and the real Postgres.

mod support;

use std::time::Duration;

use platform::poll::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, confirm_at_provider, hold_id_of, spawn_with_sandbox};

struct Checkout {
    order_id: String,
    order_token: String,
    intent: String,
    hold_id: String,
}

async fn buy(app: &TestApp, slug: &str, seq: u64, quantity: i64) -> Checkout {
    let token = app.admission(slug, seq);
    let hold = app.hold(slug, &token, "ga", quantity).await;
    assert_eq!(hold.status(), StatusCode::CREATED);
    let hold_id = hold_id_of(hold).await;
    let co = app.checkout(&hold_id, &token).await;
    assert_eq!(co.status(), StatusCode::CREATED);
    let co: Value = co.json().await.unwrap();
    // Checkout again: same order, same intent, same token.
    let again: Value = app.checkout(&hold_id, &token).await.json().await.unwrap();
    assert_eq!(co, again, "checkout is idempotent");
    assert!(co["payment"]["pay_url"].as_str().unwrap().contains("/pay/"));
    Checkout {
        order_id: co["order_id"].as_str().unwrap().to_owned(),
        order_token: co["order_token"].as_str().unwrap().to_owned(),
        intent: co["payment"]["intent_id"].as_str().unwrap().to_owned(),
        hold_id,
    }
}

/// Pays the checkout's intent with `method` at the provider, giving up after ten seconds.
async fn confirm(sandbox_base: &str, c: &Checkout, method: &str) -> reqwest::Response {
    let ten_seconds = Duration::from_secs(10);
    let confirmed = confirm_at_provider(sandbox_base, &c.intent, method, ten_seconds).await;
    confirmed.unwrap()
}

async fn order(app: &TestApp, c: &Checkout) -> Value {
    app.order(&c.order_id, &c.order_token).await
}

async fn until_status(app: &TestApp, c: &Checkout, status: &str) -> Value {
    app.until_order_is(&c.order_id, &c.order_token, status)
        .await
}

#[tokio::test]
async fn duplicate_late_and_reordered_webhooks_leave_one_paid_order() {
    let (app, sandbox, sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("pay", &[("ga", 10, 1500)]).await;
    sandbox.set_faults(
        serde_json::from_value(json!({
            "duplicate_webhooks": true, "out_of_order_webhooks": true
        }))
        .unwrap(),
    );
    let c = buy(&app, "pay", 1, 2).await;
    // First a decline, then a good card: the failure may well arrive last.
    let declined = confirm(&sb, &c, "pm_card_chargeDeclined").await;
    assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED);
    let ok = confirm(&sb, &c, "pm_card_visa").await;
    assert!(ok.status().is_success());

    let paid = until_status(&app, &c, "paid").await;
    assert_eq!(paid["tickets"].as_array().unwrap().len(), 2);
    // Let every duplicate and straggler arrive, then look again.
    eventually(
        Duration::from_secs(15),
        Duration::from_millis(50),
        async || {
            let delivered = sandbox.deliveries().iter().all(|d| d.delivered);
            delivered
                .then_some(())
                .ok_or("webhooks never all delivered")
        },
    )
    .await;
    assert_eq!(order(&app, &c).await["status"], "paid");
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 2);
    app.assert_count(
        "SELECT count(*) FROM outbox WHERE subject = 'orders.paid'",
        1,
    )
    .await;
    app.assert_count(
        "SELECT count(*) FROM order_events WHERE action = 'order.paid'",
        1,
    )
    .await;
    assert!(
        app.count("SELECT count(*) FROM payment_events").await >= 2,
        "both events recorded once each"
    );
    assert_eq!(app.tier("ga").await, (10, 2, 0));
    app.cleanup(&["pay"]).await;
}

#[tokio::test]
async fn a_charge_whose_page_timed_out_is_finished_by_the_reconciler() {
    let (app, sandbox, sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    sandbox.set_faults(
        serde_json::from_value(json!({
            "timeout_rate": 1.0, "timeout_hold_ms": 3000, "webhook_drop_rate": 1.0
        }))
        .unwrap(),
    );
    app.event("lost", &[("ga", 10, 1500)]).await;
    let c = buy(&app, "lost", 1, 1).await;
    // The buyer's page gives up; the charge went through; no webhook ever comes.
    let half_a_second = Duration::from_millis(500);
    let gave_up = confirm_at_provider(&sb, &c.intent, "pm_card_visa", half_a_second).await;
    assert!(gave_up.is_err());
    assert_eq!(order(&app, &c).await["status"], "pending_payment");

    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            if order(&app, &c).await["status"] == "paid" {
                return Ok(());
            }
            orders::jobs::reconcile_pending(&app.state).await.unwrap();
            Err("the reconciler never finished the order")
        },
    )
    .await;
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 1);
    app.assert_count("SELECT count(*) FROM order_events WHERE action = 'order.paid' AND actor = 'system:reconciler'", 1).await;
    app.cleanup(&["lost"]).await;
}

#[tokio::test]
async fn paid_after_the_hold_expired_into_a_full_tier_is_refunded_and_the_buyer_told() {
    let (app, sandbox, sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("late", &[("ga", 1, 1500)]).await;
    let slow = buy(&app, "late", 1, 1).await;
    // The slow buyer's hold lapses and someone else takes the seat.
    app.lapse_holds().await;
    let fast = app.hold("late", &app.admission("late", 2), "ga", 1).await;
    assert_eq!(fast.status(), StatusCode::CREATED);

    // Now the slow buyer's money arrives.
    confirm(&sb, &slow, "pm_card_visa").await;
    let refunded = until_status(&app, &slow, "refunded").await;
    assert!(refunded["tickets"].as_array().unwrap().is_empty());
    assert_eq!(app.tier("ga").await, (1, 0, 1), "never oversold");

    // The refund job sends the money back through the provider, once.
    let amount_refunded = || {
        sandbox
            .payment_intent(&slow.intent)
            .unwrap()
            .amount_refunded
    };
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            orders::jobs::run_due(&app.state).await.unwrap();
            (amount_refunded() == 1500)
                .then_some(())
                .ok_or("the refund never reached the provider")
        },
    )
    .await;
    orders::jobs::run_due(&app.state).await.unwrap();
    assert_eq!(amount_refunded(), 1500);
    app.assert_count("SELECT count(*) FROM refunds WHERE status = 'succeeded'", 1)
        .await;
    // The buyer is told: fulfilment sends what the outbox carries.
    let (reason, email): (String, String) = sqlx::query_as(
        "SELECT payload->>'reason', payload->>'buyer_email' FROM outbox WHERE subject = 'orders.refunded'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reason, "seats_gone_after_hold_expired");
    let buyer: String = sqlx::query_scalar("SELECT buyer_email FROM orders")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(email, buyer);
    let _ = slow.hold_id;
    app.cleanup(&["late"]).await;
}

#[tokio::test]
async fn paid_after_expiry_with_a_seat_still_free_keeps_the_sale() {
    let (app, _sandbox, sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("free", &[("ga", 5, 1500)]).await;
    let c = buy(&app, "free", 1, 1).await;
    app.lapse_holds().await;
    confirm(&sb, &c, "pm_card_visa").await;
    let paid = until_status(&app, &c, "paid").await;
    assert_eq!(paid["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(app.tier("ga").await, (5, 1, 0));
    app.cleanup(&["free"]).await;
}

#[tokio::test]
async fn webhooks_without_a_valid_signature_change_nothing() {
    let (app, _sandbox, _sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    app.event("sig", &[("ga", 5, 1500)]).await;
    let c = buy(&app, "sig", 1, 1).await;
    let body = json!({"id": "evt_forged", "type": "payment_intent.succeeded",
                      "data": {"object": {"id": c.intent, "metadata": {"order_id": c.order_id}}}})
    .to_string();
    let now = chrono::Utc::now().timestamp();
    for (what, header) in [
        ("none", None),
        (
            "wrong secret",
            Some(orders::webhooks::sign("whsec_guess", now, body.as_bytes())),
        ),
        (
            "stale",
            Some(orders::webhooks::sign(
                support::WEBHOOK_SECRET,
                now - 3600,
                body.as_bytes(),
            )),
        ),
    ] {
        let r = app.post_webhook(body.clone(), header.as_deref()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_signature",
            "{what}"
        );
    }
    assert_eq!(order(&app, &c).await["status"], "pending_payment");
    assert_eq!(app.count("SELECT count(*) FROM payment_events").await, 0);

    // The order page needs its token; a wrong one looks like no order at all.
    let wrong = format!("/api/orders/{}?order_token=00", c.order_id);
    let wrong = app.get(&wrong).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    app.cleanup(&["sig"]).await;
}

#[tokio::test]
async fn two_settlements_of_one_payment_at_once_settle_it_once_without_a_deadlock() {
    // The webhook and the reconciler (or the reconcilers of two orders replicas) may
    // settle the same charge at the same moment, under different event ids. Both must
    // get through: one sells, the other finds it sold. Neither may die in a deadlock.
    let (app, sandbox, sb) = spawn_with_sandbox(sandbox::Faults::default()).await;
    // No webhook: the test delivers both settlements itself, at once.
    sandbox.set_faults(serde_json::from_value(json!({"webhook_drop_rate": 1.0})).unwrap());
    app.event("race", &[("ga", 10, 1500)]).await;
    let mut paid = Vec::new();
    for seq in 1..=6 {
        let c = buy(&app, "race", seq, 1).await;
        let ok = confirm(&sb, &c, "pm_card_visa").await;
        assert!(ok.status().is_success());
        paid.push(c);
    }
    for c in &paid {
        let event = |id: String| orders::webhooks::WebhookEvent {
            id,
            kind: "payment_intent.succeeded".into(),
            data: orders::webhooks::WebhookData {
                object: json!({"id": c.intent, "metadata": {"order_id": c.order_id}}),
            },
        };
        let (webhook, reconciler) = (
            event(format!("evt_{}", c.intent)),
            event(format!("reconcile:{}", c.intent)),
        );
        let (a, b) = tokio::join!(
            orders::settlement::apply_event(
                &app.state.db,
                "sandbox",
                &webhook,
                orders::settlement::Source::Webhook
            ),
            orders::settlement::apply_event(
                &app.state.db,
                "sandbox",
                &reconciler,
                orders::settlement::Source::Reconciler
            ),
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, orders::settlement::Settled::Paid { .. }))
                .count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(
            until_status(&app, c, "paid").await["tickets"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 6);
    assert_eq!(app.tier("ga").await, (10, 6, 0));
    app.cleanup(&["race"]).await;
}
