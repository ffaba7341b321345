//! The event pages of the console (list, an event's page, reschedule / cancel / bulk
//! resend forms) driven as a browser would: a session cookie, the CSRF token and action
//! key read from the rendered form, against the real Postgres and Redis.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};

use support::desk::Desk;
use support::{alert, csrf_of, field};

/// Olga as the audit names her when she signed in on the pages.
const OLGA: &str = "operator:Olga";

/// Twenty buyers of "big", three of "other": enough for every page, few to seed.
async fn spawn() -> Desk {
    Desk::spawn(20).await
}

#[tokio::test]
async fn the_event_pages_show_tiers_and_only_the_fixes_a_role_may_use() {
    let d = spawn().await;
    // Anonymous: to the login page.
    let anon = d.get("/console/events/big", "").await;
    assert_eq!(anon.headers()["location"], "/console/login");

    let olga = d.login("olga@floodgate.test").await;
    let (status, list) = d.page(&olga, "/console/events").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("href=\"/console/events/big\"")
            && list.contains("href=\"/console/events/other\"")
    );
    let (status, page) = d.page(&olga, "/console/events/big").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<table id=\"tiers\">"), "{page}");
    // General, €20.00, capacity 5000, sold 20, held 0, available 4980.
    assert!(
        page.contains("<td>5000</td><td>20</td><td>0</td><td>4980</td>"),
        "{page}"
    );
    assert!(page.contains("id=\"refund-policy\"") && page.contains("72 h before"));
    assert!(
        page.contains("<form id=\"reschedule\"")
            && page.contains("<form id=\"resend-undelivered\"")
    );
    assert!(
        !page.contains("<form id=\"cancel-event\""),
        "only admins cancel events"
    );

    let alice = d.login("alice@floodgate.test").await;
    let (_, page) = d.page(&alice, "/console/events/big").await;
    assert!(page.contains("<form id=\"cancel-event\""));

    // A host: its own event, read-only; the other one does not exist for them.
    let hank = d.login("hank@floodgate.test").await;
    let (_, list) = d.page(&hank, "/console/events").await;
    assert!(list.contains("/console/events/other") && !list.contains("/console/events/big\""));
    let (status, page) = d.page(&hank, "/console/events/other").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("<form id="), "a host gets no forms: {page}");
    let (status, _) = d.page(&hank, "/console/events/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rescheduling_from_the_page_moves_the_event_once_in_its_own_timezone() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, "/console/events/big").await;
    let csrf = field(&page, "reschedule", "csrf");
    let key = field(&page, "reschedule", "action_key");
    let day = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let starts = format!("{day}T19:30");
    let ends = format!("{day}T21:00");
    let base = [
        ("starts_at", starts.as_str()),
        ("ends_at", ends.as_str()),
        ("reason", "speaker's flight moved"),
        ("notify", "true"),
        ("action_key", key.as_str()),
    ];
    let url = "/console/events/big/reschedule";

    // No CSRF token: refused, nothing changed.
    let (status, _) = d.post(&olga, url, &base).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Anonymous: to the login page, nothing changed.
    let (status, location) = d.post("", url, &base).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    // A host (even with its own CSRF token): refused.
    let hank = d.login("hank@floodgate.test").await;
    let (_, hank_page) = d.page(&hank, "/console/events/other").await;
    let hank_csrf = csrf_of(&hank_page);
    let mut as_host = base.to_vec();
    as_host.push(("csrf", hank_csrf.as_str()));
    let (status, html) = d
        .refused(&hank, "/console/events/other/reschedule", &as_host)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(alert(&html).contains("role"), "{html}");
    // The end before the start: the error on the page, with what was typed; nothing changed.
    let mut backwards = vec![
        ("starts_at", ends.as_str()),
        ("ends_at", starts.as_str()),
        ("reason", "oops"),
        ("csrf", csrf.as_str()),
        ("action_key", "another-key"),
    ];
    let (status, html) = d.refused(&olga, url, &backwards).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(alert(&html).contains("after"), "{html}");
    assert!(
        html.contains(&format!("name=\"starts_at\" value=\"{ends}\""))
            && html.contains("value=\"oops\""),
        "what was typed stays: {html}"
    );
    // A time in a browser's US format is refused with the format to use.
    let us = [
        ("starts_at", "12/01/2030, 07:30 PM"),
        ("ends_at", ends.as_str()),
        ("reason", "oops"),
        ("csrf", csrf.as_str()),
        ("action_key", "a-third-key"),
    ];
    let (status, html) = d.refused(&olga, url, &us).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(alert(&html).contains("YYYY-MM-DD HH:MM"), "{html}");
    backwards.clear();
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);
    assert_eq!(d.count("SELECT count(*) FROM operator_audit").await, 0);

    // Works, and a double submit (same action key) does it once.
    let mut ok = base.to_vec();
    ok.push(("csrf", csrf.as_str()));
    for _ in 0..2 {
        let (status, location) = d.post(&olga, url, &ok).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location.starts_with("/console/events/big?done="),
            "{location}"
        );
    }
    let starts_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT starts_at FROM events WHERE slug = 'big'")
            .fetch_one(&d.db.pool)
            .await
            .unwrap();
    let local = starts_at.with_timezone(&chrono_tz::Europe::Amsterdam);
    assert_eq!(
        local.format("%Y-%m-%dT%H:%M").to_string(),
        starts,
        "read in the event's timezone"
    );
    assert_eq!(d.outbox("events.rescheduled").await, 1);
    assert_eq!(
        d.audited_by("event.reschedule", OLGA, Some("speaker's flight moved"))
            .await,
        1
    );
    let (_, page) = d.page(&olga, "/console/events/big?done=rescheduled").await;
    assert!(
        page.contains(&format!("value=\"{day} 19:30\"")),
        "the form shows the new time, in the event's zone as YYYY-MM-DD HH:MM: {page}"
    );
    assert!(
        page.contains(" CET</time>") || page.contains(" CEST</time>"),
        "times on the page carry the zone's abbreviation"
    );
}

