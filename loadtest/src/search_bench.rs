//! `loadtest bench-search`: the console's search box with 100,000 orders.
//!
//! A scratch database is migrated and filled in SQL (`generate_series`, one statement
//! per table: seconds, not the API's minutes), then `console::search::find` — the code
//! behind `/console/search` and `/console/api/search` — is called in this process for
//! queries a support person is handed: email fragments and prefixes, full emails, names,
//! misspelt names, order ids, ticket codes, payment intent ids, each taken from a random
//! seeded order. A primary-key lookup of the same orders on the same pool is the
//! baseline, so the figure says what the search costs over the cheapest possible read.
//! The scratch database is dropped afterwards, also on error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use console::auth::{Operator, Role};
use hdrhistogram::Histogram;
use rand::Rng;
use rand::seq::SliceRandom;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;
use waitroom::config::RedisConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Orders to seed (one ticket each, spread over 20 events).
    #[arg(long, default_value_t = 100_000)]
    pub orders: i64,
    /// Queries of each kind.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Postgres server (the database part is ignored: a scratch database is made).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/floodgate"
    )]
    pub database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Keep the scratch database (to look at query plans afterwards).
    #[arg(long)]
    pub keep: bool,
}

/// The bar for the search box.
const TARGET_P95: Duration = Duration::from_millis(50);

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Leslie",
    "Tim",
    "Linus",
    "Sophie",
    "Katherine",
    "Niklaus",
    "Hedy",
    "Annie",
    "Jean",
    "Mary",
    "Bjarne",
    "Guido",
    "Yukihiro",
    "Shafi",
    "Whitfield",
    "Martin",
    "Lynn",
    "Adele",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Perlman",
    "Lamport",
    "Berners-Lee",
    "Torvalds",
    "Wilson",
    "Johnson",
    "Wirth",
    "Lamarr",
    "Easley",
    "Sammet",
    "Keller",
    "Stroustrup",
    "Rossum",
    "Matsumoto",
    "Goldwasser",
    "Diffie",
    "Fowler",
    "Conway",
    "Goldberg",
    "Backus",
    "Kay",
    "Bartik",
    "Clarke",
    "Engelbart",
    "Sutherland",
    "Shannon",
    "Boole",
    "Babbage",
    "Neumann",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "example.com",
    "mail.example.net",
    "uni.example.edu",
    "corp.example",
];

