//! The buyer's pages as a browser without JavaScript gets them: every dead end says
//! what happened in plain words and offers the one thing to do (issue 19.2), and an
//! unpaid order says so instead of waiting for a payment nobody made (19.3).

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::Value;
use support::{TestApp, hold_id_of, spawn_app, spawn_with_sandbox};

const NO_PAYMENTS: &str = "http://127.0.0.1:9";

/// A browser without redirects followed, so each answer is seen as sent.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST /e/{slug}/hold`, the event page's form, with the turn's cookie.
async fn hold_form(app: &TestApp, slug: &str, turn: &str) -> reqwest::Response {
    browser()
        .post(app.url(&format!("/e/{slug}/hold")))
        .header("cookie", format!("fg_a_{slug}={turn}"))
        .form(&[
            ("tier", "ga"),
            ("quantity", "1"),
            ("name", "Ada Lovelace"),
            ("email", "ada@example.org"),
        ])
        .send()
        .await
        .unwrap()
}

/// The page's heading, and the href and label of its one action.
struct DeadEnd {
    status: StatusCode,
    heading: String,
    action: Option<(String, String)>,
    cookies: Vec<String>,
    html: String,
}

async fn dead_end(r: reqwest::Response) -> DeadEnd {
    let status = r.status();
    let cookies = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let html = r.text().await.unwrap();
    let between = |from: &str, to: &str| {
        let start = html.find(from)? + from.len();
        Some(html[start..start + html[start..].find(to)?].to_owned())
    };
    let heading = between("<h1>", "</h1>")
        .unwrap_or_default()
        .replace("&#39;", "'");
    let action = between(r#"<a class="button" href=""#, "</a>").map(|a| {
        let (href, label) = a.split_once(r#"">"#).unwrap();
        (href.replace("&#x2f;", "/"), label.to_owned())
    });
    DeadEnd {
        status,
        heading,
        action,
        cookies,
        html,
    }
}

fn action(d: &DeadEnd) -> (&str, &str) {
    let (href, label) = d.action.as_ref().expect("one thing to do");
    (href.as_str(), label.as_str())
}

fn assert_plain(d: &DeadEnd, what: &str) {
    let lower = d.html.to_lowercase();
    for word in ["admission", "unauthorized", "conflict", "forbidden"] {
        assert!(!lower.contains(word), "{what}: {word:?} in {}", d.html);
    }
    assert!(!d.html.contains("history.back"), "{what}: a real link");
}

#[tokio::test]
async fn every_dead_end_says_what_happened_and_offers_the_one_thing_to_do() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 50, 1000)]).await;
    let turn = app.admission("gig", 1);

    // Hold through the form: on to the checkout page.
    let held = hold_form(&app, "gig", &turn).await;
    assert_eq!(held.status(), StatusCode::SEE_OTHER);
    let checkout = held.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(checkout.starts_with("/e/gig/holds/"), "{checkout}");

    // The same turn holds again (a second tab): back to the checkout it already has.
    let again = dead_end(hold_form(&app, "gig", &turn).await).await;
    assert_plain(&again, "held twice");
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.heading, "You already have seats held");
    assert_eq!(action(&again), (checkout.as_str(), "Resume your checkout"));

    // The checkout page without the turn that made it: join the queue.
    let page = browser().get(app.url(&checkout)).send().await.unwrap();
    let stranger = dead_end(page).await;
    assert_plain(&stranger, "no turn");
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stranger.heading, "Join the queue first");
    assert_eq!(action(&stranger), ("/queue/gig", "Join the queue"));

    // The hold ran out while its page was open, then Pay: hold seats again.
    let hold_id = checkout.rsplit('/').next().unwrap();
    app.lapse_hold(hold_id).await;
    let pay = browser()
        .post(app.url(&format!("{checkout}/pay")))
        .header("cookie", format!("fg_a_gig={turn}"))
        .send()
        .await
        .unwrap();
    let lapsed = dead_end(pay).await;
    assert_plain(&lapsed, "lapsed");
    assert_eq!(lapsed.status, StatusCode::CONFLICT);
    assert_eq!(lapsed.heading, "Your seats were released");
    assert_eq!(action(&lapsed), ("/e/gig", "Hold seats again"));

    // The turn was spent on an order: join again, with the spent place forgotten so
    // the link takes a new one.
    let spent = app.admission("gig", 2);
    let bought = hold_id_of(app.hold("gig", &spent, "ga", 1).await).await;
    app.exec(&format!(
        "UPDATE holds SET status = 'converted', closed_at = now() WHERE id = '{bought}'"
    ))
    .await;
    let used = dead_end(hold_form(&app, "gig", &spent).await).await;
    assert_plain(&used, "spent");
    assert_eq!(used.status, StatusCode::UNAUTHORIZED);
    assert_eq!(used.heading, "You have already bought with this turn");
    assert_eq!(action(&used), ("/queue/gig", "Join the queue again"));
    for name in ["fg_q_gig", "fg_a_gig"] {
        assert!(
            used.cookies
                .iter()
                .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0")),
            "{name} dropped: {:?}",
            used.cookies
        );
    }

    // An order link without its code.
    let order = browser()
        .get(app.url(&format!("/orders/{}", uuid::Uuid::nil())))
        .send()
        .await
        .unwrap();
    let lost = dead_end(order).await;
    assert_plain(&lost, "order");
    assert_eq!(lost.heading, "We can't find this order");
    assert!(lost.html.contains("confirmation email"), "{}", lost.html);
    app.cleanup(&["gig"]).await;
}

