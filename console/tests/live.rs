//! The live control room against the real Redis and Postgres: a fresh database and key
//! prefix per test. The load test counts what the stores actually served — Redis
//! commands touching this test's keys (seen through `MONITOR`) and transactions in this
//! test's database (`pg_stat_database`) — with one viewer and with fifty.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use waitroom::EventSlug;
use waitroom::admission::Admitter;

use support::TestConsole;

const REDIS: &str = "127.0.0.1:6379";

/// A console whose live feeds stop as soon as their last viewer leaves, with "Night
/// of Rust" as `slug`, its queue on at `rate` a minute and `max_active` in checkout.
async fn spawn_with_queue(slug: &str, rate: u32, max_active: u32) -> TestConsole {
    let app = support::spawn_with(|c| c.feed_linger = Duration::ZERO).await;
    let mut body = support::event_body(slug);
    body["queue"] = json!({"mode": "on", "rate_per_minute": rate, "max_active": max_active});
    let r = app.create_event(&app.admin, &body).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    app
}

/// Lets the host token see `slug`.
async fn grant_host(app: &TestConsole, slug: &str) {
    sqlx::query(
        "UPDATE operator_tokens SET event_ids = array_append(event_ids, \
         (SELECT id FROM events WHERE slug = $1)) WHERE id = $2",
    )
    .bind(slug)
    .bind(app.host_id)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

/// Opens the live feed of `slug` as the bearer of `token`.
async fn open(app: &TestConsole, slug: &str, token: &str) -> reqwest::Response {
    app.get(&format!("/console/api/events/{slug}/live"), token)
        .await
}

/// Opens the live feed and checks it is one.
async fn watch(app: &TestConsole, slug: &str, token: &str) -> Watcher {
    let r = open(app, slug, token).await;
    if r.status() != StatusCode::OK {
        panic!("watch {slug}: {} {}", r.status(), r.text().await.unwrap());
    }
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    Watcher {
        resp: r,
        buf: String::new(),
    }
}

/// A Server-Sent Events reader.
struct Watcher {
    resp: reqwest::Response,
    buf: String,
}

impl Watcher {
    /// The next message: (event name, JSON data). Keep-alive comments are skipped.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut kind = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (kind, serde_json::from_str(&data).expect("json data"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("a message within 10 s")
                .expect("stream readable")
                .expect("stream still open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Waits for a snapshot satisfying `pred`, at most `within`.
    async fn until(&mut self, within: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (kind, data) = tokio::time::timeout(left, self.next())
                .await
                .expect("the feed showed it in time");
            let snap = if kind == "history" {
                data["latest"].clone()
            } else {
                data
            };
            if kind != "problem" && pred(&snap) {
                return snap;
            }
        }
    }
}

/// Counts Redis commands that touch keys under `prefix`, as `MONITOR` reports them
/// (top-level commands and the calls made inside scripts alike).
async fn monitor(prefix: String) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let mut conn = tokio::net::TcpStream::connect(REDIS).await.unwrap();
    conn.write_all(b"MONITOR\r\n").await.unwrap();
    let mut lines = BufReader::new(conn).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&prefix) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    count
}

