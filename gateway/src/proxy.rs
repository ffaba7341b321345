//! The Pingora side: decide per request whether the edge answers it or which upstream
//! gets it, and write edge replies to the session.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::ErrorType;
use pingora::http::{Method, RequestHeader, ResponseHeader};
use pingora::lb::{Backend, LoadBalancer, health_check, selection::RoundRobin};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::services::background::{GenBackgroundService, background_service};
use waitroom::tokens::{QueueKeys, TokenSigner, TokenVerifier};

use crate::EdgeError;
use crate::arrivals::Arrivals;
use crate::config::GatewayConfig;
use crate::guard::{self, Verdict};
use crate::limits::{Limiter, Limits, client_ip};
use crate::lottery::Lotteries;
use crate::reply::Reply;
use crate::routes::{Route, Upstream, classify};
use crate::snapshots::Snapshots;
use crate::telemetry::Metrics;
use crate::verified::{self, VerifiedQueueTokens};
use crate::waiting::{Visit, Waiting};

const OPENAPI: &str = include_str!("../assets/openapi.json");
const FAVICON: &[u8] = include_bytes!("../assets/favicon.ico");

pub struct Gateway {
    pub waiting: Waiting,
    pub limits: Arc<Limits>,
    pub metrics: Metrics,
    orders: Arc<LoadBalancer<RoundRobin>>,
    console: Arc<LoadBalancer<RoundRobin>>,
    fulfilment: Arc<LoadBalancer<RoundRobin>>,
    trusted_proxies: Vec<ipnet::IpNet>,
}

pub struct Ctx {
    route: Route,
    started: Instant,
    client: Option<IpAddr>,
    backend: Option<Backend>,
    /// The backend of the attempt under way.
    trying: Option<Backend>,
    /// Backends this request could not connect to: a retry goes elsewhere if it can.
    refused: Vec<Backend>,
    /// Failed connection attempts for this request.
    connect_failures: u8,
    /// Times this request was sent again after a replica dropped it unanswered.
    replays: u8,
}

/// A connection that never opened carried no request: it is safe to try again.
const CONNECT_RETRIES: u8 = 2;

/// A GET or HEAD whose replica closed or reset the connection before answering (a crash,
/// a restart) is sent once more, to another replica: reading twice changes nothing.
const REPLAYS: u8 = 1;

/// The gateway plus the background services (upstream health checks) it depends on.
pub struct Built {
    pub gateway: Gateway,
    pub health_checks: Vec<GenBackgroundService<LoadBalancer<RoundRobin>>>,
}

/// The backend for a retry after failed connects: a healthy one this request has not
/// been refused by, else (every replica refused it, or only one exists) whatever the
/// pool picks. Round robin alone may hand a retry the replica that just refused it
/// until the health check (once a second) has seen it die.
fn pick_for_retry(pool: &LoadBalancer<RoundRobin>, refused: &[Backend]) -> Option<Backend> {
    pool.select_with(b"", 256, |b, healthy| healthy && !refused.contains(b))
        .or_else(|| pool.select(b"", 256))
}

fn upstream_pool(
    name: &str,
    addrs: &[String],
) -> anyhow::Result<GenBackgroundService<LoadBalancer<RoundRobin>>> {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().map(String::as_str))?;
    lb.set_health_check(health_check::TcpHealthCheck::new());
    lb.health_check_frequency = Some(Duration::from_secs(1));
    Ok(background_service(name, lb))
}

pub fn build(
    cfg: &GatewayConfig,
    snapshots: Arc<Snapshots>,
    arrivals: Arrivals,
    signer: TokenSigner,
    verifier: TokenVerifier,
    queue_keys: QueueKeys,
) -> anyhow::Result<Built> {
    // One key id for two kinds of token would make a reader's choice of key depend on
    // the algorithm a token claims; keep the two sets apart.
    if let Some(kid) = queue_keys.kids().find(|k| verifier.kids().any(|v| v == *k)) {
        anyhow::bail!("key id {kid:?} names both a queue-token key and an admission key");
    }
    let orders = upstream_pool("orders health check", &cfg.orders_upstreams)?;
    let console = upstream_pool("console health check", &cfg.console_upstreams)?;
    let fulfilment = upstream_pool("fulfilment health check", &cfg.fulfilment_upstreams)?;
    let metrics = Metrics::new();
    metrics.register_join_batches(arrivals.batch_sizes.clone());
    let limits = Arc::new(Limits::from_config(cfg));
    let gateway = Gateway {
        waiting: Waiting {
            lotteries: Lotteries::new(snapshots.room().clone()),
            limits: limits.clone(),
            snapshots,
            arrivals,
            signer,
            queue_tokens: VerifiedQueueTokens::new(queue_keys, verifier, verified::CAPACITY),
            queue_token_ttl: cfg.queue_token_ttl,
            secure_cookies: cfg.secure_cookies(),
        },
        limits,
        metrics,
        orders: orders.task(),
        console: console.task(),
        fulfilment: fulfilment.task(),
        trusted_proxies: cfg.trusted_proxies.clone(),
    };
    Ok(Built {
        gateway,
        health_checks: vec![orders, console, fulfilment],
    })
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn write_reply(session: &mut Session, reply: Reply) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in reply.headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header("Content-Length", reply.body.len().to_string())?;
    let head_only = session.req_header().method == "HEAD";
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}

