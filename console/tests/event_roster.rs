//! An event's page as the people who run it read it — its public link, the money
//! taken, its orders and attendees a page at a time, both as CSV — the events list's
//! search and filters, and buyers' addresses masked for hosts: driven as a browser and
//! an API caller would, against the real Postgres and Redis.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};

use support::desk::Desk;

/// Every order's time in minutes before now by its buyer's number: buyer1 ordered
/// last, so it leads a list that is most recent first.
async fn stagger(d: &Desk) {
    sqlx::query(
        r#"UPDATE orders SET created_at = now() - make_interval(
               mins => substring(buyer_email from 'buyer(\d+)@')::int)"#,
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
}

/// How many times `needle` is in `page`.
fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

/// The text of the element with this id, up to the end of its tag `end`.
fn part<'a>(page: &'a str, id: &str, end: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}: {page}"));
    let rest = &page[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_event_page_shows_its_public_link_the_money_and_its_orders_and_attendees_by_page() {
    let d = Desk::spawn(60).await;
    stagger(&d).await;
    // One order refunded in part (an admin, outside the policy), one never paid.
    let refunded = d.order_of("buyer3@example.org").await;
    let r = d
        .post_json(
            &format!("/console/api/orders/{refunded}/refund"),
            &d.admin,
            &json!({"amount_cents": 500, "reason": "a seat was broken", "override_policy": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    sqlx::query(
        "UPDATE orders SET status = 'pending_payment', paid_at = NULL
         WHERE buyer_email = 'buyer2@example.org'",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();

    let olga = d.login("olga@floodgate.test").await;
    let (status, page) = d.page(&olga, "/console/events/big").await;
    assert_eq!(status, StatusCode::OK);
    // (The console's templates write `/` in printed values as `&#x2f;`.)
    let link = part(&page, "public-link", "</dd>").replace("&#x2f;", "/");
    assert!(
        link.contains("href=\"https://tickets.example.org/e/big\"")
            && link.contains("<code>https://tickets.example.org/e/big</code>"),
        "{link}"
    );
    // 59 paid orders of EUR 20.00, EUR 5.00 of one refunded.
    let revenue = part(&page, "revenue", "</dd>");
    assert!(
        revenue.contains("EUR 1175.00</strong> net: EUR 1180.00 taken, EUR 5.00 refunded"),
        "{revenue}"
    );

    // Orders: most recent first, 50 to a page, states in words, each to its page.
    let orders = part(&page, "event-orders", "</table>");
    assert_eq!(count(orders, "class=\"order\""), 50, "{orders}");
    let first = orders.find("buyer1@example.org").unwrap();
    assert!(first < orders.find("buyer2@example.org").unwrap());
    assert!(!orders.contains("buyer51@example.org"), "page 1 is 1-50");
    assert!(orders.contains("Waiting for payment") && orders.contains("Partly refunded"));
    assert!(orders.contains(&format!("href=\"/console/orders/{refunded}\"")));
    assert!(orders.contains("EUR 5.00 refunded"), "{orders}");
    assert!(page.contains(
        "rel=\"next\" href=\"/console/events/big?page=2&amp;attendees_page=1#event-orders\""
    ));
    let (_, second) = d
        .page(&olga, "/console/events/big?page=2&attendees_page=1")
        .await;
    let orders = part(&second, "event-orders", "</table>");
    assert_eq!(count(orders, "class=\"order\""), 10, "{orders}");
    assert!(orders.contains("buyer60@example.org") && !orders.contains("buyer1@example.org"));
    assert!(second.contains("51–60 of 60"), "{second}");
    // A page that is not a number, or past the end, is the first or the last.
    let (status, odd) = d.page(&olga, "/console/events/big?page=x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(part(&odd, "event-orders", "</table>").contains("buyer1@example.org"));

    // Attendees: one row per ticket by holder name, with tier, code and state in words.
    let attendees = part(&page, "attendees", "</table>");
    assert_eq!(count(attendees, "<code>FG-"), 50, "{attendees}");
    assert!(attendees.contains("<td>Buyer 1</td><td><a href=\"/console/orders/"));
    assert!(attendees.contains("<td>General</td>") && attendees.contains("<td>Valid</td>"));
    let (_, second) = d.page(&olga, "/console/events/big?attendees_page=2").await;
    assert_eq!(
        count(part(&second, "attendees", "</table>"), "<code>FG-"),
        10
    );
    // Both exports are linked.
    assert!(page.contains("href=\"/console/events/big/orders.csv\" id=\"export-orders\""));
    assert!(page.contains("href=\"/console/events/big/attendees.csv\" id=\"export-attendees\""));

    // An event with nothing paid says so.
    support::seed_event(&d.db, "empty", 0, 9000).await;
    let (_, empty) = d.page(&olga, "/console/events/empty").await;
    assert!(part(&empty, "revenue", "</dd>").contains("Nothing paid yet."));
    assert!(empty.contains("No tickets yet."));
}

/// `GET path` from the browser with this session: status, headers and body.
async fn download(
    d: &Desk,
    session: &str,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = d
        .http
        .get(d.url(path))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    (r.status(), r.headers().clone(), r.text().await.unwrap())
}

#[tokio::test]
async fn exports_are_rfc_4180_csv_without_formulas_audited_and_only_of_visible_events() {
    let d = Desk::spawn(3).await;
    // Names a buyer typed: a formula, a comma and quotes, a line break.
    sqlx::query(
        r#"UPDATE orders SET buyer_name = CASE buyer_email
               WHEN 'buyer1@example.org' THEN '=HYPERLINK("http://evil.example","click")'
               WHEN 'buyer2@example.org' THEN 'Smith, "Jo"'
               ELSE E'two\nlines' END
           WHERE event_id = (SELECT id FROM events WHERE slug = 'big')"#,
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE tickets SET holder_name = '@SUM(A1)' WHERE holder_email = 'buyer3@example.org'",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    let olga = d.login("olga@floodgate.test").await;

    let (status, headers, csv) = download(&d, &olga, "/console/events/big/orders.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"big-orders.csv\""
    );
    assert!(
        csv.starts_with(
            "order_id,ordered_at_utc,status,buyer_name,buyer_email,tickets,tier,amount,refunded,currency\r\n"
        ),
        "{csv}"
    );
    assert!(
        csv.contains(",Paid,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",buyer1@example.org,1,General,20.00,0.00,EUR\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains(",\"Smith, \"\"Jo\"\"\",buyer2@example.org,"),
        "{csv}"
    );
    assert!(csv.contains(",\"two\nlines\",buyer3@example.org,"), "{csv}");
    assert_eq!(
        csv.matches("\r\n").count(),
        4,
        "a header and 3 orders: {csv}"
    );

    let (status, headers, csv) = download(&d, &olga, "/console/events/big/attendees.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"big-attendees.csv\""
    );
    assert!(
        csv.starts_with("ticket_code,holder_name,holder_email,tier,status,order_id\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains(",\"'@SUM(A1)\",buyer3@example.org,General,Valid,"),
        "{csv}"
    );
    assert_eq!(csv.matches("\r\n").count(), 4, "{csv}");

    // Each export is in the audit trail with who took it.
    assert_eq!(
        d.audited_by("export.orders", "operator:Olga", None).await,
        1
    );
    assert_eq!(
        d.audited_by("export.attendees", "operator:Olga", None)
            .await,
        1
    );

    // A host of another event: the console's not-found page, nothing exported or audited.
    let hank = d.login("hank@floodgate.test").await;
    for path in [
        "/console/events/big/orders.csv",
        "/console/events/big/attendees.csv",
    ] {
        let (status, headers, page) = download(&d, &hank, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            page.contains("<header>") && !page.contains("buyer1@"),
            "{page}"
        );
    }
    assert_eq!(
        d.count("SELECT count(*) FROM operator_audit WHERE action LIKE 'export.%' AND actor LIKE 'host:%'")
            .await,
        0
    );
    // Signed out: to the sign-in page.
    let anon = d.get("/console/events/big/orders.csv", "").await;
    assert_eq!(anon.headers()["location"], "/console/login");

    // Their own event: addresses masked, as on the page.
    let (status, _, csv) = download(&d, &hank, "/console/events/other/orders.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        csv.contains(",b•••@example.org,") && !csv.contains("buyer1001@"),
        "{csv}"
    );
    let (_, _, csv) = download(&d, &hank, "/console/events/other/attendees.csv").await;
    assert!(
        csv.contains(",b•••@example.org,") && !csv.contains("buyer1001@"),
        "{csv}"
    );
    assert_eq!(d.audited_by("export.orders", "host:Hank", None).await, 1);

    // Many rows come whole, in several chunks, each once.
    support::seed_event(&d.db, "many", 1234, 20000).await;
    let (_, _, csv) = download(&d, &olga, "/console/events/many/attendees.csv").await;
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1235);
    let mut codes: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 1234);
}

#[tokio::test]
async fn the_events_list_is_searched_and_filtered_by_status_and_date_in_the_query_string() {
    let d = Desk::spawn(1).await;
    support::seed_event(&d.db, "rust-night", 0, 100).await;
    support::seed_event(&d.db, "jazz-past", 0, 200).await;
    support::seed_event(&d.db, "gone", 0, 300).await;
    sqlx::query(
        "UPDATE events SET title = CASE slug WHEN 'rust-night' THEN 'Night of Rust'
                                            WHEN 'jazz-past' THEN 'Jazz Evening' ELSE 'Gone Fishing' END,
                starts_at = CASE slug WHEN 'jazz-past' THEN timestamptz '2025-03-01 19:00+01'
                                      ELSE timestamptz '2030-05-01 23:30+00' END,
                ends_at = CASE slug WHEN 'jazz-past' THEN timestamptz '2025-03-01 21:00+01'
                                    ELSE timestamptz '2030-05-02 01:00+00' END,
                status = CASE slug WHEN 'gone' THEN 'cancelled' ELSE status END
         WHERE slug IN ('rust-night', 'jazz-past', 'gone')",
    )
    .execute(&d.db.pool)
    .await
    .unwrap();
    let olga = d.login("olga@floodgate.test").await;
    let listed = |page: &str| -> Vec<String> {
        page.split("<a class=\"event\" href=\"/console/events/")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_owned())
            .collect()
    };

    let (_, all) = d.page(&olga, "/console/events").await;
    assert!(all.contains("<form id=\"event-filter\""), "{all}");
    assert_eq!(listed(&all).len(), 5, "{all}");
    assert!(!all.contains("id=\"clear-filters\""));

    // Title or slug, any case, any part.
    let (status, rust) = d.page(&olga, "/console/events?q=RUST").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&rust), ["rust-night"]);
    assert!(
        rust.contains("name=\"q\" value=\"RUST\""),
        "the form keeps what was typed"
    );
    assert!(rust.contains("href=\"/console/events\" id=\"clear-filters\""));
    let (_, by_slug) = d.page(&olga, "/console/events?q=jazz-p").await;
    assert_eq!(listed(&by_slug), ["jazz-past"]);

    // By status.
    let (_, past) = d.page(&olga, "/console/events?status=past").await;
    assert_eq!(listed(&past), ["jazz-past"]);
    assert!(past.contains("<option value=\"past\" selected>"), "{past}");
    let (_, cancelled) = d.page(&olga, "/console/events?status=cancelled").await;
    assert_eq!(listed(&cancelled), ["gone"]);
    let (_, upcoming) = d.page(&olga, "/console/events?status=upcoming").await;
    let upcoming = listed(&upcoming);
    assert!(upcoming.contains(&"rust-night".to_owned()) && upcoming.contains(&"big".to_owned()));
    assert!(!upcoming.contains(&"jazz-past".to_owned()) && !upcoming.contains(&"gone".to_owned()));

    // By the day it starts where it happens: 23:30 UTC on 1 May is 2 May in Amsterdam.
    let (_, day) = d
        .page(
            &olga,
            "/console/events?from=2030-05-02&to=2030-05-02&status=all",
        )
        .await;
    let mut day = listed(&day);
    day.sort();
    assert_eq!(day, ["gone", "rust-night"]);
    let (_, both) = d
        .page(
            &olga,
            "/console/events?q=night&status=upcoming&from=2030-05-01",
        )
        .await;
    assert_eq!(listed(&both), ["rust-night"]);
    assert!(both.contains("name=\"from\" value=\"2030-05-01\""));

    // Nothing matching: said in words, with the way back.
    let (status, none) = d.page(&olga, "/console/events?q=opera&status=past").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        none.contains("<p id=\"no-match\">No events match “opera”, past.")
            && none.contains("<a href=\"/console/events\" id=\"clear-filters-empty\">"),
        "{none}"
    );

    // Input that is not a date: a sentence, the rest of the filters still applied.
    let (status, bad) = d
        .page(&olga, "/console/events?from=2026-13-45&q=jazz&status=soon")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        bad.contains("role=\"alert\">The from date “2026-13-45” is not a date like 2026-12-31"),
        "{bad}"
    );
    assert!(bad.contains("“soon” is not a status"), "{bad}");
    assert!(bad.contains("name=\"from\" value=\"2026-13-45\""));
    assert_eq!(listed(&bad), ["jazz-past"]);
    let (status, _) = d.page(&olga, "/console/events?from=%ZZ").await;
    assert_eq!(status, StatusCode::OK);

    // A host filters only their own events.
    let hank = d.login("hank@floodgate.test").await;
    let (_, theirs) = d.page(&hank, "/console/events?q=rust").await;
    assert!(theirs.contains("id=\"no-match\""), "{theirs}");
    let (_, theirs) = d.page(&hank, "/console/events?q=other").await;
    assert_eq!(listed(&theirs), ["other"]);
}

/// The order of this buyer's address as JSON, as the bearer of `token` reads it.
async fn order_json(d: &Desk, token: &str, email: &str) -> Value {
    let order = d.order_of(email).await;
    d.get_json(&format!("/console/api/orders/{order}"), token)
        .await
}

#[tokio::test]
async fn hosts_see_buyers_addresses_masked_unless_the_event_lets_them_and_staff_always_in_full() {
    let d = Desk::spawn(2).await;
    // An address corrected and a ticket given away: the timeline names three addresses.
    let corrected = d.order_of("buyer1002@example.org").await;
    let r = d
        .post_json(
            &format!("/console/api/orders/{corrected}/email"),
            &d.operator,
            &json!({"email": "nora.new@example.net", "reason": "typo in buyer1002@example.org"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let ticket = d.ticket_of(d.order_of("buyer1003@example.org").await).await;
    let r = d
        .post_json(
            &format!("/console/api/tickets/{ticket}/transfer"),
            &d.operator,
            &json!({"email": "maja@example.net", "name": "Maja Berglund"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let full = [
        "buyer1001@example.org",
        "buyer1002@example.org",
        "nora.new@example.net",
        "maja@example.net",
    ];
    let none_in = |what: &str, text: &str| {
        for address in full {
            assert!(!text.contains(address), "{what} shows {address}: {text}");
        }
    };

    // The order API: the buyer, the holders, the timeline — all masked.
    let o = order_json(&d, &d.host, "buyer1001@example.org").await;
    assert_eq!(o["order"]["buyer_email"], "b•••@example.org", "{o}");
    assert_eq!(o["tickets"][0]["holder_email"], "b•••@example.org");
    none_in("order API", &o.to_string());
    let o = order_json(&d, &d.host, "nora.new@example.net").await;
    assert_eq!(o["order"]["buyer_email"], "n•••@example.net");
    none_in("a corrected order's API", &o.to_string());
    assert!(
        o.to_string().contains("b•••@example.org"),
        "the old one, masked: {o}"
    );
    let o = order_json(&d, &d.host, "buyer1003@example.org").await;
    let holders: Vec<&Value> = o["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["holder_email"])
        .collect();
    assert!(holders.contains(&&json!("m•••@example.net")), "{o}");
    none_in("a given ticket's order API", &o.to_string());

    // Search, as JSON and on the page: the whole address finds the order, masked.
    let hits = d
        .get_json("/console/api/search?q=nora.new@example.net", &d.host)
        .await;
    assert_eq!(hits[0]["buyer_email"], "n•••@example.net", "{hits}");
    let hits = d
        .get_json("/console/api/search?q=maja@example.net", &d.host)
        .await;
    assert_eq!(hits[0]["matched"], json!(["ticket_holder"]), "{hits}");
    let part = d.get_json("/console/api/search?q=nora.n", &d.host).await;
    assert_eq!(
        part,
        json!([]),
        "a part of an address finds nothing: {part}"
    );

    let hank = d.login("hank@floodgate.test").await;
    let (_, page) = d.page(&hank, "/console/?q=nora.new@example.net").await;
    // The search box keeps what the host typed; the results show it masked.
    let results = &page[page.find("<table").expect("results")..];
    assert!(results.contains(">n•••@example.net</a>"), "{page}");
    none_in("the search results", results);
    // A part of an address finds nothing on the page either, which says what does.
    let (_, page) = d.page(&hank, "/console/?q=nora.n").await;
    assert!(
        page.contains("Nothing found for “nora.n”") && page.contains("id=\"whole-addresses\""),
        "{page}"
    );
    let (_, page) = d.page(&hank, &format!("/console/orders/{corrected}")).await;
    assert!(page.contains("n•••@example.net"), "{page}");
    none_in("the order page", &page);
    let (_, page) = d.page(&hank, "/console/events/other").await;
    assert!(page.contains("b•••@example.org") && page.contains("m•••@example.net"));
    none_in("the event page", &page);
    let (_, page) = d.page(&hank, "/console/events/other/incidents").await;
    none_in("the incident view", &page);
    let audit = d
        .get("/console/api/events/other/audit", &d.host)
        .await
        .text()
        .await
        .unwrap();
    none_in("the audit log", &audit);

    // Staff see every address in full.
    let o = order_json(&d, &d.operator, "nora.new@example.net").await;
    assert_eq!(o["order"]["buyer_email"], "nora.new@example.net");
    assert!(o.to_string().contains("buyer1002@example.org"));
    let hits = d
        .get_json("/console/api/search?q=nora.n", &d.operator)
        .await;
    assert_eq!(hits[0]["buyer_email"], "nora.new@example.net");
    let olga = d.login("olga@floodgate.test").await;
    let (_, page) = d.page(&olga, "/console/events/other").await;
    assert!(page.contains("buyer1001@example.org") && page.contains("maja@example.net"));

    // The event's owner lets its hosts see addresses: in full, and found by a part.
    sqlx::query("UPDATE events SET hosts_see_buyer_emails = true WHERE slug = 'other'")
        .execute(&d.db.pool)
        .await
        .unwrap();
    let o = order_json(&d, &d.host, "nora.new@example.net").await;
    assert_eq!(o["order"]["buyer_email"], "nora.new@example.net");
    let hits = d.get_json("/console/api/search?q=nora.n", &d.host).await;
    assert_eq!(hits[0]["buyer_email"], "nora.new@example.net", "{hits}");
    let (_, page) = d.page(&hank, "/console/events/other").await;
    assert!(page.contains("buyer1001@example.org"), "{page}");
}