/// The quantity box offers no more than the tier has left.
#[tokio::test]
async fn the_quantity_box_never_offers_more_than_is_left() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 3, 1000)]).await;
    let turn = app.admission("gig", 1);
    let held = hold_id_of(app.hold("gig", &turn, "ga", 1).await).await;
    assert!(!held.is_empty());
    // The event page reads a catalogue cached for a second.
    platform::poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        async || {
            let html = app
                .get("/e/gig")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            html.contains(r#"name="quantity" type="number" min="1" max="2""#)
                .then_some(())
                .ok_or(format!("2 left of 3, 10 per order allowed: {html}"))
        },
    )
    .await;
    app.cleanup(&["gig"]).await;
}

/// A buyer who came back from the payment page without paying (a declined card, or
/// "Cancel and return") reads "not paid" and until when the seats are held, with a
/// button to try again; the page does not keep refreshing for a payment that is not
/// coming. Once paid, the page says so.
#[tokio::test]
async fn an_order_nobody_paid_says_not_paid_and_offers_to_try_again() {
    let (app, _sandbox, sandbox_base) = spawn_with_sandbox(Default::default()).await;
    app.event("gig", &[("ga", 50, 1000)]).await;
    let turn = app.admission("gig", 1);
    let hold_id = hold_id_of(app.hold("gig", &turn, "ga", 1).await).await;
    let co: Value = app.checkout(&hold_id, &turn).await.json().await.unwrap();
    let page = format!(
        "/orders/{}?order_token={}",
        co["order_id"].as_str().unwrap(),
        co["order_token"].as_str().unwrap()
    );
    let html = app.get(&page).send().await.unwrap().text().await.unwrap();
    let html = html.replace("&#x2f;", "/");
    assert!(
        html.contains("Not paid — your seats are held until"),
        "{html}"
    );
    let pay_url = co["payment"]["pay_url"].as_str().unwrap();
    assert!(
        html.contains(&format!(
            r#"<a class="button" href="{pay_url}">Try again</a>"#
        )),
        "{html}"
    );
    assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
    assert!(!html.to_lowercase().contains("waiting for your payment"));

    let intent = co["payment"]["intent_id"].as_str().unwrap();
    let paid = support::confirm_at_provider(
        &sandbox_base,
        intent,
        "pm_card_visa",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(paid.status().is_success());
    let order_id = co["order_id"].as_str().unwrap();
    app.until_order_is(order_id, co["order_token"].as_str().unwrap(), "paid")
        .await;
    let html = app.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Paid. Your access link"), "{html}");
    assert!(!html.contains("Try again"), "{html}");
    app.cleanup(&["gig"]).await;
}

/// The sale window is the organiser's (issue 19.12): before it opens the event page
/// says when, offers no form, and a hold is refused whatever the queue says; after it
/// closes the same. The API answers `409 sales_not_open` / `sales_closed`.
#[tokio::test]
async fn no_one_holds_seats_outside_the_sale_window() {
    let app = spawn_app(NO_PAYMENTS).await;
    app.event("gig", &[("ga", 10, 1000)]).await;
    app.exec(
        "UPDATE events SET sales_open_at = now() + interval '1 day', organiser = 'Northwind'
         WHERE slug = 'gig'",
    )
    .await;
    // The catalogue is cached for a second.
    let turn = app.admission("gig", 1);
    platform::poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        async || {
            let r = app.hold("gig", &turn, "ga", 1).await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status == StatusCode::CONFLICT && body["error"] == "sales_not_open")
                .then_some(())
                .ok_or(format!("{status} {body}"))
        },
    )
    .await;
    let html = app
        .get("/e/gig")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"id="sale">Sales open "#), "{html}");
    assert!(html.contains("Organised by Northwind"), "{html}");
    assert!(!html.contains(r#"<form class="buy""#), "{html}");
    let page = dead_end(hold_form(&app, "gig", &turn).await).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert_eq!(page.heading, "Sales have not opened yet");

    app.exec(
        "UPDATE events SET sales_open_at = now() - interval '2 days',
                sales_close_at = now() - interval '1 minute' WHERE slug = 'gig'",
    )
    .await;
    platform::poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        async || {
            let r = app.hold("gig", &turn, "ga", 1).await;
            let body: Value = r.json().await.unwrap();
            (body["error"] == "sales_closed")
                .then_some(())
                .ok_or(format!("{body}"))
        },
    )
    .await;
    app.assert_count("SELECT count(*) FROM holds", 0).await;
    app.cleanup(&["gig"]).await;
}