impl Gateway {
    /// The edge's own answer, or `None` to proxy the request.
    async fn answer(&self, route: &Route, client: IpAddr, visit: Visit<'_>) -> Option<Reply> {
        let limited = |limiter: &Limiter| self.limits.check(limiter, client);
        let result: Result<Option<Reply>, EdgeError> = async {
            Ok(match route {
                Route::Healthz => Some(Reply::new(200, "text/plain", "ok\n")),
                Route::Readyz => Some(match self.waiting.snapshots.room().ping().await {
                    Ok(()) => Reply::new(200, "text/plain", "ready\n"),
                    Err(e) => EdgeError::Unavailable(e).reply(),
                }),
                Route::OpenApi => Some(Reply::new(200, "application/json", OPENAPI)),
                Route::Favicon => Some(
                    Reply::new(200, "image/x-icon", FAVICON)
                        .header("Cache-Control", "public, max-age=86400"),
                ),
                // Every waiting-room request counts against the status limit; one that
                // takes a new place also against the join limit, charged where the place
                // is taken (`Waiting::new_place`), whichever of these it came by.
                Route::QueuePage(e) => {
                    limited(&self.limits.status)?;
                    Some(self.waiting.page(e, visit).await?)
                }
                Route::Join(e) => {
                    limited(&self.limits.status)?;
                    Some(self.waiting.join(e, visit).await?)
                }
                Route::Status(e) => {
                    limited(&self.limits.status)?;
                    Some(self.waiting.status(e, visit).await?)
                }
                // Served from memory (crate::lottery), so it costs what a poll costs; the
                // join limit is for taking places.
                Route::Lottery(e) => {
                    limited(&self.limits.status)?;
                    Some(self.waiting.lottery(e).await?)
                }
                Route::Protected { event, page, write } => {
                    match guard::check(
                        &self.waiting.snapshots,
                        self.waiting.queue_tokens.verifier(),
                        event,
                        *page,
                        visit,
                    )
                    .await
                    {
                        Verdict::Admitted => None,
                        Verdict::Open => {
                            if *write {
                                limited(&self.limits.holds_without_admission)?;
                            }
                            None
                        }
                        Verdict::Deny(reply) => Some(reply),
                    }
                }
                Route::AccessLink => {
                    limited(&self.limits.access_link)?;
                    None
                }
                Route::Webhook => {
                    limited(&self.limits.webhook)?;
                    None
                }
                Route::Upstream(_) => None,
                Route::NotFound => return Err(EdgeError::NotFound),
                Route::MethodNotAllowed { allow } => {
                    return Err(EdgeError::MethodNotAllowed { allow });
                }
            })
        }
        .await;
        match result {
            Ok(reply) => reply,
            Err(e) => {
                if matches!(e, EdgeError::RateLimited { .. }) {
                    self.metrics
                        .rate_limited
                        .with_label_values(&[route.label()])
                        .inc();
                }
                Some(e.reply())
            }
        }
    }

