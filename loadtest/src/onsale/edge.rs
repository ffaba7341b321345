//! What the gateway itself measured: its request-duration histogram (Prometheus text,
//! served on the gateway's metrics listener, never its buyer port) read before and
//! after the crowd. The difference is the time the edge spent per request, without
//! the simulator's scheduling or the client side's queueing, so the report can say on
//! which side of the wire a latency tail lives.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::ensure;
use serde::Serialize;

const METRIC: &str = "floodgate_gateway_request_duration_seconds_bucket";

/// The gateway's default metrics listener (`gateway/src/config.rs`), for when the
/// environment names neither the URL nor the listener.
const DEFAULT_LISTEN: &str = "127.0.0.1:9080";

/// Where the gateway's Prometheus metrics are read, for every subcommand that reads
/// them: the gateway serves them on a listener of its own
/// (`FLOODGATE_GATEWAY_METRICS_LISTEN`); its buyer port answers 404 there.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayMetrics {
    /// The gateway's metrics URL, loopback only (default: /metrics on
    /// FLOODGATE_GATEWAY_METRICS_LISTEN, else on the gateway's default listener).
    #[arg(
        long = "gateway-metrics",
        id = "gateway_metrics",
        value_name = "URL",
        env = "FLOODGATE_GATEWAY_METRICS_URL",
        default_value_t = default_url()
    )]
    pub url: String,
}

/// `/metrics` on `FLOODGATE_GATEWAY_METRICS_LISTEN` when it is set, else on the
/// gateway's default listener.
fn default_url() -> String {
    let listen = std::env::var("FLOODGATE_GATEWAY_METRICS_LISTEN").ok();
    listener_url(
        listen
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or(DEFAULT_LISTEN),
    )
}

/// `/metrics` on a listen address as this machine reaches it: a wildcard bind
/// (`0.0.0.0`, `[::]`) is reached on loopback.
fn listener_url(listen: &str) -> String {
    let host_port = match listen.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())).to_string()
        }
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, a.port())).to_string()
        }
        _ => listen.to_owned(),
    };
    format!("http://{host_port}/metrics")
}

/// Per route: cumulative counts by upper bound (seconds; `+Inf` as infinity).
pub type Buckets = BTreeMap<String, Vec<(f64, u64)>>;

/// One route's answers between two readings, as the gateway timed them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EdgeFigures {
    pub requests: u64,
    /// Share of answers the gateway gave within 50 ms and within 100 ms.
    pub within_50ms: f64,
    pub within_100ms: f64,
    /// The smallest histogram bound that 99 % of answers were within (an upper bound
    /// of the edge's p99); `None` when that is only the `+Inf` bucket.
    pub p99_at_most_ms: Option<f64>,
}

/// The gateway's metrics as Prometheus text; an error says what answered instead.
pub async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    // reqwest's errors name the URL themselves.
    let response = http.get(url).send().await?;
    let status = response.status();
    ensure!(status.is_success(), "{url} answered {status}");
    Ok(response.text().await?)
}

/// Reads the gateway's histogram.
pub async fn read(http: &reqwest::Client, url: &str) -> anyhow::Result<Buckets> {
    Ok(parse(&fetch(http, url).await?))
}

