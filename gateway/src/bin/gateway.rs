//! The gateway process. Reads its settings from the environment (see `.env.example`).

use std::sync::Arc;

use gateway::arrivals::Arrivals;
use gateway::config::GatewayConfig;
use gateway::snapshots::Snapshots;
use gateway::telemetry::MetricsEndpoint;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy_service;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use waitroom::queue::Waitroom;

// Every proxied request allocates and frees buffers and headers across Pingora's
// threads; glibc malloc was 13–15 % of the gateway's samples under the edge bench
// (docs/PERFORMANCE.md), mimalloc's thread-local free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes read ahead from each buyer's connection. Pingora's default of 64 KiB suits TLS
/// records; a buyer's plain-HTTP request fits in one page, and with 10,000 connections
/// open the default cost 1.05 GB of resident memory against 0.45 GB with this (and
/// answered 15 % fewer polls per second); docs/PERFORMANCE.md, "Connections".
const DOWNSTREAM_READ_BUFFER: usize = 4096;

fn main() -> anyhow::Result<()> {
    platform::logs::init();
    let cfg = GatewayConfig::from_env()?;
    let signer = waitroom::config::signer_from_env()?;
    let verifier = waitroom::config::verifier_from_env()?;
    let queue_keys = waitroom::config::queue_keys_from_env()?;

    // Pingora owns its runtimes and never returns; Redis I/O and the snapshot refresher
    // get a small runtime of their own on a separate thread.
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gateway-io")
        .enable_all()
        .build()?;
    let room = io.block_on(Waitroom::connect(&cfg.redis))?;
    let arrivals = {
        let _io = io.enter();
        Arrivals::start(room.clone(), Some(cfg.join_per_min))
    };
    let snapshots = Arc::new(Snapshots::new(room));
    let built = gateway::proxy::build(
        &cfg,
        snapshots.clone(),
        arrivals,
        signer,
        verifier,
        queue_keys,
    )?;
    let refresh = cfg.snapshot_refresh;
    io.spawn({
        let snapshots = snapshots.clone();
        let limits = built.gateway.limits.clone();
        async move {
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_gc = std::time::Instant::now();
            loop {
                tick.tick().await;
                snapshots.refresh().await;
                if last_gc.elapsed() > std::time::Duration::from_secs(60) {
                    limits.forget_idle();
                    last_gc = std::time::Instant::now();
                }
            }
        }
    });
    std::thread::Builder::new()
        .name("gateway-io".into())
        .spawn(move || io.block_on(std::future::pending::<()>()))?;

    let conf = ServerConf {
        threads: cfg.threads,
        work_stealing: cfg.work_stealing,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // Metrics on a port of their own (FLOODGATE_GATEWAY_METRICS_LISTEN), never the
    // buyers': one thread is plenty for a scrape every few seconds.
    let mut metrics = pingora::services::listening::Service::new(
        "gateway metrics".into(),
        MetricsEndpoint(built.gateway.metrics.clone()),
    );
    metrics.add_tcp(&cfg.metrics_listen);
    metrics.threads = Some(1);
    let mut service = http_proxy_service(&server.configuration, built.gateway);
    service.add_listener(
        ListenerConfig::tcp(&cfg.listen)
            .l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER)),
    );
    tracing::info!(listen = %cfg.listen, metrics = %cfg.metrics_listen, "gateway starting");
    server.add_service(service);
    server.add_service(metrics);
    for hc in built.health_checks {
        server.add_service(hc);
    }
    server.run_forever()
}