pub async fn run(args: Args) -> anyhow::Result<()> {
    let admin_url = with_database(&args.database_url, "postgres");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connecting to Postgres")?;
    let db_name = format!("floodgate_bench_search_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&admin)
        .await?;
    let result = bench(&args, &with_database(&args.database_url, &db_name)).await;
    if args.keep {
        eprintln!("kept database {db_name}");
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await?;
    }
    let report = result?;
    println!("{report}");
    Ok(())
}

fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let (server, _) = base.rsplit_once('/').unwrap_or((base, ""));
    format!("{server}/{db}")
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<String> {
    let db = platform::db::connect(url, 4).await?;
    platform::db::migrate(&db).await?;
    let started = Instant::now();
    seed(&db, args.orders).await?;
    let seeded_in = started.elapsed();

    // The console as its binary builds it; the bench calls its search directly.
    let listener = platform::listener::bind("127.0.0.1:0").await?;
    let config = console::config::ConsoleConfig {
        database_url: url.to_owned(),
        database_read_url: None,
        redis: RedisConfig {
            url: args.redis_url.clone(),
            prefix: format!("bench-search-{}", std::process::id()),
            ..RedisConfig::default()
        },
        listen: listener.local_addr()?.to_string(),
        public_url: "http://127.0.0.1:8080".into(),
        secure_cookies: false,
        feed_linger: Duration::from_secs(15),
        workers: false,
    };
    let app = console::startup::Application::on(listener, db.clone(), config).await?;
    let state = app.state().clone();
    let operator = Operator {
        token_id: Uuid::new_v4(),
        name: "bench".into(),
        role: Role::Admin,
        events: Vec::new(),
        csrf: None,
    };

    let queries = queries(&db, args.queries).await?;
    // Warm the caches the way a console that has been up a while has them.
    for (_, q, _) in queries.iter().take(200) {
        console::search::find(&state, &operator, q).await?;
    }

    let mut by_kind: BTreeMap<&'static str, Histogram<u64>> = BTreeMap::new();
    let mut all = Histogram::<u64>::new(3)?;
    let mut misses = Vec::new();
    for (kind, q, want) in &queries {
        let t = Instant::now();
        let hits = console::search::find(&state, &operator, q).await?;
        let us = t.elapsed().as_micros() as u64;
        all.record(us)?;
        by_kind
            .entry(kind)
            .or_insert_with(|| Histogram::new(3).expect("histogram"))
            .record(us)?;
        let found = match want {
            Some(id) => hits.iter().any(|h| h.order_id == *id),
            None => !hits.is_empty(),
        };
        if !found {
            misses.push(format!("{kind} {q:?}"));
        }
    }

    // Baseline: the same orders by primary key, same pool, same client loop.
    let mut pk = Histogram::<u64>::new(3)?;
    for id in queries.iter().filter_map(|(_, _, id)| *id) {
        let t = Instant::now();
        let row: Option<(Uuid, String)> =
            sqlx::query_as("SELECT id, buyer_email FROM orders WHERE id = $1")
                .bind(id)
                .fetch_optional(&db)
                .await?;
        pk.record(t.elapsed().as_micros() as u64)?;
        ensure!(row.is_some(), "baseline lookup found nothing");
    }

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut out = String::new();
    out.push_str(&format!(
        "console search: {} orders seeded in {:.1} s, {} queries ({} per kind), one client\n",
        args.orders,
        seeded_in.as_secs_f64(),
        all.len(),
        args.queries
    ));
    out.push_str(&format!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}\n",
        "kind", "p50 ms", "p95 ms", "p99 ms", "max ms"
    ));
    let line = |name: &str, h: &Histogram<u64>| {
        format!(
            "{:<22} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
            name,
            ms(h, 0.5),
            ms(h, 0.95),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        )
    };
    for (kind, h) in &by_kind {
        out.push_str(&line(kind, h));
    }
    out.push_str(&line("all searches", &all));
    out.push_str(&line("baseline: pk lookup", &pk));
    let p95 = ms(&all, 0.95);
    out.push_str(&format!(
        "p95 {:.2} ms = {:.1}x the primary-key lookup (p95 {:.2} ms); target p95 < {} ms: {}\n",
        p95,
        p95 / ms(&pk, 0.95).max(0.001),
        ms(&pk, 0.95),
        TARGET_P95.as_millis(),
        if p95 < TARGET_P95.as_secs_f64() * 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    ));
    out.push_str(&format!(
        "queries whose order was not among the hits: {}{}\n",
        misses.len(),
        misses
            .iter()
            .take(5)
            .map(|m| format!("\n  {m}"))
            .collect::<String>()
    ));
    ensure!(
        misses.len() * 100 <= queries.len(),
        "more than 1% of searches missed their order:\n{out}"
    );
    Ok(out)
}

fn sql_array(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    format!("ARRAY[{}]", quoted.join(","))
}

