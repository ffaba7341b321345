//! The reports: `report.json` with every figure, and `report.html` with the verdict,
//! the tables and plots (plotters, SVG inlined).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::chart::{ChartContext, SeriesAnno};
use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use serde::Serialize;

use super::stats::{Figures, Step};
use super::verdict::Check;

/// One sample of the run's state, every 250 ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub t_ms: u64,
    pub arrived: u64,
    /// Buyers in line, as the crowd counts them.
    pub waiting: u64,
    /// Waiting as the server counts it (the console's admission view), when read.
    pub server_waiting: Option<u64>,
    /// Buyers told "sold out" who keep watching in case seats come back.
    pub watching: u64,
    pub admitted: u64,
    pub held: u64,
    pub paid: u64,
    pub finished: u64,
    pub in_flight: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub verdict: &'static str,
    pub run_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub settings: serde_json::Value,
    pub event: serde_json::Value,
    pub duration_s: f64,
    pub crowd_duration_s: f64,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub checks: Vec<Check>,
    /// Per step: count, throughput, latency percentiles (ms) and the CDF.
    pub steps: BTreeMap<&'static str, Figures>,
    /// Per step: HTTP status → count ("error" = no answer).
    pub statuses: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// How late the simulator's own tasks woke during the crowd (inside every latency).
    pub simulator_lag: Option<super::lag::LagFigures>,
    /// Connections the machine's kernel dropped during the crowd (full accept queues).
    pub tcp_drops: Option<super::lag::TcpDrops>,
    /// Per gateway route: the answers as the gateway timed them during the crowd.
    pub edge: BTreeMap<String, super::edge::EdgeFigures>,
    /// Why there are no edge figures: the gateway's metrics could not be read.
    pub edge_unread: Option<String>,
    pub timeline: Vec<Point>,
    /// How often the wait shown at the join was met (issue 19.1).
    pub eta_at_join: Option<super::estimates::EtaAccuracy>,
    /// Buyers whose visit failed, timed out or did not finish (at most 50), in full.
    pub notable_buyers: Vec<super::crowd::Record>,
    /// The fault injected during the run (`loadtest chaos`), if any.
    pub disruption: Option<super::Disrupted>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;
/// A line over time: label, colour, points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
/// A cumulative distribution: label, colour, `(value, quantile)` points.
type CdfSeries<'a> = (&'a str, RGBColor, &'a [(f64, f64)]);

const W: u32 = 860;
const H: u32 = 360;

/// What a chart is drawn on.
type Root<'s> = DrawingArea<SVGBackend<'s>, plotters::coord::Shift>;