    fn pool(&self, upstream: Upstream) -> &LoadBalancer<RoundRobin> {
        match upstream {
            Upstream::Orders => &self.orders,
            Upstream::Console => &self.console,
            Upstream::Fulfilment => &self.fulfilment,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            route: Route::NotFound,
            started: Instant::now(),
            client: None,
            backend: None,
            trying: None,
            refused: Vec::new(),
            connect_failures: 0,
            replays: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        let req = session.req_header();
        ctx.route = classify(req.method.as_str(), req.uri.path());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let forwarded_for = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        let client = client_ip(peer, forwarded_for, &self.trusted_proxies);
        ctx.client = Some(client);
        let cookie = header(req, "cookie").map(str::to_owned);
        let authorization = header(req, "authorization").map(str::to_owned);
        let visit = Visit {
            client,
            cookie: cookie.as_deref(),
            authorization: authorization.as_deref(),
        };
        let mut reply = self.answer(&ctx.route, client, visit).await;
        if reply.is_none()
            && let Some(upstream) = ctx.route.upstream()
        {
            ctx.backend = self.pool(upstream).select(b"", 256);
            if ctx.backend.is_none() {
                reply = Some(
                    Reply::json(
                        503,
                        &serde_json::json!({
                            "error": "upstream_unavailable",
                            "message": "the service behind this path is unavailable; retry shortly",
                        }),
                    )
                    .header("Retry-After", "2"),
                );
            }
        }
        match reply {
            Some(reply) => {
                write_reply(session, reply).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        // The first attempt uses the backend chosen in `request_filter`; a retry after a
        // failed connect picks again, another replica than the ones that refused.
        let backend = match ctx.backend.take() {
            Some(b) => Some(b),
            None => ctx
                .route
                .upstream()
                .and_then(|u| pick_for_retry(self.pool(u), &ctx.refused)),
        }
        .ok_or_else(|| {
            pingora::Error::explain(pingora::ErrorType::InternalError, "no upstream selected")
        })?;
        ctx.trying = Some(backend.clone());
        let mut peer = HttpPeer::new(backend, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(2));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        ctx.connect_failures += 1;
        if let Some(b) = ctx.trying.take() {
            ctx.refused.push(b);
        }
        if ctx.connect_failures <= CONNECT_RETRIES {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<pingora::Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<pingora::Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let method = &session.req_header().method;
        if !method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else if (*method == Method::GET || *method == Method::HEAD)
            && matches!(
                e.etype,
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            )
            && session.response_written().is_none()
            && ctx.replays < REPLAYS
        {
            // The replica went away under a read it had not begun to answer: another
            // one answers it (Pingora alone retries only on a reused connection).
            ctx.replays += 1;
            if let Some(b) = ctx.trying.take() {
                ctx.refused.push(b);
            }
            e.set_retry(true);
        } else {
            // Pingora's own rule: a failure on a reused connection may be retried.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let Some(ip) = ctx.client {
            // Upstreams see the client as the gateway decided it, never a client's claim.
            upstream_request.insert_header("X-Forwarded-For", ip.to_string())?;
        }
        upstream_request.insert_header("X-Forwarded-Proto", "http")?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let label = ctx.route.label();
        self.metrics
            .requests
            .with_label_values(&[label, status_class(status)])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[label])
            .observe(ctx.started.elapsed().as_secs_f64());
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        429 => "429",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addrs: &[&str]) -> LoadBalancer<RoundRobin> {
        // No health check has run: every backend counts as healthy, as in the second
        // before the check sees a replica die.
        LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied()).unwrap()
    }

    #[test]
    fn a_retry_goes_to_a_replica_that_has_not_refused_the_request() {
        let lb = pool(&["127.0.0.1:1", "127.0.0.1:2"]);
        let dead = lb.select(b"", 256).unwrap();
        for _ in 0..20 {
            // Other requests move the round robin on meanwhile; the retry never lands
            // on the replica that refused it.
            lb.select(b"", 256);
            let again = pick_for_retry(&lb, std::slice::from_ref(&dead)).unwrap();
            assert_ne!(again, dead);
        }
    }

    #[test]
    fn with_every_replica_refused_a_retry_still_gets_one() {
        let single = pool(&["127.0.0.1:1"]);
        let only = single.select(b"", 256).unwrap();
        assert_eq!(
            pick_for_retry(&single, std::slice::from_ref(&only)),
            Some(only)
        );
        let two = pool(&["127.0.0.1:1", "127.0.0.1:2"]);
        let both: Vec<Backend> = two.backends().get_backend().iter().cloned().collect();
        assert!(pick_for_retry(&two, &both).is_some());
    }

    /// The document served at /openapi.json is OpenAPI and covers every path of the
    /// public contract (API.md), so outside clients and schemathesis see all of it.
    #[test]
    fn the_openapi_document_names_every_public_path() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/favicon.ico",
            "/queue/{event}",
            "/queue/{event}/join",
            "/queue/{event}/status",
            "/e/{event}",
            "/api/events/{event}",
            "/api/events/{event}/holds",
            "/api/holds/{hold_id}",
            "/api/holds/{hold_id}/checkout",
            "/api/orders/{order_id}",
            "/api/payments/webhook",
            "/join/{access_token}",
            "/console/api/events",
            "/console/api/events/{event}/admission",
            "/console/api/events/{event}/live",
            "/console/api/search",
            "/console/api/orders/{id}",
            "/console/api/orders/{id}/refund",
            "/console/api/orders/{id}/resend",
            "/console/api/orders/{id}/email",
            "/console/api/tickets/{id}/transfer",
            "/console/api/events/{event}/reschedule",
            "/console/api/events/{event}/cancel",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} is missing from openapi.json"
            );
        }
    }
}
