//! What the gateway itself measured: its request-duration histogram (`/metrics`,
//! Prometheus text) read before and after the crowd. The difference is the time the
//! edge spent per request, without the simulator's scheduling or the client side's
//! queueing, so the report can say on which side of the wire a latency tail lives.

use std::collections::BTreeMap;

use serde::Serialize;

const METRIC: &str = "floodgate_gateway_request_duration_seconds_bucket";

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

/// Reads the gateway's histogram; `None` when it cannot be read (the report then
/// simply has no edge figures).
pub async fn read(http: &reqwest::Client, base: &str) -> Option<Buckets> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()?;
    Some(parse(&text))
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
    fn a_tail_past_the_last_bound_has_no_p99_bound() {
        let after = parse(&exposition([10, 20, 30, 100]));
        let f = &between(&Buckets::new(), &after)["join"];
        assert_eq!(f.requests, 100);
        assert_eq!(f.p99_at_most_ms, None);
        assert!((f.within_100ms - 0.3).abs() < 1e-9);
    }
}