#[tokio::test]
async fn cancelling_from_the_page_needs_an_admin_and_the_slug_and_can_be_run_again() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, "/console/events/other").await;
    let olga_csrf = field(&page, "reschedule", "csrf");
    let url = "/console/events/other/cancel";
    let (status, _) = d
        .refused(
            &olga,
            url,
            &[
                ("csrf", &olga_csrf),
                ("reason", "ill"),
                ("confirm", "other"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an operator may not cancel");

    let alice = d.login("alice@floodgate.test").await;
    let (_, page) = d.page(&alice, "/console/events/other").await;
    let csrf = field(&page, "cancel-event", "csrf");
    let (status, _) = d
        .post(&alice, url, &[("reason", "ill"), ("confirm", "other")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let cancel = |reason, confirm| {
        [
            ("csrf", csrf.as_str()),
            ("reason", reason),
            ("confirm", confirm),
        ]
    };
    let (status, html) = d.refused(&alice, url, &cancel("ill", "big")).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong confirmation"
    );
    assert!(alert(&html).contains("slug"), "{html}");
    assert!(
        html.contains("name=\"confirm\" required autocomplete=\"off\" value=\"big\""),
        "what was typed stays: {html}"
    );
    let (status, _) = d.refused(&alice, url, &cancel(" ", "other")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no reason");
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(
        d.count("SELECT count(*) FROM events WHERE status = 'cancelled'")
            .await,
        0
    );

    let (_, first) = d.post(&alice, url, &cancel("speaker ill", "other")).await;
    assert!(first.contains("3%20refunded%20now"), "{first}");
    // Submitted again (a double click, or a re-run after failures): nothing twice.
    let (_, again) = d.post(&alice, url, &cancel("speaker ill", "other")).await;
    assert!(
        again.contains("0%20refunded%20now") && again.contains("3%20already%20settled"),
        "{again}"
    );
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 3);
    assert_eq!(d.outbox("orders.refunded").await, 3);
    assert_eq!(
        d.audited_by("event.cancel", "admin:Alice", Some("speaker ill"))
            .await,
        1
    );
    let (_, page) = d.page(&alice, "/console/events/other").await;
    assert!(
        page.contains("id=\"cancel-progress\"")
            && page.contains("Every paid order has been refunded"),
        "{page}"
    );
    assert!(
        !page.contains("<form id=\"reschedule\""),
        "a cancelled event cannot be moved"
    );
    assert_eq!(d.count("SELECT count(*) FROM refunds r JOIN orders o ON o.id = r.order_id WHERE o.event_id = (SELECT id FROM events WHERE slug = 'big')").await, 0);
}

#[tokio::test]
async fn bulk_resend_reaches_only_the_undelivered_and_a_double_submit_sends_once() {
    let d = spawn().await;
    // Two buyers of "other": one bounced, one failed; the third was delivered.
    for (n, status) in [(1001, "bounced"), (1002, "failed"), (1003, "sent")] {
        confirmation(&d, n, status).await;
    }
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, "/console/events/other").await;
    assert!(
        page.contains("2 buyer(s) whose confirmation failed or bounced"),
        "{page}"
    );
    let csrf = field(&page, "resend-undelivered", "csrf");
    let key = field(&page, "resend-undelivered", "action_key");
    let url = "/console/events/other/resend-undelivered";
    let (status, _) = d.post(&olga, url, &[("action_key", &key)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let hank = d.login("hank@floodgate.test").await;
    let (_, hank_page) = d.page(&hank, "/console/events/other").await;
    let hank_csrf = csrf_of(&hank_page);
    let (status, _) = d
        .refused(&hank, url, &[("csrf", &hank_csrf), ("action_key", "h")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a host may not resend");
    assert_eq!(d.count("SELECT count(*) FROM outbox").await, 0);

    for _ in 0..2 {
        let (_, location) = d
            .post(&olga, url, &[("csrf", &csrf), ("action_key", &key)])
            .await;
        assert!(location.contains("done="), "{location}");
    }
    assert_eq!(d.outbox("orders.resend_requested").await, 2);
    assert_eq!(
        d.audited_by("event.resend_undelivered", OLGA, None).await,
        1
    );
}

#[tokio::test]
async fn cancelling_one_order_refunds_it_frees_its_seat_and_tells_the_buyer_once() {
    let d = spawn().await;
    let order = d.order_of("buyer1002@example.org").await;
    let api = format!("/console/api/orders/{order}/cancel");
    // Refused for anonymous and host callers; outside the policy (starts in 2 days, 72 h
    // policy) only an admin may, with the override.
    for (who, token, body, refused) in [
        (
            "anonymous",
            "",
            json!({"reason": "x"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a host",
            &d.host,
            json!({"reason": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "an operator",
            &d.operator,
            json!({"reason": "asked"}),
            StatusCode::CONFLICT,
        ),
        (
            "an operator overriding the policy",
            &d.operator,
            json!({"reason": "asked", "override_policy": true}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let r = d.post_json(&api, token, &body).await;
        assert_eq!(r.status(), refused, "{who}");
    }
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(
        d.count("SELECT count(*) FROM orders WHERE status = 'cancelled'")
            .await,
        0
    );

    // From the order page, as an admin: the form, its CSRF token and action key.
    let alice = d.login("alice@floodgate.test").await;
    let (_, page) = d.page(&alice, &format!("/console/orders/{order}")).await;
    let csrf = field(&page, "cancel-order", "csrf");
    let key = field(&page, "cancel-order", "action_key");
    let url = format!("/console/orders/{order}/cancel");
    let form = [
        ("reason", "buyer double-booked"),
        ("override_policy", "true"),
        ("action_key", key.as_str()),
    ];
    let (status, _) = d.post(&alice, &url, &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let mut with_csrf = form.to_vec();
    with_csrf.push(("csrf", csrf.as_str()));
    for _ in 0..2 {
        let (_, location) = d.post(&alice, &url, &with_csrf).await;
        assert_eq!(location, format!("/console/orders/{order}?done=cancel"));
    }
    let one = |sql: &str| sql.replace("$O", &order.to_string());
    assert_eq!(d.count(&one("SELECT count(*) FROM orders WHERE id = '$O' AND status = 'cancelled' AND refunded_cents = 2000")).await, 1);
    assert_eq!(
        d.count(&one(
            "SELECT count(*) FROM refunds WHERE order_id = '$O' AND amount_cents = 2000"
        ))
        .await,
        1
    );
    assert_eq!(
        d.count(&one(
            "SELECT count(*) FROM tickets WHERE order_id = '$O' AND status = 'valid'"
        ))
        .await,
        0
    );
    assert_eq!(
        d.count(
            "SELECT sold::int8 FROM tiers WHERE event_id = (SELECT id FROM events WHERE slug = 'other')"
        )
        .await,
        2,
        "the seat went back to the tier"
    );
    assert_eq!(
        d.count(&one("SELECT count(*) FROM outbox WHERE subject = 'orders.refunded' AND payload->>'order_id' = '$O' AND payload->>'reason' = 'order_cancelled'")).await,
        1,
        "the buyer is told once"
    );
    assert_eq!(
        d.count(&one("SELECT count(*) FROM operator_audit WHERE action = 'order.cancel' AND subject = '$O' AND actor = 'admin:Alice' AND reason = 'buyer double-booked'")).await,
        1
    );
    // Cancelling it again (another key) changes nothing.
    let overriding = json!({"reason": "again", "override_policy": true});
    let again = d.post_answer(&api, &d.admin, &overriding).await;
    assert_eq!(again["cancelled"], false, "{again}");
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 1);
    let (_, page) = d.page(&alice, &format!("/console/orders/{order}")).await;
    assert!(
        !page.contains("<form id=\"cancel-order\""),
        "no cancel form on a cancelled order"
    );
}

/// Gives the confirmation of `buyer{n}@example.org` this fate.
async fn confirmation(d: &Desk, n: i32, status: &str) {
    sqlx::query(
        "INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, status, last_error, sent_at, created_at)
         SELECT gen_random_uuid(), id, 'confirmation', 'confirmation:' || gen_random_uuid(), buyer_email, $2,
                CASE WHEN $2 IN ('failed', 'bounced') THEN '550 no such user' END,
                CASE WHEN $2 = 'sent' THEN now() END, now()
         FROM orders WHERE buyer_email = $1",
    )
    .bind(format!("buyer{n}@example.org"))
    .bind(status)
    .execute(&d.db.pool)
    .await
    .unwrap();
}

/// A visit to a link of the ticket now held by `holder`, `minutes` ago, with this
/// outcome (through the ticket's newest link, if it has one).
async fn visit(d: &Desk, holder: &str, outcome: &str, minutes: i32) {
    sqlx::query(
        "INSERT INTO redemptions (access_link_id, ticket_id, outcome, client, at)
         SELECT (SELECT id FROM access_links l WHERE l.ticket_id = t.id ORDER BY generation DESC LIMIT 1),
                t.id, $2, 'Chrome', now() - make_interval(mins => $3)
         FROM tickets t WHERE t.holder_email = $1",
    )
    .bind(holder)
    .bind(outcome)
    .bind(minutes)
    .execute(&d.db.pool)
    .await
    .unwrap();
}

/// The incident view's table (or its "nothing to fix" line) as Olga sees it, and the
/// whole page.
async fn incidents(d: &Desk, session: &str) -> (String, String) {
    let (status, page) = d.page(session, "/console/events/other/incidents").await;
    assert_eq!(status, StatusCode::OK);
    let start = page.find("id=\"incidents\"").expect("#incidents");
    let rest = &page[start..];
    let table = rest[..rest.find("</table>").or_else(|| rest.find("</p>")).unwrap()].to_owned();
    (table, page)
}

#[tokio::test]
async fn a_host_starts_on_their_events_is_told_why_there_are_none_and_sees_no_edit_link() {
    let d = spawn().await;
    let hank = d.login("hank@floodgate.test").await;
    // Their start page is their events, with a search box over them.
    let start = d.get("/console/", "").await;
    assert_eq!(start.headers()["location"], "/console/login");
    let (status, location) = {
        let r = d
            .http
            .get(d.url("/console/"))
            .header("cookie", &hank)
            .send()
            .await
            .unwrap();
        (
            r.status(),
            r.headers()["location"].to_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/events")
    );
    let (_, list) = d.page(&hank, "/console/events").await;
    assert!(list.contains("href=\"/console/events/other\""), "{list}");
    assert!(list.contains("role=\"search\""), "a search box: {list}");
    // A search is still theirs to make.
    let (status, found) = d.page(&hank, "/console/?q=buyer1001@example.org").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        found.contains("b•••@example.org") && !found.contains(">buyer1001@example.org<"),
        "masked for a host: {found}"
    );
    // Their event's page: no Edit link they could not use.
    let (_, page) = d.page(&hank, "/console/events/other").await;
    assert!(!page.contains("id=\"edit-event\""), "{page}");
    let olga = d.login("olga@floodgate.test").await;
    let (_, staff_page) = d.page(&olga, "/console/events/other").await;
    assert!(staff_page.contains("id=\"edit-event\""));
    // An event that is not theirs: the console's own page, and the way back to theirs.
    let (status, hidden) = d.page(&hank, "/console/events/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        hidden.contains("<header>")
            && hidden.contains("href=\"/console/events\">Back to your events"),
        "{hidden}"
    );

    // A host given no event is told why the list is empty and what to do.
    sqlx::query("UPDATE operators SET event_ids = '{}' WHERE role = 'host'")
        .execute(&d.db.pool)
        .await
        .unwrap();
    let (_, none) = d.page(&hank, "/console/events").await;
    assert!(
        none.contains("You see no events yet. A host sees only the events an admin has given them"),
        "{none}"
    );
    assert!(!none.contains("<table id=\"events\">") && !none.contains("role=\"search\""));
}

#[tokio::test]
async fn an_admin_invites_a_host_who_chooses_a_password_and_sees_only_the_chosen_events() {
    let d = spawn().await;
    let alice = d.login("alice@floodgate.test").await;
    let (status, page) = d.page(&alice, "/console/people").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<table id=\"people\">") && page.contains("hank@floodgate.test"));
    assert!(
        page.contains("href=\"/console/people\">People</a>"),
        "in the header"
    );
    let csrf = field(&page, "invite", "csrf");
    let other = format!("event:{}", d.other_event);
    let invite = |email: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("email", email.to_owned()),
            ("name", "Hilde Host".to_owned()),
            ("role", "host".to_owned()),
            (other.as_str(), "on".to_owned()),
        ]
    };
    let accounts = "SELECT count(*) FROM operators WHERE name = 'Hilde Host'";

    // A bad address: the reason, what was typed kept, nothing written.
    let r = d
        .submit(&alice, "/console/people", &invite("not-an-address"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = r.text().await.unwrap();
    assert!(
        alert(&refused).contains("email is not a valid address"),
        "{refused}"
    );
    assert!(refused.contains("value=\"Hilde Host\""));
    assert_eq!(d.count(accounts).await, 0);

    // Invited: the link, once, on the page (never in a URL).
    let r = d
        .submit(&alice, "/console/people", &invite("hilde@example.org"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let done = r.text().await.unwrap();
    let at = done.find("id=\"invite-link\"").expect("the link");
    let link = done[at..]
        .split("href=\"")
        .nth(1)
        .and_then(|l| l.split('"').next())
        .unwrap()
        .to_owned();
    assert!(link.starts_with("/console/invite/"), "{link}");
    assert_eq!(
        d.audited_by("operator.invite", "admin:Alice", None).await,
        1
    );
    // The same address again: refused, one account.
    let r = d
        .submit(&alice, "/console/people", &invite("hilde@example.org"))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(d.count(accounts).await, 1);
    // No password yet: no way in.
    let form = [
        ("email", "hilde@example.org"),
        ("password", support::PASSWORD),
    ];
    let before = d.submit("", "/console/login", &form).await;
    assert_eq!(before.status(), StatusCode::UNAUTHORIZED);

    // Their own password, once: a short one is refused and the link still works.
    let (status, welcome) = d.page("", &link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(welcome.contains("Welcome, Hilde Host"), "{welcome}");
    let (status, short) = d.refused("", &link, &[("password", "short")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.contains("at least 12 characters"), "{short}");
    let (status, location) = d.post("", &link, &[("password", support::PASSWORD)]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    let (status, used) = d.page("", &link).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(used.contains("This invitation does not work"), "{used}");

    // Signed in, the host sees the chosen event only.
    let hilde = d.login("hilde@example.org").await;
    let (_, list) = d.page(&hilde, "/console/events").await;
    assert!(
        list.contains("href=\"/console/events/other\"")
            && !list.contains("href=\"/console/events/big\""),
        "{list}"
    );

    // The admin changes which events a host sees; nobody else may.
    let (_, page) = d.page(&alice, "/console/people").await;
    let host_id: uuid::Uuid = d
        .scalar("SELECT id FROM operators WHERE email = 'hilde@example.org'")
        .await;
    let path = format!("/console/people/{host_id}/events");
    let big = format!(
        "event:{}",
        d.scalar::<uuid::Uuid>("SELECT id FROM events WHERE slug = 'big'")
            .await
    );
    let csrf = csrf_of(&page);
    let change = [("csrf", csrf.as_str()), (big.as_str(), "on")];
    let (status, _) = d.post(&alice, &path, &change).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, list) = d.page(&hilde, "/console/events").await;
    assert!(
        list.contains("href=\"/console/events/big\"")
            && !list.contains("href=\"/console/events/other\""),
        "{list}"
    );
    let olga = d.login("olga@floodgate.test").await;
    let (status, _) = d.page(&olga, "/console/people").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, olga_page) = d.page(&olga, "/console/events").await;
    let olga_csrf = csrf_of(&olga_page);
    let as_olga = [("csrf", olga_csrf.as_str())];
    assert_eq!(
        d.post(&olga, &path, &as_olga).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(d.audited("operator.host_events").await, 1);
}

#[tokio::test]
async fn the_incident_view_lists_only_what_can_be_fixed_one_row_per_buyer_in_words() {
    let d = spawn().await;
    confirmation(&d, 1001, "bounced").await;
    confirmation(&d, 1002, "failed").await;
    confirmation(&d, 1003, "sent").await;
    // buyer1002 also tried their link, three times: still one row. buyer1003 came too
    // early and gave nothing to fix.
    for minutes in [5, 10, 15] {
        visit(&d, "buyer1002@example.org", "too_early", minutes).await;
    }
    visit(&d, "buyer1003@example.org", "too_early", 5).await;
    // An old refusal is not recent.
    visit(&d, "buyer1003@example.org", "transferred", 5 * 60).await;

    let olga = d.login("olga@floodgate.test").await;
    let (table, page) = incidents(&d, &olga).await;
    assert_eq!(
        table.matches("<tr><td>").count(),
        2,
        "one row per buyer: {table}"
    );
    assert!(
        table.contains("buyer1001@") && table.contains("buyer1002@"),
        "{table}"
    );
    assert!(
        !table.contains("buyer1003@"),
        "delivered and merely early: {table}"
    );
    assert!(
        table.contains("Confirmation bounced: the address looks wrong")
            && table.contains("Confirmation could not be sent")
            && table.contains("550 no such user"),
        "{table}"
    );
    // Each row has its fix: a bounce needs the address corrected, a failure a resend.
    let row = |email: &str| {
        let at = table.find(email).unwrap();
        let end = table[at..].find("</tr>").unwrap();
        table[at..at + end].to_owned()
    };
    assert!(row("buyer1001@").contains(">Fix address</a>"), "{table}");
    assert!(
        row("buyer1001@").contains("#email\""),
        "to the email form: {table}"
    );
    assert!(
        row("buyer1002@").contains("<button type=\"submit\">Resend</button>"),
        "{table}"
    );
    // What nobody can fix is counted in words, not listed, and never in code words.
    assert!(
        page.contains("nothing to fix: 2 too early."),
        "both early buyers, counted once each: {page}"
    );
    for code in ["too_early", "not-opened", "cant-join", "replaced"] {
        assert!(!page.contains(code), "{code} on the page");
    }
    // It reloads itself, without script, to the same view.
    assert!(
        page.contains(
            "<meta http-equiv=\"refresh\" content=\"30; url=/console/events/other/incidents\">"
        ),
        "{page}"
    );

    // Host: read-only, own event only.
    let hank = d.login("hank@floodgate.test").await;
    let (host_table, host_page) = incidents(&d, &hank).await;
    // The event keeps buyers' addresses from hosts: masked.
    assert!(
        host_table.contains(">b•••@example.org</a>") && !host_table.contains("buyer1001@"),
        "{host_table}"
    );
    assert!(!host_page.contains("<form id="));
    assert!(!host_table.contains("Resend") && !host_table.contains("Fix address"));
    assert_eq!(
        d.page(&hank, "/console/events/big/incidents").await.0,
        StatusCode::NOT_FOUND
    );

    // The bulk fix: refused without CSRF; once for a double submit; back to this view.
    let csrf = field(&page, "incident-resend", "csrf");
    let key = field(&page, "incident-resend", "action_key");
    let url = "/console/events/other/resend-undelivered";
    let (status, _) = d
        .post(&olga, url, &[("action_key", &key), ("back", "incidents")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let (_, location) = d
            .post(
                &olga,
                url,
                &[("csrf", &csrf), ("action_key", &key), ("back", "incidents")],
            )
            .await;
        assert!(
            location.starts_with("/console/events/other/incidents?done="),
            "{location}"
        );
    }
    assert_eq!(d.outbox("orders.resend_requested").await, 2);
    assert_eq!(d.audited("event.resend_undelivered").await, 1);
}

#[tokio::test]
async fn a_row_s_resend_comes_back_to_the_incident_view_and_the_row_leaves_once_it_is_sent() {
    let d = spawn().await;
    confirmation(&d, 1002, "failed").await;
    let olga = d.login("olga@floodgate.test").await;
    let (table, page) = incidents(&d, &olga).await;
    assert!(table.contains("buyer1002@"), "{table}");
    // One buyer: the row's button is the fix, no bulk form beside it.
    assert!(!page.contains("<form id=\"incident-resend\""), "{page}");
    let order = d.order_of("buyer1002@example.org").await;
    let form = &table[table.find("<form").unwrap()..];
    let key = form
        .split("name=\"action_key\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_owned();
    let csrf = csrf_of(form);
    let resend = format!("/console/orders/{order}/resend");
    for _ in 0..2 {
        let (status, location) = d
            .post(
                &olga,
                &resend,
                &[("csrf", &csrf), ("action_key", &key), ("back", "incidents")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location.starts_with("/console/events/other/incidents?done=confirmation%20resent"),
            "{location}"
        );
    }
    assert_eq!(
        d.outbox("orders.resend_requested").await,
        1,
        "a double click resends once"
    );
    // Fulfilment queues the new confirmation: the row leaves.
    confirmation(&d, 1002, "queued").await;
    let (table, _) = incidents(&d, &olga).await;
    assert!(table.contains("Nothing to fix."), "{table}");
}

/// Corrects the address of `buyer{n}@example.org`'s one-ticket order to `to`, as
/// fulfilment then leaves it: the link issued a day before revoked.
async fn correct_address(d: &Desk, n: i32, to: &str) {
    let order = d.order_of(&format!("buyer{n}@example.org")).await;
    sqlx::query(
        "INSERT INTO access_links (id, ticket_id, generation, token_hash, created_at)
         SELECT gen_random_uuid(), id, 1, decode(md5(random()::text), 'hex'), now() - interval '1 day'
         FROM tickets WHERE order_id = $1",
    )
    .bind(order)
    .execute(&d.db.pool)
    .await
    .unwrap();
    let corrected = json!({"email": to, "reason": "typo"});
    let path = format!("/console/api/orders/{order}/email");
    let r = d.post_json(&path, &d.operator, &corrected).await;
    assert_eq!(r.status(), StatusCode::OK);
    sqlx::query(
        "UPDATE access_links SET revoked_at = now(), revoked_reason = 'email_changed'
         WHERE ticket_id IN (SELECT id FROM tickets WHERE order_id = $1)",
    )
    .bind(order)
    .execute(&d.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_visit_with_a_link_replaced_by_an_address_correction_is_the_old_address_s() {
    let d = spawn().await;
    correct_address(&d, 1001, "ada@example.net").await;
    // Someone opens the old link, mailed to the old address.
    visit(&d, "ada@example.net", "replaced", 2).await;

    let olga = d.login("olga@floodgate.test").await;
    let (table, page) = incidents(&d, &olga).await;
    assert_eq!(table.matches("<tr><td>").count(), 1, "{table}");
    assert!(
        table.contains("Opened an old link, replaced when the address was corrected")
            && table.contains("from buyer1001@example.org"),
        "the visit is the old address's: {table}"
    );
    assert!(
        table.contains("<button type=\"submit\">Resend</button>"),
        "{table}"
    );
    assert!(
        !page.contains("refused-visits"),
        "nothing else was refused: {page}"
    );

    // The buyer gets in with the new link: nothing left to fix.
    visit(&d, "ada@example.net", "entered", 1).await;
    let (table, _) = incidents(&d, &olga).await;
    assert!(table.contains("Nothing to fix."), "{table}");
}

#[tokio::test]
async fn an_event_set_up_through_the_form_is_created_once_and_a_bad_form_writes_nothing() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (status, page) = d.page(&olga, "/console/events/new").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = field(&page, "event-setup", "csrf");
    let day = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let starts = format!("{day}T20:00");
    let ends = format!("{day}T22:00");
    let good: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("slug", "launch"),
        ("title", "Launch night"),
        ("timezone", "America/New_York"),
        ("starts_at", &starts),
        ("ends_at", &ends),
        ("meeting_provider", "zoom"),
        ("meeting_url", "https://zoom.example/j/1"),
        ("refundable_until_hours_before", "24"),
        ("queue_mode", "paused"),
        ("rate_per_minute", "600"),
        ("max_active", "150"),
        ("tier1_code", "ga"),
        ("tier1_name", "General"),
        ("tier1_price", "25.50"),
        ("tier1_currency", "usd"),
        ("tier1_capacity", "800"),
        ("tier2_code", ""),
    ];
    let events = "SELECT count(*) FROM events WHERE slug = 'launch'";
    let url = "/console/events/new";

    // Refused: no CSRF, a host, anonymous.
    let no_csrf: Vec<_> = good.iter().filter(|(k, _)| *k != "csrf").cloned().collect();
    assert_eq!(d.post(&olga, url, &no_csrf).await.0, StatusCode::FORBIDDEN);
    let hank = d.login("hank@floodgate.test").await;
    assert_eq!(d.page(&hank, url).await.0, StatusCode::FORBIDDEN);
    let (_, hank_page) = d.page(&hank, "/console/events/other").await;
    let hank_csrf = csrf_of(&hank_page);
    let mut as_host: Vec<_> = no_csrf.clone();
    as_host.push(("csrf", &hank_csrf));
    assert_eq!(d.post(&hank, url, &as_host).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.post("", url, &good).await.1, "/console/login");
    assert_eq!(d.count(events).await, 0);

    // Invalid: shown on the form with what was typed; nothing written.
    for (key, bad, says) in [
        ("ends_at", starts.as_str(), "end"),
        ("timezone", "Mars/Olympus", "timezone"),
        ("tier1_price", "twenty", "price"),
        ("tier1_capacity", "-5", "capacity"),
    ] {
        let form: Vec<_> = good
            .iter()
            .map(|(k, v)| if *k == key { (*k, bad) } else { (*k, *v) })
            .collect();
        let (status, html) = d.refused(&olga, url, &form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        let said = alert(&html);
        assert!(said.to_lowercase().contains(says), "{key}: {said}");
        assert!(
            html.contains("value=\"Launch night\""),
            "what was typed stays"
        );
    }
    assert_eq!(d.count(events).await, 0);
    assert_eq!(d.count("SELECT count(*) FROM operator_audit").await, 0);

    // Works; a double submit creates it once.
    let (status, location) = d.post(&olga, url, &good).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/events/launch?done=created")
    );
    // The same form again: the slug is taken (409, as the API says), the form as typed.
    let (second, html) = d.refused(&olga, url, &good).await;
    assert_eq!(second, StatusCode::CONFLICT);
    assert!(html.contains("value=\"Launch night\""), "{html}");
    assert_eq!(d.count(events).await, 1);
    assert_eq!(d.audited_by("event.create", OLGA, None).await, 1);
    let (starts_at, policy, meeting, queue): (chrono::DateTime<chrono::Utc>, Value, Value, String) = sqlx::query_as(
        "SELECT starts_at, refund_policy, meeting, queue_mode FROM events WHERE slug = 'launch'",
    )
    .fetch_one(&d.db.pool)
    .await
    .unwrap();
    assert_eq!(
        starts_at
            .with_timezone(&chrono_tz::America::New_York)
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
        starts
    );
    assert_eq!(policy["refundable_until_hours_before"], 24);
    assert_eq!(
        (meeting["provider"].as_str(), meeting["url"].as_str()),
        (Some("zoom"), Some("https://zoom.example/j/1"))
    );
    assert_eq!(queue, "paused");
    assert_eq!(
        d.count("SELECT count(*) FROM tiers t JOIN events e ON e.id = t.event_id WHERE e.slug = 'launch' AND t.price_cents = 2550 AND t.currency = 'USD' AND t.capacity = 800").await,
        1
    );
    let (_, page) = d.page(&olga, "/console/events/launch?done=created").await;
    assert!(
        page.contains("<td>800</td><td>0</td><td>0</td><td>800</td>"),
        "{page}"
    );
}

#[tokio::test]
async fn editing_an_event_checks_capacity_against_sales_and_saves_once() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (status, page) = d.page(&olga, "/console/events/other/edit").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = field(&page, "event-edit", "csrf");
    let key = field(&page, "event-edit", "action_key");
    let tier = d.tier_of("other").await;
    let price = format!("tier_{tier}_price");
    let capacity = format!("tier_{tier}_capacity");
    let form = |cap: &'static str, reason: &'static str| -> Vec<(String, String)> {
        [
            ("csrf", csrf.as_str()),
            ("action_key", key.as_str()),
            ("title", "Renamed"),
            ("timezone", "Europe/Amsterdam"),
            ("meeting_provider", "google_meet"),
            ("meeting_url", ""),
            ("refundable_until_hours_before", "12"),
            (price.as_str(), "30.00"),
            (capacity.as_str(), cap),
            ("reason", reason),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let url = "/console/events/other/edit";
    let unchanged = "SELECT count(*) FROM events WHERE slug = 'other' AND title = 'Event other'";
    // 3 are sold: a capacity of 2 is refused on the form; so is a change without a reason.
    let r = d.submit(&olga, url, &form("2", "bigger room")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("below the 3 sold"));
    let r = d.submit(&olga, url, &form("10", "")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let no_csrf: Vec<_> = form("10", "x")
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .collect();
    assert_eq!(
        d.submit(&olga, url, &no_csrf).await.status(),
        StatusCode::FORBIDDEN
    );
    let hank = d.login("hank@floodgate.test").await;
    assert_eq!(
        d.page(&hank, "/console/events/other/edit").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        d.submit(&hank, url, &form("10", "x")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(d.count(unchanged).await, 1);
    assert_eq!(d.count("SELECT count(*) FROM operator_audit").await, 0);

    for _ in 0..2 {
        let r = d.submit(&olga, url, &form("10", "bigger room")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/console/events/other?done=saved");
    }
    assert_eq!(d.count("SELECT count(*) FROM events WHERE slug = 'other' AND title = 'Renamed' AND meeting->>'provider' = 'google_meet' AND (refund_policy->>'refundable_until_hours_before')::int = 12").await, 1);
    assert_eq!(d.count(&format!("SELECT count(*) FROM tiers WHERE id = '{tier}' AND capacity = 10 AND price_cents = 3000 AND sold = 3")).await, 1);
    assert_eq!(
        d.audited_by("event.edit", OLGA, Some("bigger room")).await,
        1
    );
}

#[tokio::test]
async fn a_refund_the_policy_refuses_is_shown_on_the_page_and_leaves_a_trace() {
    let d = spawn().await;
    let order = d.order_of("buyer5@example.org").await;
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, &format!("/console/orders/{order}")).await;
    assert!(
        page.contains("Outside the refund policy since") && page.contains("only an admin"),
        "the card says so before anyone tries: {page}"
    );
    let csrf = field(&page, "refund", "csrf");
    let key = field(&page, "refund", "action_key");
    let url = format!("/console/orders/{order}/refund");
    let refund = |amount| {
        [
            ("csrf", csrf.as_str()),
            ("action_key", key.as_str()),
            ("amount", amount),
            ("reason", "buyer is ill"),
        ]
    };
    // The event starts in 2 days, refunds end 72 h before: outside the policy.
    let (status, html) = d.refused(&olga, &url, &refund("20.00")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(alert(&html).contains("refund policy"), "{html}");
    assert!(
        html.contains("<form id=\"refund\" class=\"inline card refused\"")
            && html.contains("value=\"buyer is ill\""),
        "the refused form, as typed: {html}"
    );
    assert_eq!(d.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(
        d.count(&format!(
            "SELECT count(*) FROM operator_audit WHERE action = 'order.refund.refused' \
             AND subject = '{order}' AND actor = 'operator:Olga' AND reason = 'buyer is ill' \
             AND after->>'error' = 'outside_refund_policy' AND (after->>'amount_cents')::int = 2000"
        ))
        .await,
        1,
        "the refused attempt is audited"
    );
    // The order's timeline shows it, in words.
    let (_, page) = d.page(&olga, &format!("/console/orders/{order}")).await;
    assert!(
        page.contains(
            "Refund of EUR 20.00 refused: this is outside the event&#x27;s refund policy"
        ) && page.contains("— reason: buyer is ill"),
        "{page}"
    );
    // The same key again (nothing was claimed by the refused attempt) — and a typo is
    // not audited: an amount that is not an amount.
    let (status, html) = d.refused(&olga, &url, &refund("twenty")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("value=\"twenty\""), "{html}");
    assert_eq!(
        d.count("SELECT count(*) FROM operator_audit").await,
        1,
        "typos leave no audit row"
    );
    // Without the CSRF token: 403, a page saying the form has expired; nothing done.
    let (status, html) = d
        .refused(
            &olga,
            &url,
            &[("action_key", &key), ("reason", "buyer is ill")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(alert(&html).contains("expired"), "{html}");
    // The admin, with the override: done, and the refund reads as a sentence.
    let alice = d.login("alice@floodgate.test").await;
    let (_, page) = d.page(&alice, &format!("/console/orders/{order}")).await;
    let form = [
        ("csrf", field(&page, "refund", "csrf")),
        ("action_key", field(&page, "refund", "action_key")),
        ("amount", "12.50".to_owned()),
        ("reason", "the host agreed".to_owned()),
        ("override_policy", "true".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location) = d.post(&alice, &url, &form).await;
    assert_eq!(
        (status, location),
        (
            StatusCode::SEE_OTHER,
            format!("/console/orders/{order}?done=refund")
        )
    );
    let (_, page) = d
        .page(&alice, &format!("/console/orders/{order}?done=refund"))
        .await;
    assert!(
        page.contains("Refund of EUR 12.50, outside the refund policy; order now partially refunded — reason: the host agreed"),
        "{page}"
    );
}

#[tokio::test]
async fn the_timeline_reads_as_sentences_with_every_time_in_the_events_zone() {
    let d = spawn().await;
    let order = d.order_of("buyer7@example.org").await;
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, &format!("/console/orders/{order}")).await;
    let csrf = field(&page, "email", "csrf");
    // An invalid address: 422, the form as typed.
    let (status, html) = d
        .refused(
            &olga,
            &format!("/console/orders/{order}/email"),
            &[
                ("csrf", &csrf),
                ("action_key", "e1"),
                ("email", "not-an-address"),
                ("reason", "typo"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("value=\"not-an-address\""), "{html}");
    let (status, _) = d
        .post(
            &olga,
            &format!("/console/orders/{order}/email"),
            &[
                ("csrf", &csrf),
                ("action_key", "e2"),
                ("email", "b7@example.net"),
                ("reason", "typo"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A transfer with no reason given.
    let ticket = d.ticket_of(order).await;
    let (status, location) = d
        .post(
            &olga,
            &format!("/console/tickets/{ticket}/transfer"),
            &[
                ("csrf", &csrf),
                ("action_key", "t1"),
                ("email", "colleague@example.org"),
                ("name", "Cor"),
                ("reason", ""),
            ],
        )
        .await;
    assert_eq!(
        (status, location),
        (
            StatusCode::SEE_OTHER,
            format!("/console/orders/{order}?done=transfer")
        )
    );

    let (_, page) = d.page(&olga, &format!("/console/orders/{order}")).await;
    let timeline = &page[page.find("id=\"timeline\"").expect("a timeline")..];
    for sentence in [
        "Email changed buyer7@example.org → b7@example.net — reason: typo",
        "Ticket transferred b7@example.net → colleague@example.org",
        "Olga (operator)",
    ] {
        assert!(
            timeline.contains(&escape_html(sentence)),
            "{sentence}: {timeline}"
        );
    }
    for raw in ["null", "&quot;", "{"] {
        assert!(
            !timeline.contains(raw),
            "no raw JSON ({raw}) in the timeline: {timeline}"
        );
    }
    // Every time on the page: the event's zone with its abbreviation, UTC on hover.
    let times: Vec<&str> = page.split("<time ").skip(1).collect();
    assert!(times.len() >= 4, "{page}");
    for t in times {
        let shown = t.split('>').nth(1).unwrap().split('<').next().unwrap();
        assert!(
            t.contains(" UTC\"") && (shown.ends_with(" CET") || shown.ends_with(" CEST")),
            "one way for every time: {t}"
        );
    }
    // The JSON API carries the same sentences; absent fields are absent, not null.
    let detail = d
        .get_json(&format!("/console/api/orders/{order}"), &d.operator)
        .await;
    let transfer = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["action"] == "ticket.transfer")
        .expect("the transfer");
    assert_eq!(
        transfer["summary"],
        "Ticket transferred b7@example.net → colleague@example.org"
    );
    assert!(transfer.get("reason").is_none(), "{transfer}");
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn the_edit_page_sets_the_queue_live_and_refuses_a_bad_setting_with_the_form_as_typed() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (status, page) = d.page(&olga, "/console/events/other/edit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<form id=\"event-queue\""), "{page}");
    assert!(
        page.contains("<option selected>Europe/Amsterdam</option>"),
        "the timezone is a choice, not free text"
    );
    let csrf = field(&page, "event-queue", "csrf");
    let url = "/console/events/other/queue";
    let day = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let opens = format!("{day} 09:00");
    let form = |mode: &'static str, rate: &'static str, opens: &str, reason: &'static str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("mode".to_owned(), mode.to_owned()),
            ("rate_per_minute".to_owned(), rate.to_owned()),
            ("max_active".to_owned(), "50".to_owned()),
            ("admission_ttl_seconds".to_owned(), "600".to_owned()),
            ("opens_at".to_owned(), opens.to_owned()),
            ("reason".to_owned(), reason.to_owned()),
        ]
    };
    // A pre-queue needs its draw time; a rate must be a number; a change needs a reason.
    for (f, says) in [
        (form("prequeue", "120", "", "draw tomorrow"), "opens_at"),
        (form("on", "lots", "", "faster"), "whole number"),
        (form("on", "120", "", ""), "reason"),
    ] {
        let r = d.submit(&olga, url, &f).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{says}");
        let html = r.text().await.unwrap();
        assert!(alert(&html).contains(says), "{says}: {}", alert(&html));
        let rate = &f[2].1;
        assert!(html.contains(&format!("name=\"rate_per_minute\" type=\"number\" min=\"0\" max=\"1000000\" required value=\"{rate}\"")), "as typed: {html}");
    }
    let hank = d.login("hank@floodgate.test").await;
    assert_eq!(
        d.submit(&hank, url, &form("on", "120", "", "x"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(d.audited("admission.update").await, 0);
    // Works: stored, live in Redis (the API reads Redis), audited with the reason.
    let r = d
        .submit(
            &olga,
            url,
            &form("prequeue", "120", &opens, "draw tomorrow at nine"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let live = d
        .get_json("/console/api/events/other/admission", &d.operator)
        .await;
    assert_eq!(
        (
            live["mode"].as_str(),
            live["rate_per_minute"].as_u64(),
            live["max_active"].as_u64(),
            live["admission_ttl_seconds"].as_u64()
        ),
        (Some("prequeue"), Some(120), Some(50), Some(600)),
        "{live}"
    );
    let opens_at: chrono::DateTime<chrono::Utc> =
        live["opens_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        opens_at
            .with_timezone(&chrono_tz::Europe::Amsterdam)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        opens,
        "read in the event's zone"
    );
    assert_eq!(
        d.audited_by("admission.update", OLGA, Some("draw tomorrow at nine"))
            .await,
        1
    );
    let (_, page) = d.page(&olga, "/console/events/other/edit").await;
    assert!(
        page.contains(&format!("name=\"opens_at\" value=\"{opens}\""))
            && page.contains("Now: prequeue · 120/min"),
        "the form shows what is live: {page}"
    );
}

/// An event's title and a tier's name typed as markup show as text on every page that
/// shows them: the list, the event's page, its incident view, the edit form and the
/// control room.
#[tokio::test]
async fn an_event_title_typed_as_markup_is_shown_as_text_on_every_page() {
    let d = spawn().await;
    sqlx::query("UPDATE events SET title = '<script>alert(1)</script>' WHERE slug = 'big'")
        .execute(&d.db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE tiers SET name = '<img src=x onerror=alert(2)>' WHERE event_id = (SELECT id FROM events WHERE slug = 'big')",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    let olga = d.login("olga@floodgate.test").await;
    for path in [
        "/console/events",
        "/console/events/big",
        "/console/events/big/incidents",
        "/console/events/big/edit",
        "/console/events/big/live",
    ] {
        let (status, page) = d.page(&olga, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !page.contains("<script>alert") && !page.contains("<img src=x"),
            "{path}: {page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{path}: the title as text: {page}"
        );
        if path != "/console/events" && path != "/console/events/big/incidents" {
            assert!(
                page.contains("&lt;img src=x onerror=alert(2)&gt;"),
                "{path}: the tier's name as text: {page}"
            );
        }
    }
    let (_, room) = d.page(&olga, "/console/events/big/live").await;
    assert!(
        room.contains("data-can-steer=\"true\"")
            && room.contains("data-tz=\"Europe&#x2f;Amsterdam\""),
        "what the control room's script reads: {room}"
    );
    let (_, edit) = d.page(&olga, "/console/events/big/edit").await;
    assert!(
        edit.contains("name=\"title\" value=\"&lt;script&gt;alert(1)&lt;&#x2f;script&gt;\""),
        "the title field holds the title as typed: {edit}"
    );
}

/// Event set-up takes what buyers read and when they may buy (issue 19.12): a
/// description, the organiser, a sale window, the hold time, a per-order limit, any
/// number of tiers ("Add a tier row" draws one more without creating anything), with
/// refusals in sentences; the edit page changes the same and adds a tier.
#[tokio::test]
async fn set_up_takes_the_details_buyers_read_and_any_number_of_tiers() {
    let d = spawn().await;
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, "/console/events/new").await;
    let csrf = field(&page, "event-setup", "csrf");
    let day = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let (starts, ends) = (format!("{day} 20:00"), format!("{day} 22:00"));
    let opens = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d 09:00")
        .to_string();
    let mut form: Vec<(String, String)> = [
        ("csrf", csrf.as_str()),
        ("slug", "talks"),
        ("title", "Talks"),
        ("timezone", "Europe/Amsterdam"),
        ("starts_at", &starts),
        ("ends_at", &ends),
        ("meeting_provider", "jitsi"),
        ("refundable_until_hours_before", "48"),
        ("queue_mode", "paused"),
        ("description", "Three talks.\r\nThen drinks."),
        ("organiser", "Northwind Events"),
        ("organiser_email", "help@northwind.example"),
        ("sales_open_at", &opens),
        ("sales_close_at", &starts),
        ("hold_minutes", "15"),
        ("hosts_see_buyer_emails", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for i in 1..=4 {
        for (k, v) in [
            ("code", format!("t{i}")),
            ("name", format!("Tier {i}")),
            ("price", "10.00".into()),
            ("currency", "EUR".into()),
            ("capacity", "100".into()),
            ("max_per_order", i.to_string()),
        ] {
            form.push((format!("tier{i}_{k}"), v));
        }
    }
    let url = "/console/events/new";
    // "Add a tier row": the form again with a fifth row, nothing created.
    let mut more = form.clone();
    more.push(("add_tier".into(), "1".into()));
    let r = d.submit(&olga, url, &more).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"name="tier5_code""#), "{html}");
    assert!(!html.contains(r#"name="tier6_code""#));
    assert!(html.contains(r#"value="Northwind Events""#), "typed stays");
    // Rows added empty stay: one filled row and the button twice gives five rows.
    let mut one: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !k.starts_with("tier") || k.starts_with("tier1_"))
        .cloned()
        .collect();
    one.push(("add_tier".into(), "1".into()));
    let html = d.submit(&olga, url, &one).await.text().await.unwrap();
    assert!(html.contains(r#"name="tier4_code""#) && !html.contains(r#"name="tier5_code""#));
    one.push(("tier_rows".into(), "4".into()));
    let html = d.submit(&olga, url, &one).await.text().await.unwrap();
    assert!(html.contains(r#"name="tier5_code""#), "{html}");
    let events = "SELECT count(*) FROM events WHERE slug = 'talks'";
    assert_eq!(d.count(events).await, 0);

    // Refusals are sentences, and write nothing.
    for (key, bad, says) in [
        (
            "sales_close_at",
            opens.as_str(),
            "Sales must close after they open.",
        ),
        (
            "organiser_email",
            "not an address",
            "address must look like name@example.org.",
        ),
        ("hold_minutes", "90", "Seats are held for 1 to 60 minutes."),
        (
            "tier2_max_per_order",
            "0",
            "Tier t2: a buyer may take 1 to 100 tickets per order.",
        ),
    ] {
        let bad_form: Vec<_> = form
            .iter()
            .map(|(k, v)| {
                if k == key {
                    (k.clone(), bad.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let r = d.submit(&olga, url, &bad_form).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        let said = alert(&r.text().await.unwrap());
        assert!(said.contains(says), "{key}: {said}");
    }
    assert_eq!(d.count(events).await, 0);

    let r = d.submit(&olga, url, &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        d.count(
            "SELECT count(*) FROM events WHERE slug = 'talks' AND description = E'Three talks.\\nThen drinks.'
               AND organiser = 'Northwind Events' AND organiser_email = 'help@northwind.example'
               AND sales_open_at < sales_close_at AND sales_close_at = starts_at
               AND hold_ttl_seconds = 900 AND hosts_see_buyer_emails"
        )
        .await,
        1
    );
    assert_eq!(
        d.count("SELECT count(*) FROM tiers t JOIN events e ON e.id = t.event_id WHERE e.slug = 'talks' AND t.max_per_order = substr(t.code, 2)::int")
            .await,
        4
    );

    // A pre-queue without a draw time draws when the sale opens.
    let draw: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| match k.as_str() {
            "slug" => (k.clone(), "draw".to_owned()),
            "queue_mode" => (k.clone(), "prequeue".to_owned()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let r = d.submit(&olga, url, &draw).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(
        d.count("SELECT count(*) FROM events WHERE slug = 'draw' AND queue_mode = 'prequeue' AND queue_opens_at = sales_open_at")
            .await,
        1
    );

    // The edit page shows them and changes them; an unticked box is saved as unticked;
    // a filled last row adds a tier.
    let (_, page) = d.page(&olga, "/console/events/talks/edit").await;
    assert!(
        page.contains("Three talks.\nThen drinks.</textarea>"),
        "{page}"
    );
    assert!(page.contains(r#"name="hold_minutes" type="number" min="1" max="60" value="15""#));
    let mut edit: Vec<(String, String)> = [
        ("csrf", field(&page, "event-edit", "csrf")),
        ("action_key", field(&page, "event-edit", "action_key")),
        ("details_shown", "1".into()),
        ("organiser", "Northwind".into()),
        ("hold_minutes", "5".into()),
        ("new_code", "vip".into()),
        ("new_name", "VIP".into()),
        ("new_price", "50.00".into()),
        ("new_currency", "EUR".into()),
        ("new_capacity", "10".into()),
        ("new_max_per_order", "2".into()),
        ("reason", "more room at the front".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let r = d.submit(&olga, "/console/events/talks/edit", &edit).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(
        d.count(
            "SELECT count(*) FROM events WHERE slug = 'talks' AND organiser = 'Northwind'
               AND description = E'Three talks.\\nThen drinks.' AND hold_ttl_seconds = 300
               AND NOT hosts_see_buyer_emails"
        )
        .await,
        1
    );
    assert_eq!(
        d.count("SELECT count(*) FROM tiers t JOIN events e ON e.id = t.event_id WHERE e.slug = 'talks' AND t.code = 'vip' AND t.max_per_order = 2 AND t.position = 4")
            .await,
        1
    );
    // The same tier code again is refused in a sentence.
    edit.retain(|(k, _)| k != "action_key");
    edit.push(("action_key".into(), uuid::Uuid::new_v4().to_string()));
    let r = d.submit(&olga, "/console/events/talks/edit", &edit).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        alert(&r.text().await.unwrap()).contains("The event already has a tier with the code vip."),
    );
}