/// Transactions committed or rolled back in the test database so far.
async fn transactions(admin: &sqlx::PgPool, db: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Spawns a viewer that counts the snapshots it receives; `ready` gets a message once
/// the history has arrived.
fn viewer(mut w: Watcher, ready: mpsc::Sender<()>) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let (kind, _) = w.next().await;
            match kind.as_str() {
                "history" => ready.send(()).await.unwrap(),
                "snapshot" => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    seen
}

/// How many reads of `store` the live feeds made, from the console's own metrics.
fn feed_reads(app: &TestConsole, store: &str) -> u64 {
    app.state
        .metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "floodgate_console_live_reads_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "store" && l.value() == store)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_watchers_cost_the_stores_what_one_does() {
    let app = spawn_with_queue("crowd", 0, 50).await;
    let server = app.db.url.rsplit_once('/').unwrap().0.to_owned();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    // Autovacuum visiting this fresh database (its tables were just filled) would count
    // as transactions of its own; do its work now so it has none to do while we count.
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let redis = monitor(app.room.prefix().to_owned()).await;
    let window = Duration::from_secs(8);
    let measure = || async {
        let (r0, p0) = (
            redis.load(Ordering::Relaxed),
            transactions(&admin, &app.db.name).await,
        );
        tokio::time::sleep(window).await;
        (
            redis.load(Ordering::Relaxed) - r0,
            transactions(&admin, &app.db.name).await - p0,
        )
    };

    // Postgres publishes a backend's statistics when it goes idle, but an idle backend
    // that flushed less than a second ago waits up to 10 s (PGSTAT_IDLE_INTERVAL): the
    // connections opened to authenticate viewers report late. Let that pass before each
    // measurement, so only the feed's steady reads are counted.
    let settle = Duration::from_secs(11);
    let (ready_tx, mut ready) = mpsc::channel(64);
    let mut viewers = vec![viewer(
        watch(&app, "crowd", &app.admin).await,
        ready_tx.clone(),
    )];
    ready.recv().await.unwrap();
    tokio::time::sleep(settle).await;
    let (redis_one, pg_one) = measure().await;

    // Forty-nine more arrive, ten at a time (the test database is shared with other
    // tests on this machine; a burst of 49 would take 20 of its connections at once).
    let watchers: Vec<Watcher> =
        futures::stream::iter((0..49).map(|_| watch(&app, "crowd", &app.admin)))
            .buffer_unordered(10)
            .collect()
            .await;
    for w in watchers {
        viewers.push(viewer(w, ready_tx.clone()));
    }
    for _ in 0..49 {
        tokio::time::timeout(Duration::from_secs(10), ready.recv())
            .await
            .unwrap()
            .unwrap();
    }
    // Every connection's own authentication is behind us; from here only the feed reads.
    tokio::time::sleep(settle).await;
    let before: Vec<usize> = viewers.iter().map(|v| v.load(Ordering::Relaxed)).collect();
    let feed_reads_before = feed_reads(&app, "postgres");
    let (redis_fifty, pg_fifty) = measure().await;
    let feed_reads_fifty = feed_reads(&app, "postgres") - feed_reads_before;

    eprintln!(
        "8 s with 1 viewer: {redis_one} redis commands, {pg_one} pg transactions; \
         with 50: {redis_fifty} redis commands, {pg_fifty} pg transactions"
    );
    assert_eq!(app.state.live.running(), 1, "one feed for the event");
    assert!(redis_one > 0 && pg_one > 0, "the feed reads both stores");
    assert!(
        redis_fifty < 2 * redis_one,
        "redis: {redis_fifty} with 50 viewers vs {redis_one} with one"
    );
    assert!(
        pg_fifty < 2 * pg_one,
        "postgres: {pg_fifty} with 50 viewers vs {pg_one} with one"
    );
    // About one read of each store per second, not one per viewer.
    // The database's own count lags by whole flush intervals on a busy machine (it read
    // 36 for one viewer beside a CI run); the feed's count of its reads does not.
    assert!(
        feed_reads_fifty <= 8 + 4,
        "{feed_reads_fifty} Postgres reads by the feed in 8 s"
    );
    for (i, (v, b)) in viewers.iter().zip(before).enumerate() {
        let got = v.load(Ordering::Relaxed) - b;
        assert!(
            (5..=10).contains(&got),
            "viewer {i} got {got} snapshots in 8 s"
        );
    }
    app.purge(&["crowd"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_shows_joins_and_changes_within_two_seconds() {
    let app = spawn_with_queue("steer", 0, 50).await;
    let slug = EventSlug::parse("steer").unwrap();
    let admitter = Arc::new(Admitter::new(app.room.clone(), Duration::from_millis(1500)));
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let running = admitter.clone();
    tokio::spawn(async move {
        running
            .run(Duration::from_millis(100), async {
                let _ = stop.await;
            })
            .await
    });

    let mut w = watch(&app, "steer", &app.operator).await;
    let (kind, history) = w.next().await;
    assert_eq!(kind, "history");
    assert_eq!(history["latest"]["waiting"], 0);
    assert_eq!(history["tiers"][1]["code"], "ga");
    let first = &history["latest"];
    for field in [
        "waiting",
        "arrivals_per_min",
        "admitted_per_min",
        "active",
        "no_shows",
        "tiers",
        "payments_failed",
        "deliveries_pending",
        "deliveries_failed",
        "settings",
        "observed_admissions_per_minute",
        "holds_converted_per_min",
        "funnel",
        "at",
    ] {
        assert!(!first[field].is_null(), "snapshot has {field}: {first}");
    }
    assert_eq!(first["tiers"][0]["capacity"], 100);

    // Five people join: the queue shows them within two seconds.
    let joined = Instant::now();
    for i in 0..5 {
        app.room.join(&slug, &format!("visitor-{i}")).await.unwrap();
    }
    let snap = w
        .until(Duration::from_millis(2_500), |s| s["waiting"] == 5)
        .await;
    eprintln!("join visible after {:?}", joined.elapsed());
    // Nobody is let in at a rate of 0: the control room says why.
    assert_eq!(
        snap["blocked"], "0 admitted/min — the admission rate is 0.",
        "{snap}"
    );
    assert!(snap["arrivals_per_min"].as_f64().unwrap() > 0.0, "{snap}");
    assert_eq!(snap["funnel"]["arrived"], 5);

    // The operator opens the gate: the settings, then the admissions, follow.
    let changed = Instant::now();
    let faster = json!({"rate_per_minute": 600, "reason": "checkout is keeping up"});
    let r = app.set_queue("steer", &app.operator, &faster).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The new rate (from Redis) and its marker (the audit row, committed just after)
    // may arrive in the same snapshot or one apart.
    let mut marker = None;
    w.until(Duration::from_millis(2_500), |s| {
        if let Some(c) = s["changes"].as_array().and_then(|c| c.first()) {
            marker = Some(c.clone());
        }
        s["settings"]["rate_per_minute"] == 600 && marker.is_some()
    })
    .await;
    eprintln!(
        "change and its marker visible after {:?}",
        changed.elapsed()
    );
    let change = marker.unwrap();
    assert_eq!(change["summary"], "rate 0 → 600/min", "{change}");
    assert_eq!(change["reason"], "checkout is keeping up");
    assert_eq!(change["actor"], "operator:olga");
    let admitted = w
        .until(Duration::from_secs(3), |s| {
            s["waiting"] == 0 && s["admitted_total"] == 5
        })
        .await;
    assert_eq!(admitted["active"], 5);
    assert!(admitted["admitted_per_min"].as_f64().unwrap() > 0.0);
    assert_eq!(admitted["no_shows"], 0, "slots still wait to be claimed");
    assert!(admitted["blocked"].is_null(), "nobody waits: {admitted}");

    // Visitor 1 came for the admission but left without holding; visitor 2 never came
    // and the slot was given up: both are no-shows (admitted, never held), though only
    // one slot lapsed unclaimed.
    app.room.claim(&slug, 1, 60).await.unwrap();
    app.room.finish(&slug, 1).await.unwrap();
    app.room.finish(&slug, 2).await.unwrap();
    w.until(Duration::from_millis(2_500), |s| {
        s["no_shows"] == 2 && s["active"] == 3
    })
    .await;

    // All the slots in use while people wait: that is why admission stalls.
    let full = json!({"max_active": 3, "reason": "checkout is slow"});
    app.set_queue("steer", &app.operator, &full).await;
    for i in 5..8 {
        app.room.join(&slug, &format!("visitor-{i}")).await.unwrap();
    }
    let stalled = w
        .until(Duration::from_millis(2_500), |s| {
            s["waiting"] == 3 && !s["blocked"].is_null()
        })
        .await;
    let why = stalled["blocked"].as_str().unwrap();
    assert!(
        why.ends_with("all 3 checkout slots in use: people get in only as checkouts finish."),
        "{why}"
    );

    // Pausing shows at once, and the audit list has both changes.
    let pause = json!({"mode": "paused", "reason": "payments failing"});
    app.set_queue("steer", &app.operator, &pause).await;
    let paused = w
        .until(Duration::from_millis(2_500), |s| {
            s["settings"]["mode"] == "paused"
        })
        .await;
    assert!(
        paused["blocked"].as_str().unwrap().starts_with("Paused"),
        "{paused}"
    );
    let audit = app
        .get_json("/console/api/events/steer/audit", &app.operator)
        .await;
    assert_eq!(audit[0]["summary"], "mode on → paused");
    assert_eq!(audit[0]["reason"], "payments failing");
    assert_eq!(audit[2]["summary"], "rate 0 → 600/min");

    let _ = stop_tx.send(());
    app.purge(&["steer"]).await;
}

#[tokio::test]
async fn a_feed_runs_only_while_someone_watches() {
    let app = spawn_with_queue("quiet", 60, 5).await;
    assert_eq!(app.state.live.running(), 0);
    let mut w = watch(&app, "quiet", &app.admin).await;
    assert_eq!(w.next().await.0, "history");
    assert_eq!(app.state.live.running(), 1);
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(4);
    while app.state.live.running() > 0 {
        assert!(
            Instant::now() < deadline,
            "the feed stopped after its viewer left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And starts again for the next viewer, with its metrics exported.
    let mut w = watch(&app, "quiet", &app.admin).await;
    assert_eq!(w.next().await.0, "history");
    let metrics = app.get("/metrics", "").await.text().await.unwrap();
    for line in [
        "floodgate_queue_rate_per_minute{event=\"quiet\"} 60",
        "floodgate_queue_max_active{event=\"quiet\"} 5",
        "floodgate_queue_mode{event=\"quiet\",mode=\"on\"} 1",
        "floodgate_tier_capacity{event=\"quiet\",tier=\"ga\"} 400",
        "floodgate_console_live_viewers{event=\"quiet\"} 1",
        "floodgate_console_live_feeds 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    app.purge(&["quiet"]).await;
}

#[tokio::test]
async fn hosts_watch_their_events_read_only_and_strangers_not_at_all() {
    let app = spawn_with_queue("gig", 60, 5).await;

    let anonymous = app.get("/console/api/events/gig/live", "").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        open(&app, "gig", "fgo_forged").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        open(&app, "nope", &app.admin).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        open(&app, "gig", &app.host).await.status(),
        StatusCode::NOT_FOUND,
        "a host sees only their own events"
    );
    grant_host(&app, "gig").await;
    let mut w = watch(&app, "gig", &app.host).await;
    assert_eq!(w.next().await.0, "history");

    let page = "/console/events/gig/live";
    let host_page = app.get(page, &app.host).await;
    assert_eq!(host_page.status(), StatusCode::OK);
    assert!(
        host_page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = host_page.text().await.unwrap();
    assert!(html.contains("id=\"funnel\"") && html.contains("chart-waiting"));
    assert!(!html.contains("id=\"steer\""), "no controls for hosts");
    assert!(html.contains("Read-only view"));
    let staff_html = app.get(page, &app.operator).await.text().await.unwrap();
    assert!(staff_html.contains("id=\"steer\"") && staff_html.contains("id=\"pause\""));
    assert!(staff_html.contains("id=\"audit\""));
    let anonymous_page = app.get(page, "").await;
    assert!(anonymous_page.status().is_redirection());
    assert_eq!(anonymous_page.headers()["location"], "/console/login");

    // A host may watch but not steer.
    let pause = json!({"mode": "paused", "reason": "curious"});
    let steer = app.set_queue("gig", &app.host, &pause).await;
    assert_eq!(steer.status(), StatusCode::FORBIDDEN);

    for (file, kind) in [
        ("control-room.js", "text/javascript"),
        ("control-room.css", "text/css"),
        ("uplot.min.js", "text/javascript"),
    ] {
        let r = app.get(&format!("/console/assets/{file}"), "").await;
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let missing = app.get("/console/assets/..%2Fsecret", "").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.purge(&["gig"]).await;
}

#[tokio::test]
async fn the_charts_reach_back_before_the_feed_started() {
    use fred::prelude::*;
    let app = spawn_with_queue("earlier", 60, 50).await;
    let slug = EventSlug::parse("earlier").unwrap();
    let keys = app.room.keys(&slug);
    let m = chrono::Utc::now().timestamp() / 60;
    // Five minutes ago 30 arrived and 10 were admitted; two minutes ago 5 more arrived.
    let _: i64 = app
        .room
        .client()
        .hset(
            keys.counters(),
            [
                (format!("arrivals:{}", m - 5), 30),
                (format!("admitted:{}", m - 5), 10),
                (format!("arrivals:{}", m - 2), 5),
            ],
        )
        .await
        .unwrap();
    let _: i64 = app
        .room
        .client()
        .hset(keys.queue(), [("tail", 35), ("head", 10)])
        .await
        .unwrap();

    let mut w = watch(&app, "earlier", &app.admin).await;
    let (kind, h) = w.next().await;
    assert_eq!(kind, "history");
    let at = |t: i64, col: &str| {
        let i = h["t"]
            .as_array()
            .unwrap()
            .iter()
            .position(|x| x.as_i64() == Some(t))
            .unwrap_or_else(|| panic!("a point at {t}: {h}"));
        h[col][i].clone()
    };
    // Queue depth at the end of each minute, walked back from today's 25.
    assert_eq!(at((m - 4) * 60, "waiting"), 20);
    assert_eq!(at((m - 4) * 60, "arrivals_per_min"), 30.0);
    assert_eq!(at((m - 4) * 60, "admitted_per_min"), 10.0);
    assert_eq!(at((m - 2) * 60, "waiting"), 20);
    assert_eq!(at((m - 1) * 60, "waiting"), 25);
    assert_eq!(at((m - 1) * 60, "arrivals_per_min"), 5.0);
    assert!(
        at((m - 1) * 60, "active").is_null(),
        "not known for the past"
    );
    assert_eq!(
        h["t"][0].as_i64(),
        Some((m - 4) * 60),
        "quiet minutes before are left out"
    );
    assert_eq!(h["latest"]["waiting"], 25);
    app.purge(&["earlier"]).await;
}
