//! (d): the orders HTTP API, its router served on 127.0.0.1:0 in this process, each
//! client POSTing `/api/events/{slug}/holds` with a signed admission token of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use orders::config::{OrdersConfig, PaymentsConfig};
use platform::env::Secret;
use sqlx::PgPool;
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::config::RedisConfig;
use waitroom::queue::Waitroom;
use waitroom::tokens::{
    AdmissionClaims, TokenKind, TokenSigner, TokenVerifier, audience, generate_keypair,
};

use super::measure::{
    ClientTally, CpuWindow, check_ledger, db_now, ledger, measurement, micros, timeline,
};
use super::setup::{NAME, ScratchDb, buyer_email, checkpoint, create_event};
use super::{Measurement, Options};

/// (d): the orders router on 127.0.0.1:0, `clients` HTTP clients.
pub(super) async fn run(
    opts: &Options,
    server: &str,
    expected_rate: f64,
) -> anyhow::Result<Measurement> {
    let scratch = ScratchDb::create(server, true, 20).await?;
    let pool = scratch.pool().clone();
    let slug_text = format!("bench-http-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let slug = EventSlug::parse(&slug_text)?;
    let (_, tier_id) = create_event(&pool, &slug_text).await?;
    let room = Waitroom::connect(&RedisConfig {
        url: opts.redis_url.clone(),
        prefix: format!("bench-{}", Uuid::new_v4().simple()),
        ..RedisConfig::default()
    })
    .await
    .context("connecting to Redis")?;
    let purge = PurgeOnDrop(Some((room.clone(), slug.clone())));
    let result = against_server(
        opts,
        (&pool, &scratch.url),
        tier_id,
        &room,
        &slug,
        expected_rate,
    )
    .await;
    purge.now().await;
    drop(pool);
    drop(scratch);
    result
}

/// Purges the event's Redis keys: `now()` on the way out, or from `Drop` on the error
/// path (or Ctrl-C), as a task on the runtime.
struct PurgeOnDrop(Option<(Waitroom, EventSlug)>);

impl PurgeOnDrop {
    async fn now(mut self) {
        if let Some((room, slug)) = self.0.take()
            && let Err(e) = room.purge(&slug).await
        {
            eprintln!("warning: could not purge Redis keys of {slug}: {e}");
        }
    }
}

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if let Some((room, slug)) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = room.purge(&slug).await;
            });
        }
    }
}