/// The figures between a reading before the crowd and one after, or why there are
/// none (for the report to say, rather than show an empty table).
pub fn compare(
    before: &anyhow::Result<Buckets>,
    after: &anyhow::Result<Buckets>,
) -> Result<BTreeMap<String, EdgeFigures>, String> {
    match (before, after) {
        (Err(e), _) => Err(format!("before the crowd: {e:#}")),
        (_, Err(e)) => Err(format!("after the crowd: {e:#}")),
        // A gateway that timed nothing, with a crowd just through it, is not the
        // gateway whose figures the report wants.
        (Ok(_), Ok(after)) if after.is_empty() => Err(format!(
            "no {METRIC} in the answer (not the gateway's metrics?)"
        )),
        (Ok(before), Ok(after)) => Ok(between(before, after)),
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

pub fn parse(text: &str) -> Buckets {
    let mut out = Buckets::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let (Some(route), Some(le), Ok(count)) = (
            label(labels, "route"),
            label(labels, "le"),
            value.trim().parse::<u64>(),
        ) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        out.entry(route.to_owned()).or_default().push((le, count));
    }
    for b in out.values_mut() {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    out
}

/// The answers given between `before` and `after`, per route.
pub fn between(before: &Buckets, after: &Buckets) -> BTreeMap<String, EdgeFigures> {
    let mut out = BTreeMap::new();
    for (route, buckets) in after {
        let earlier = |le: f64| {
            before
                .get(route)
                .and_then(|b| b.iter().find(|(l, _)| *l == le))
                .map_or(0, |(_, n)| *n)
        };
        let counts: Vec<(f64, u64)> = buckets
            .iter()
            .map(|&(le, n)| (le, n.saturating_sub(earlier(le))))
            .collect();
        let total = counts.last().map_or(0, |(_, n)| *n);
        if total == 0 {
            continue;
        }
        let within = |secs: f64| {
            counts
                .iter()
                .filter(|(le, _)| *le <= secs + 1e-9)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0) as f64
                / total as f64
        };
        let p99_at_most_ms = counts
            .iter()
            .find(|(_, n)| *n as f64 >= 0.99 * total as f64)
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
            .map(|le| le * 1000.0);
        out.insert(
            route.clone(),
            EdgeFigures {
                requests: total,
                within_50ms: within(0.05),
                within_100ms: within(0.1),
                p99_at_most_ms,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(join: [u64; 4]) -> String {
        format!(
            "# TYPE {METRIC} histogram\n\
             {METRIC}{{route=\"join\",le=\"0.01\"}} {}\n\
             {METRIC}{{route=\"join\",le=\"0.05\"}} {}\n\
             {METRIC}{{route=\"join\",le=\"0.1\"}} {}\n\
             {METRIC}{{route=\"join\",le=\"+Inf\"}} {}\n\
             floodgate_gateway_requests_total{{route=\"join\",status=\"2xx\"}} 9\n",
            join[0], join[1], join[2], join[3]
        )
    }

    #[test]
    fn only_the_answers_between_the_readings_count() {
        let before = parse(&exposition([100, 100, 100, 100]));
        // 1,000 more answers: 900 within 10 ms, 985 within 50 ms, 995 within 100 ms.
        let after = parse(&exposition([1_000, 1_085, 1_095, 1_100]));
        let f = &between(&before, &after)["join"];
        assert_eq!(f.requests, 1_000);
        assert!((f.within_50ms - 0.985).abs() < 1e-9, "{f:?}");
        assert!((f.within_100ms - 0.995).abs() < 1e-9, "{f:?}");
        assert_eq!(f.p99_at_most_ms, Some(100.0));
    }

    #[test]
    fn an_unread_side_is_said_not_shown_as_no_figures() {
        let read = Ok(parse(&exposition([1, 1, 1, 1])));
        let refused: anyhow::Result<Buckets> = Err(anyhow::anyhow!(
            "http://127.0.0.1:8080/metrics answered 404 Not Found"
        ));
        let why = compare(&read, &refused).unwrap_err();
        assert!(why.starts_with("after the crowd: "), "{why}");
        assert!(why.contains("404"), "{why}");
        assert!(compare(&refused, &read).unwrap_err().starts_with("before"));
        let elsewhere = Ok(parse("orders_requests_total 3\n"));
        assert!(compare(&read, &elsewhere).unwrap_err().contains(METRIC));
        assert_eq!(compare(&read, &read).unwrap().len(), 0);
    }

    #[test]
    fn the_default_url_is_on_the_metrics_listener() {
        assert_eq!(
            listener_url(DEFAULT_LISTEN),
            "http://127.0.0.1:9080/metrics"
        );
        assert_eq!(
            listener_url("0.0.0.0:19089"),
            "http://127.0.0.1:19089/metrics"
        );
        assert_eq!(listener_url("[::]:9080"), "http://[::1]:9080/metrics");
        assert_eq!(
            listener_url("localhost:9080"),
            "http://localhost:9080/metrics"
        );
    }

    #[test]
    fn a_tail_past_the_last_bound_has_no_p99_bound() {
        let after = parse(&exposition([10, 20, 30, 100]));
        let f = &between(&Buckets::new(), &after)["join"];
        assert_eq!(f.requests, 100);
        assert_eq!(f.p99_at_most_ms, None);
        assert!((f.within_100ms - 0.3).abs() < 1e-9);
    }
}