/// The confirmation page names the address the links went to, links the receipt, and
/// lets the buyer put a name on each ticket of a multi-ticket order (issue 19.4); a
/// name is audited on the order and a bad one changes nothing.
#[tokio::test]
async fn a_paid_order_names_its_address_has_a_receipt_and_takes_attendee_names() {
    let (app, _sandbox, sandbox_base) = spawn_with_sandbox(Default::default()).await;
    app.event("gig", &[("ga", 50, 1000)]).await;
    let turn = app.admission("gig", 1);
    let hold_id = hold_id_of(app.hold("gig", &turn, "ga", 2).await).await;
    let co: Value = app.checkout(&hold_id, &turn).await.json().await.unwrap();
    let (order_id, token) = (
        co["order_id"].as_str().unwrap(),
        co["order_token"].as_str().unwrap(),
    );
    let intent = co["payment"]["intent_id"].as_str().unwrap();
    support::confirm_at_provider(
        &sandbox_base,
        intent,
        "pm_card_visa",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    app.until_order_is(order_id, token, "paid").await;
    let page = format!("/orders/{order_id}?order_token={token}");
    let html = app.get(&page).send().await.unwrap().text().await.unwrap();
    let email = app
        .text(&format!(
            "SELECT buyer_email FROM orders WHERE id = '{order_id}'"
        ))
        .await;
    assert!(
        html.contains(&format!("on their way to <strong>{email}</strong>")),
        "{html}"
    );
    assert!(html.contains(r#"id="ticket-names""#), "{html}");

    let receipt = app
        .get(&format!("/orders/{order_id}/receipt?order_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), StatusCode::OK);
    let receipt = receipt.text().await.unwrap();
    assert!(receipt.contains(r#"id="total">EUR 20.00"#), "{receipt}");
    assert!(receipt.contains(&email), "{receipt}");
    // Another order's token opens nothing.
    let wrong = app
        .get(&format!(
            "/orders/{order_id}/receipt?order_token=00{}",
            &token[2..]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);

    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM tickets WHERE order_id = $1::uuid ORDER BY seat_no")
            .bind(order_id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let names_url = app.url(&format!("/orders/{order_id}/names?order_token={token}"));
    let bad = browser()
        .post(&names_url)
        .form(&[(format!("name_{}", codes[1]), "x".repeat(500))])
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error(), "{}", bad.status());
    let saved = browser()
        .post(&names_url)
        .form(&[(format!("name_{}", codes[1]), "Grace Hopper")])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let back = saved.headers()[LOCATION].to_str().unwrap().to_owned();
    let html = app.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("The names are saved."), "{html}");
    assert!(html.contains(r#"value="Grace Hopper""#), "{html}");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT holder_name FROM tickets WHERE order_id = $1::uuid ORDER BY seat_no",
    )
    .bind(order_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(names, ["Ada Lovelace", "Grace Hopper"]);

    // "Add to calendar": an entry per ticket, under the UID the email and the ticket's
    // /join page use.
    let ics = app
        .get(&format!(
            "/orders/{order_id}/calendar.ics?order_token={token}"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM tickets WHERE order_id = $1::uuid ORDER BY seat_no")
            .bind(order_id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2, "{ics}");
    for id in ids {
        assert!(
            ics.contains(&format!("UID:{}", contract::calendar::uid(id))),
            "{ics}"
        );
    }
    app.assert_count(
        "SELECT count(*) FROM order_events WHERE action = 'ticket.name' AND actor = 'buyer'",
        1,
    )
    .await;
    app.cleanup(&["gig"]).await;
}