/// A `W`×`H` SVG on white, drawn by `draw`: the plot inlined in the report, or a note
/// in its place that it failed (the rest of the report is still worth having).
fn svg_chart(draw: impl FnOnce(&Root<'_>) -> PlotResult) -> String {
    let mut svg = String::new();
    let drawn: PlotResult = (|| {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => format!("<p>plot failed: {}</p>", esc(&e.to_string())),
    }
}

/// A chart on `root` in the report's style, titled `title`, for its axes to be added.
fn chart_on<'a, 's>(root: &'a Root<'s>, title: &str) -> ChartBuilder<'a, 'static, SVGBackend<'s>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56);
    builder
}

/// Names a line just drawn in the legend, with a stroke of its colour.
fn in_legend(line: &mut SeriesAnno<'_, SVGBackend<'_>>, label: &str, colour: RGBColor) {
    line.label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
}

/// The legend box, placed `at`.
fn draw_legend<'s, CT: CoordTranslate>(
    chart: &mut ChartContext<'s, SVGBackend<'s>, CT>,
    at: SeriesLabelPosition,
) -> PlotResult {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Lines over time: `series` = (label, colour, points).
fn time_chart(title: &str, y_desc: &str, series: &[Series<'_>]) -> String {
    svg_chart(|root| {
        let x_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let y_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(1.0f64, f64::max)
            * 1.05;
        let mut chart = chart_on(root, title).build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since opening")
            .y_desc(y_desc)
            .draw()?;
        for (label, colour, points) in series {
            let line = LineSeries::new(points.iter().copied(), colour.stroke_width(2));
            in_legend(chart.draw_series(line)?, label, *colour);
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Cumulative distributions on a log latency axis.
fn cdf_chart(title: &str, series: &[CdfSeries<'_>]) -> String {
    svg_chart(|root| {
        let all = || series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
        let x_min = all().filter(|v| *v > 0.0).fold(f64::MAX, f64::min).min(1.0) * 0.8;
        let x_max = all().fold(1.0f64, f64::max) * 1.25;
        let x_min = if x_min.is_finite() && x_min > 0.0 {
            x_min
        } else {
            0.01
        };
        let mut chart =
            chart_on(root, title).build_cartesian_2d((x_min..x_max).log_scale(), 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc("milliseconds (log)")
            .y_desc("share of requests at or below")
            .draw()?;
        for (label, colour, points) in series {
            if points.is_empty() {
                continue;
            }
            let line = LineSeries::new(
                points.iter().map(|(v, q)| (v.max(x_min), *q)),
                colour.stroke_width(2),
            );
            in_legend(chart.draw_series(line)?, label, *colour);
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub fn html(r: &Report) -> String {
    let secs = |p: &Point| p.t_ms as f64 / 1000.0;
    let tl = &r.timeline;
    // One count of the timeline as a line.
    let line =
        |label: &'static str, colour: RGBColor, count: fn(&Point) -> u64| -> Series<'static> {
            let points = tl.iter().map(|p| (secs(p), count(p) as f64)).collect();
            (label, colour, points)
        };
    let depth = time_chart(
        "Queue depth over time",
        "buyers waiting",
        &[
            line("waiting (crowd)", PALETTE[0], |p| p.waiting),
            (
                "waiting (server)",
                PALETTE[1],
                tl.iter()
                    .filter_map(|p| Some((secs(p), p.server_waiting? as f64)))
                    .collect(),
            ),
            line("watching sold out", PALETTE[4], |p| p.watching),
            line("buying now", PALETTE[3], |p| p.in_flight),
        ],
    );
    let flow = time_chart(
        "Admitted vs arrivals",
        "buyers (cumulative)",
        &[
            line("arrived", PALETTE[0], |p| p.arrived),
            line("admitted", PALETTE[2], |p| p.admitted),
            line("held", PALETTE[1], |p| p.held),
            line("paid", PALETTE[3], |p| p.paid),
        ],
    );
    let req_series: Vec<CdfSeries<'_>> = Step::REQUESTS
        .iter()
        .filter_map(|s| r.steps.get(s.name()).map(|f| (s.name(), f.cdf.as_slice())))
        .enumerate()
        .map(|(i, (s, cdf))| (s, PALETTE[i % PALETTE.len()], cdf))
        .collect();
    let latency = cdf_chart("Request latency CDFs", &req_series);
    let journey_series: Vec<CdfSeries<'_>> = ["queue_wait", "order_paid", "email"]
        .iter()
        .filter_map(|s| r.steps.get(s).map(|f| (*s, f.cdf.as_slice())))
        .enumerate()
        .map(|(i, (s, cdf))| (s, PALETTE[(i + 4) % PALETTE.len()], cdf))
        .collect();
    let journey = cdf_chart(
        "Queue wait, payment → paid, payment → email",
        &journey_series,
    );

    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>On-sale {run}: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #111; }}
h1 span.pass {{ color: #1a7f37; }} h1 span.fail {{ color: #cf222e; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
th:first-child, td:first-child, td.l {{ text-align: left; }}
tr.fail td {{ background: #ffebe9; }} tr.pass td:first-child {{ color: #1a7f37; }}
svg {{ max-width: 100%; height: auto; display: block; margin: 1rem 0; }}
code {{ font-size: 0.85rem; }}
</style></head><body>
<h1>On-sale {run}: <span class="{cls}">{verdict}</span></h1>
<p>Event <code>{slug}</code>, started {started}, {dur:.1} s in all ({crowd:.1} s for the crowd).</p>
"#,
        run = esc(&r.run_id),
        verdict = r.verdict,
        cls = if r.passed() { "pass" } else { "fail" },
        slug = esc(r.event["slug"].as_str().unwrap_or("")),
        started = r.started_at.to_rfc3339(),
        dur = r.duration_s,
        crowd = r.crowd_duration_s,
    );
    h.push_str("<h2>Verdict</h2><table><tr><th>check</th><th>result</th><th>numbers</th></tr>");
    for c in &r.checks {
        let _ = write!(
            h,
            r#"<tr class="{cls}"><td>{name}</td><td>{res}</td><td class="l">{summary}</td></tr>"#,
            cls = if c.pass { "pass" } else { "fail" },
            name = esc(c.name),
            res = if c.pass { "pass" } else { "FAIL" },
            summary = esc(&c.summary),
        );
    }
    h.push_str("</table><h2>Buyers</h2><table><tr><th>outcome</th><th>buyers</th></tr>");
    for (k, n) in &r.outcomes {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
    }
    h.push_str("</table><h2>Steps</h2><table><tr><th>step</th><th>count</th><th>per s</th><th>mean ms</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for (k, f) in &r.steps {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            esc(k),
            f.count,
            f.throughput_per_s,
            f.mean_ms,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.p999_ms,
            f.max_ms
        );
    }
    h.push_str("</table><p>Derived steps: <code>queue_wait</code> join → admitted; <code>order_paid</code> payment confirmed → order page says paid; <code>email</code> <code>paid_at</code> → confirmation at the SMTP sink.</p>");
    if let Some(line) = eta_line(r) {
        let _ = write!(h, "<p>{}.</p>", esc(&capitalised(&line)));
    }
    if let Some(l) = &r.simulator_lag {
        let _ = write!(
            h,
            "<p>The simulator's own lag (how late its tasks woke; inside every latency above): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} ticks.</p>",
            l.p50_ms, l.p99_ms, l.max_ms, l.samples
        );
    }
    if let Some(d) = &r.tcp_drops {
        let _ = write!(h, "<p>The machine: {}.</p>", esc(&drops_line(d)));
    }
    if !r.edge.is_empty() {
        h.push_str("<h3>As the gateway timed its answers</h3><table><tr><th>route</th><th class=\"l\">answers</th></tr>");
        for (route, e) in &r.edge {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(route),
                esc(&edge_line(e))
            );
        }
        h.push_str("</table>");
    }
    if let Some(why) = &r.edge_unread {
        let _ = write!(
            h,
            "<h3>As the gateway timed its answers</h3><p>Not known: the gateway's metrics could not be read ({}).</p>",
            esc(why)
        );
    }
    h.push_str("<h2>Answers</h2><table><tr><th>step</th><th class=\"l\">status: count</th></tr>");
    for (k, codes) in &r.statuses {
        let cells: Vec<String> = codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(k),
            esc(&cells.join(", "))
        );
    }
    h.push_str("</table><h2>Plots</h2><p>Waiting (crowd): buyers in line who have not yet seen themselves admitted (they learn it at their next poll); waiting (server): places not yet admitted, from the console's admission view; watching sold out: buyers told \"sold out\" who keep polling while others are still buying, in case seats come back.</p>");
    for svg in [depth, flow, latency, journey] {
        h.push_str(&svg);
    }
    let _ = writeln!(
        h,
        "<h2>Settings</h2><pre>{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(&r.settings).unwrap_or_default())
    );
    h
}

fn drops_line(d: &super::lag::TcpDrops) -> String {
    format!(
        "{} connections dropped by full accept queues, {} SYNs sent again (each a 1 s+ wait)",
        d.listen_overflows, d.syn_retransmits
    )
}

/// One route's answers as the gateway timed them, in words.
fn edge_line(e: &super::edge::EdgeFigures) -> String {
    format!(
        "n={:<6} within 50 ms {:.2} %  within 100 ms {:.2} %  p99 {}",
        e.requests,
        e.within_50ms * 100.0,
        e.within_100ms * 100.0,
        e.p99_at_most_ms
            .map_or("over 5 s".to_owned(), |ms| format!("≤ {ms} ms"))
    )
}

/// How well the wait shown at the join was met, in one sentence.
fn eta_line(r: &Report) -> Option<String> {
    let a = r.eta_at_join.as_ref()?;
    Some(format!(
        "wait shown at the join: met within ±30 % for {:.1} % of the {} buyers told to wait (median actual ÷ shown {:.2})",
        a.share * 100.0,
        a.buyers,
        a.median_ratio
    ))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The verdict as a few lines for the terminal.
pub fn text(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "on-sale {} ({}):",
        r.run_id,
        r.event["slug"].as_str().unwrap_or("")
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(t, "  buyers: {}", outcomes.join(", "));
    if let Some(d) = &r.disruption {
        let _ = writeln!(
            t,
            "  fault: injected at {:.1} s, recovered at {:.1} s, {} errors forgiven while on{}",
            d.injected_ms as f64 / 1000.0,
            d.recovered_ms as f64 / 1000.0,
            d.forgiven_errors,
            if d.note.is_empty() {
                String::new()
            } else {
                format!("; {}", d.note)
            }
        );
    }
    for k in [
        "join",
        "status",
        "hold",
        "checkout",
        "pay",
        "order",
        "order_paid",
        "email",
        "queue_wait",
    ] {
        if let Some(f) = r.steps.get(k) {
            let _ = writeln!(
                t,
                "  {k:<11} n={:<6} {:>8.1}/s  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
                f.count, f.throughput_per_s, f.p50_ms, f.p99_ms, f.max_ms
            );
        }
    }
    if let Some(line) = eta_line(r) {
        let _ = writeln!(t, "  {line}");
    }
    if let Some(l) = &r.simulator_lag {
        let _ = writeln!(
            t,
            "  simulator lag (inside every latency above): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    if let Some(d) = &r.tcp_drops {
        let _ = writeln!(t, "  machine: {}", drops_line(d));
    }
    for (route, e) in &r.edge {
        let _ = writeln!(t, "  edge {route:<8} {}", edge_line(e));
    }
    if let Some(why) = &r.edge_unread {
        let _ = writeln!(t, "  edge: gateway metrics not read: {why}");
    }
    for c in &r.checks {
        let _ = writeln!(
            t,
            "  [{}] {}: {}",
            if c.pass { "pass" } else { "FAIL" },
            c.name,
            c.summary
        );
    }
    let _ = write!(t, "verdict: {}", r.verdict);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_has_the_verdict_and_svg_plots() {
        let timeline: Vec<Point> = (0..40)
            .map(|i| Point {
                t_ms: i * 250,
                arrived: i * 10,
                waiting: 40 - i,
                server_waiting: Some(39 - i.min(39)),
                watching: 0,
                admitted: i * 5,
                held: i * 2,
                paid: i,
                finished: i,
                in_flight: 3,
            })
            .collect();
        let mut h = super::super::stats::histogram();
        for v in 1..500u64 {
            h.record(v * 100).unwrap();
        }
        let steps = BTreeMap::from([("join", super::super::stats::figures(&h, 1000))]);
        let r = Report {
            verdict: "FAIL",
            run_id: "r1".into(),
            started_at: chrono::Utc::now(),
            settings: serde_json::json!({"buyers": 10}),
            event: serde_json::json!({"slug": "onsale-x"}),
            duration_s: 1.0,
            crowd_duration_s: 0.5,
            outcomes: BTreeMap::from([("paid", 3)]),
            checks: vec![Check {
                name: "no 5xx",
                pass: false,
                summary: "1 <bad>".into(),
                numbers: serde_json::Value::Null,
            }],
            steps,
            statuses: BTreeMap::new(),
            simulator_lag: Some(super::super::lag::LagFigures {
                samples: 10,
                p50_ms: 0.2,
                p99_ms: 31.5,
                max_ms: 40.0,
            }),
            tcp_drops: Some(super::super::lag::TcpDrops {
                listen_overflows: 12,
                syn_retransmits: 9,
            }),
            edge: BTreeMap::from([(
                "join".to_owned(),
                super::super::edge::EdgeFigures {
                    requests: 100,
                    within_50ms: 0.97,
                    within_100ms: 1.0,
                    p99_at_most_ms: Some(100.0),
                },
            )]),
            edge_unread: None,
            timeline,
            eta_at_join: None,
            notable_buyers: Vec::new(),
            disruption: None,
        };
        let html = html(&r);
        assert!(html.contains("<svg"), "no svg");
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("1 &lt;bad&gt;"));
        assert!(!html.contains("plot failed"), "{html}");
        assert!(html.contains("31.5"), "simulator lag missing");
        let t = text(&r);
        assert!(t.contains("simulator lag"), "{t}");
        assert!(t.contains("edge join"), "{t}");
        assert!(t.contains("12 connections dropped"), "{t}");
        assert!(t.ends_with("verdict: FAIL"));

        // Unread edge metrics are said, in both reports, not left as a missing table.
        let r = Report {
            edge: BTreeMap::new(),
            edge_unread: Some(
                "before the crowd: http://127.0.0.1:8080/metrics answered 404".into(),
            ),
            ..r
        };
        let t = text(&r);
        assert!(
            t.contains("edge: gateway metrics not read: before the crowd"),
            "{t}"
        );
        assert!(super::html(&r).contains("metrics could not be read (before the crowd"));
    }
}