/// 20 events of one tier each; `n` paid orders with one ticket each. Names and emails
/// are built from the index so many buyers share a first or last name (as in life) but
/// every email is distinct.
async fn seed(db: &PgPool, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                             queue_mode, queue_rate_per_minute, queue_max_active, admission_ttl_seconds)
         SELECT gen_random_uuid(), 'bench-' || g, 'Bench event ' || g, now() + interval '30 days',
                now() + interval '30 days 2 hours', 'Europe/Amsterdam', '{\"provider\":\"jitsi\"}',
                '{\"refundable_until_hours_before\":48}', 'off', 60, 100, 600
         FROM generate_series(1, 20) g",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO tiers (id, event_id, code, name, price_cents, currency, capacity, position)
         SELECT gen_random_uuid(), id, 'ga', 'General', 2500, 'EUR', 1000000, 1 FROM events",
    )
    .execute(db)
    .await?;
    let (first, last, domains) = (sql_array(FIRST), sql_array(LAST), sql_array(DOMAINS));
    // One row per order with everything the three tables need, then three INSERTs.
    // An unlogged table, not a temporary one: the pool may run the next statements
    // on another connection. Only constants are formatted in.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE UNLOGGED TABLE seed AS
         SELECT g, gen_random_uuid() AS hold_id, gen_random_uuid() AS order_id,
                t.event_id, t.id AS tier_id,
                f || ' ' || l AS name,
                lower(f) || '.' || lower(replace(l, '-', '')) || g || '@' || d AS email,
                'pi_' || substr(md5(g::text), 1, 24) AS intent,
                'FG-' || substr(c, 1, 4) || '-' || substr(c, 5, 4) || '-' || substr(c, 9, 2) AS code,
                now() - (g || ' seconds')::interval AS at
         FROM generate_series(1, {n}) g
         -- The index in hex first, so every code is distinct, then random characters.
         CROSS JOIN LATERAL (SELECT upper(lpad(to_hex(g), 6, '0') || substr(md5('t' || g), 1, 4)) AS c) codes
         CROSS JOIN LATERAL (SELECT ({first})[1 + g % {nf}] AS f,
                                    ({last})[1 + (g / {nf}) % {nl}] AS l,
                                    ({domains})[1 + g % {nd}] AS d) names
         JOIN (SELECT id, event_id, row_number() OVER (ORDER BY id) - 1 AS k FROM tiers) t
           ON t.k = g % 20",
        nf = FIRST.len(),
        nl = LAST.len(),
        nd = DOMAINS.len(),
    )))
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti, buyer_email, buyer_name,
                            status, expires_at, created_at, closed_at)
         SELECT hold_id, event_id, tier_id, 1, 'bench-' || g, email, name, 'converted',
                at + interval '10 minutes', at, at FROM seed",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO orders (id, event_id, hold_id, tier_id, quantity, amount_cents, currency,
                             buyer_email, buyer_name, status, payment_provider, payment_intent_id,
                             created_at, paid_at, updated_at)
         SELECT order_id, event_id, hold_id, tier_id, 1, 2500, 'EUR', email, name, 'paid',
                'sandbox', intent, at, at, at FROM seed",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO tickets (id, order_id, event_id, tier_id, seat_no, code, holder_email,
                              holder_name, created_at)
         SELECT gen_random_uuid(), order_id, event_id, tier_id, 1, code, email, name, at FROM seed",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "UPDATE tiers SET sold = (SELECT count(*) FROM orders o WHERE o.tier_id = tiers.id)",
    )
    .execute(db)
    .await?;
    sqlx::query("DROP TABLE seed").execute(db).await?;
    sqlx::query("VACUUM ANALYZE").execute(db).await?;
    Ok(())
}

/// (kind, text, the order it must find; `None`: any hit will do).
type Query = (&'static str, String, Option<Uuid>);

/// `per_kind` queries of each kind, each from a random seeded order: (kind, text, the
/// order it must find).
async fn queries(db: &PgPool, per_kind: usize) -> anyhow::Result<Vec<Query>> {
    let rows: Vec<(Uuid, String, String, String, String)> = sqlx::query_as(
        "SELECT o.id, o.buyer_email, o.buyer_name, o.payment_intent_id, t.code
         FROM orders o JOIN tickets t ON t.order_id = o.id
         ORDER BY random() LIMIT $1",
    )
    .bind(per_kind as i64)
    .fetch_all(db)
    .await?;
    let mut rng = rand::thread_rng();
    let mut out = Vec::new();
    for (id, email, name, intent, code) in rows {
        let local = email.split('@').next().unwrap_or(&email).to_owned();
        // A fragment from inside the local part that includes the distinguishing digits.
        let digits_at = local.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
        let from = digits_at.saturating_sub(rng.gen_range(2..5));
        out.push(("email fragment", local[from..].to_owned(), Some(id)));
        out.push(("email prefix", local.clone(), Some(id)));
        out.push(("full email", email.clone(), Some(id)));
        out.push(("order id", id.to_string(), Some(id)));
        out.push(("ticket code", code.to_lowercase(), Some(id)));
        out.push(("payment intent", intent, Some(id)));
        // A name is shared by ~80 buyers; the page shows 50, so a name query must find
        // someone, not necessarily this order.
        out.push(("name", name.clone(), None));
        out.push(("misspelt name", misspell(&name, &mut rng), None));
    }
    out.shuffle(&mut rng);
    Ok(out)
}

fn misspell(name: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    let i = rng.gen_range(1..chars.len() - 1);
    chars.swap(i, i + 1);
    chars.into_iter().collect()
}