async fn against_server(
    opts: &Options,
    (pool, database_url): (&PgPool, &str),
    tier_id: Uuid,
    room: &Waitroom,
    slug: &EventSlug,
    expected_rate: f64,
) -> anyhow::Result<Measurement> {
    let (sk, pk) = generate_keypair();
    let signer = TokenSigner::from_pem("bench", sk.as_bytes())?;
    let verifier = TokenVerifier::new().with_key("bench", pk.as_bytes())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Payments are never called by a hold; the base is a closed port on this host.
    let payments_base = "http://127.0.0.1:9";
    let config = OrdersConfig {
        database_url: database_url.to_owned(),
        listen: addr.to_string(),
        public_url: format!("http://{addr}"),
        redis: RedisConfig {
            url: opts.redis_url.clone(),
            prefix: room.prefix().to_owned(),
            ..RedisConfig::default()
        },
        payments: PaymentsConfig {
            provider: "sandbox",
            api_base: payments_base.to_owned(),
            pay_base: payments_base.to_owned(),
            secret_key: Secret::new("sk_test_floodgate"),
            webhook_secret: Secret::new("whsec_bench"),
        },
        order_token_secret: Secret::new("bench-order-token-secret-0123456789abcdef"),
        reconcile_after: Duration::from_secs(60),
        workers: false,
        hold_writers_per_tier: 1,
        holds_per_buyer: orders::holds::DEFAULT_HOLDS_PER_BUYER,
    };
    // Built as the orders binary builds it (its own pool of the same size).
    let app = orders::startup::Application::on(listener, config, verifier).await?;
    let (server, shutdown) = platform::shutdown::Shutdown::new();
    app.spawn(shutdown);
    let url = format!("http://{addr}/api/events/{slug}/holds");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Tokens are signed before the clock starts (enough for 1.3× the desk's rate), so
    // the clients' signing does not compete with the server for the two cores.
    let wanted =
        ((expected_rate * opts.seconds as f64 * 1.3) as usize + 100 * opts.clients).min(2_000_000);
    let tokens = Arc::new(sign_tokens(&signer, slug, wanted).await?);

    // One hold before the clock starts: connections, catalog cache and writer exist.
    let warm = post_hold(&http, &url, &tokens[0], 0).await?;
    ensure!(
        warm.0 == reqwest::StatusCode::CREATED,
        "(d) warm-up hold answered {}: {}",
        warm.0,
        warm.1
    );
    let warm_ledger = ledger(pool, tier_id).await?;
    checkpoint(pool).await;

    let next = Arc::new(AtomicUsize::new(1));
    let db_start = db_now(pool).await?;
    let cpu = CpuWindow::start();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let (http, url, tokens, next) = (http.clone(), url.clone(), tokens.clone(), next.clone());
        let (signer, slug) = (signer.clone(), slug.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let inline;
                let token = match tokens.get(i) {
                    Some(t) => t.as_str(),
                    None => {
                        tally.signed_inline += 1;
                        inline = sign_token(&signer, &slug, i as u64);
                        inline.as_str()
                    }
                };
                let t0 = Instant::now();
                match post_hold(&http, &url, token, i as u64).await {
                    Ok((reqwest::StatusCode::CREATED, _)) => {
                        tally.ok += 1;
                        tally.latencies.push(micros(t0.elapsed()));
                    }
                    Ok((status, body)) => {
                        let body: String = body.chars().take(120).collect();
                        tally.error(format!("HTTP {status}: {body}"));
                    }
                    Err(e) => tally.error(format!("transport: {e}")),
                }
            }
            tally
        }));
    }
    let mut tally = ClientTally::default();
    for t in tasks {
        tally.merge(t.await.context("a client task panicked")?);
    }
    let elapsed = (start.elapsed(), cpu.finish());
    drop(server);

    let after = ledger(pool, tier_id).await?;
    check_ledger("d", &after, tally.ok + 1)?;
    let batches = u64::try_from(after.batches - warm_ledger.batches).unwrap_or(0);
    let mut notes = vec![format!(
        "{} reqwest clients (HTTP/1.1 keep-alive) → axum router with workers off, same process; \
         {} tokens pre-signed",
        opts.clients,
        tokens.len()
    )];
    if tally.signed_inline > 0 {
        notes.push(format!(
            "{} tokens signed inline during the run",
            tally.signed_inline
        ));
    }
    let timeline = timeline(pool, tier_id, db_start).await?;
    Ok(measurement(
        (
            "d",
            "orders HTTP API POST /api/events/{slug}/holds, in-process server",
        ),
        tally,
        elapsed,
        batches,
        notes,
        timeline,
    ))
}

async fn post_hold(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    seq: u64,
) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let body = format!(
        r#"{{"tier":"ga","quantity":1,"email":"{}","name":"{NAME}"}}"#,
        buyer_email(seq)
    );
    let response = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    Ok((status, body))
}

fn sign_token(signer: &TokenSigner, slug: &EventSlug, seq: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    signer.sign(&AdmissionClaims {
        kind: TokenKind::Admission,
        aud: audience(slug),
        evt: slug.clone(),
        sub: format!("visitor-{seq}"),
        jti: Uuid::new_v4().to_string(),
        seq,
        iat: now,
        exp: now + 3600,
    })
}

/// Signs `n` admission tokens (seq 0..n) on blocking threads, one per core.
async fn sign_tokens(
    signer: &TokenSigner,
    slug: &EventSlug,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(workers).max(1);
    let mut jobs = Vec::new();
    for from in (0..n).step_by(chunk) {
        let to = (from + chunk).min(n);
        let (signer, slug) = (signer.clone(), slug.clone());
        jobs.push(tokio::task::spawn_blocking(move || {
            (from..to)
                .map(|i| sign_token(&signer, &slug, i as u64))
                .collect::<Vec<_>>()
        }));
    }
    let mut tokens = Vec::with_capacity(n);
    for j in jobs {
        tokens.extend(j.await?);
    }
    Ok(tokens)
}
