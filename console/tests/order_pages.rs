//! The search and order pages render what buyers and operators typed as text: an
//! order whose buyer's name, event title, emails and timeline carry markup shows that
//! markup escaped, on the order's page and in the search results (a forgotten escape
//! there was stored XSS in the operator console).

mod support;

use reqwest::StatusCode;
use uuid::Uuid;

use support::csrf_of;

const SCRIPT: &str = "<script>alert(1)</script>";
/// `SCRIPT` as the templates escape it.
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;";
const IMG: &str = "<img src=x onerror=alert(2)>";

/// No markup from the data got through: neither the script nor the image.
fn assert_inert(html: &str) {
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("alert(1)</"), "{html}");
}

#[tokio::test]
async fn markup_in_an_order_is_shown_as_text_on_its_page_and_in_the_search() {
    let c = support::spawn().await;
    let db = &c.db;
    support::create_operators(db).await;
    let event = support::seed_event(db, "xss", 1, 1).await;
    sqlx::query("UPDATE events SET title = $1 WHERE id = $2")
        .bind(SCRIPT)
        .bind(event)
        .execute(&db.pool)
        .await
        .unwrap();
    let order: Uuid = sqlx::query_scalar(
        "UPDATE orders SET buyer_name = $1, payment_intent_id = $2 WHERE event_id = $3 RETURNING id",
    )
    .bind(SCRIPT)
    .bind(IMG)
    .bind(event)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, status, attempts, last_error, subject, body_html)
         VALUES (gen_random_uuid(), $1, 'confirmation', 'confirmation:1', 'buyer1@example.org', 'bounced', 2, $2, $3, $4)",
    )
    .bind(order)
    .bind(IMG)
    .bind(SCRIPT)
    .bind(format!("<p>Hello {SCRIPT}</p>"))
    .execute(&db.pool)
    .await
    .unwrap();

    let session = c.login("olga@floodgate.test").await;

    // The order's page: title, crumbs, heading, the email as sent (in its sandboxed
    // frame's srcdoc) and its error, all as text.
    let (status, page) = c.page(&session, &format!("/console/orders/{order}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_inert(&page);
    assert!(
        page.contains(&format!(
            "<title>Order of {SCRIPT_ESCAPED} · Floodgate console</title>"
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!("<h1>{SCRIPT_ESCAPED} <span class=\"muted\">")),
        "the buyer's name: {page}"
    );
    assert!(
        page.contains(&format!(
            "<a href=\"/console/events/xss\">{SCRIPT_ESCAPED}</a>"
        )),
        "the event's title: {page}"
    );
    assert!(
        page.contains("Last error: &lt;img src=x onerror=alert(2)&gt;"),
        "{page}"
    );
    assert!(
        page.contains("srcdoc=\"&lt;p&gt;Hello &lt;script&gt;"),
        "the email's HTML stays inside its frame: {page}"
    );

    // A refused refund (the event starts in two days, refunds end 72 h before) whose
    // reason is markup: the form comes back with it as typed, and the timeline shows
    // the refused attempt with it, all as text.
    let csrf = csrf_of(&page);
    let refund = [
        ("csrf", csrf.as_str()),
        ("action_key", "k1"),
        ("amount", "20.00"),
        ("reason", IMG),
    ];
    let url = format!("/console/orders/{order}/refund");
    let (status, refused) = c.refused(&session, &url, &refund).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_inert(&refused);
    assert!(
        refused.contains("value=\"&lt;img src=x onerror=alert(2)&gt;\""),
        "{refused}"
    );
    let (_, page) = c.page(&session, &format!("/console/orders/{order}")).await;
    assert_inert(&page);
    let timeline = &page[page.find("id=\"timeline\"").unwrap()..];
    assert!(
        timeline.contains("— reason: &lt;img src=x onerror=alert(2)&gt;"),
        "{timeline}"
    );

    // A refused transfer comes back open, marked, with what was typed, as text.
    let ticket = c.ticket_of(order).await;
    let transfer = [
        ("csrf", csrf.as_str()),
        ("action_key", "t1"),
        ("email", "not-an-address"),
        ("name", SCRIPT),
    ];
    let url = format!("/console/tickets/{ticket}/transfer");
    let (status, refused) = c.refused(&session, &url, &transfer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_inert(&refused);
    assert!(
        refused.contains(&format!(
            "<details open><summary>Transfer</summary><form class=\"inline refused\" method=\"post\" action=\"/console/tickets/{ticket}/transfer\"><p class=\"field-error\">"
        )) && refused.contains(&format!("value=\"{SCRIPT_ESCAPED}\"")),
        "{refused}"
    );

    // The outcome banners say what the query says, as text.
    let (_, page) = c
        .page(
            &session,
            &format!(
                "/console/orders/{order}?done=resend&error={}",
                urlencode(SCRIPT)
            ),
        )
        .await;
    assert_inert(&page);
    assert!(
        page.contains("<p class=\"banner\" role=\"status\">Done: the confirmation is on its way again, with the current links.</p>")
            && page.contains(&format!("<p class=\"banner bad\" role=\"alert\">{SCRIPT_ESCAPED}</p>")),
        "{page}"
    );

    // The search: by the name, and by what was typed into the box, all as text.
    for q in ["script", SCRIPT] {
        let (status, page) = c
            .page(&session, &format!("/console/?q={}", urlencode(q)))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_inert(&page);
        assert!(page.contains("1 result(s)"), "{q}: {page}");
        assert!(
            page.contains(&format!("<div class=\"muted\">{SCRIPT_ESCAPED}</div>")),
            "the buyer's name: {page}"
        );
        assert!(
            page.contains(&format!(
                "<a href=\"/console/events/xss\">{SCRIPT_ESCAPED}</a>"
            )),
            "the event's title: {page}"
        );
    }
    let (_, page) = c
        .page(&session, &format!("/console/?q={}", urlencode(IMG)))
        .await;
    assert_inert(&page);
    assert!(
        page.contains("value=\"&lt;img src=x onerror=alert(2)&gt;\""),
        "the search box as typed: {page}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
