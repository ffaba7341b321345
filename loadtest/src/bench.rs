//! `loadtest bench`: every baseline of the performance targets in one run, printed
//! as ratios against the targets (issue 7). The edge figures come from
//! `infra/bench/edge` (wrk against a release stack and a private nginx, raw Redis
//! INCR), the holds figures from `bench-holds` (pgbench's bare UPDATE against the
//! orders group commit); both interleave the system and its baseline so the noise of
//! a shared machine hits both. Writes `target/loadtest/bench.json` and `bench.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use serde::Serialize;

use crate::bench_holds;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The edge bench script.
    #[arg(long, default_value = "infra/bench/edge")]
    pub edge: PathBuf,
    /// Seconds per holds case (bench-holds).
    #[arg(long, default_value_t = 10)]
    pub holds_seconds: u64,
    /// Clients of the holds cases.
    #[arg(long, default_value_t = 32)]
    pub holds_clients: usize,
    /// Postgres for the holds cases (scratch databases are made and dropped).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Where bench.json, bench.md and the edge's raw outputs go.
    #[arg(long, default_value = "target/loadtest")]
    pub out_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Target {
    what: &'static str,
    ours: f64,
    baseline: f64,
    ratio: f64,
    goal: f64,
    met: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let edge_out = std::path::absolute(args.out_dir.join("bench-edge"))?;
    let _ = std::fs::remove_dir_all(&edge_out);
    println!("bench: edge ({} …)", args.edge.display());
    let status = tokio::process::Command::new(&args.edge)
        .env("BENCH_OUT", &edge_out)
        .status()
        .await
        .with_context(|| format!("running {}", args.edge.display()))?;
    ensure!(status.success(), "the edge bench failed ({status})");
    let edge = medians(&std::fs::read_to_string(edge_out.join("results.tsv"))?);

    println!(
        "bench: holds (bench-holds, {} s per case)",
        args.holds_seconds
    );
    let holds = bench_holds::run(bench_holds::Options {
        seconds: args.holds_seconds,
        clients: args.holds_clients,
        pgbench_threads: 2,
        database_url: args.database_url.clone(),
        redis_url: "redis://127.0.0.1:6379".into(),
        pgbench: None,
        out: args.out_dir.join("bench-holds.json"),
    })
    .await?;
    let case = |name: &str| {
        holds
            .results
            .iter()
            .find(|m| m.case == name)
            .map_or(0.0, |m| m.per_second)
    };

    let get = |name: &str| edge.get(name).copied().unwrap_or(0.0);
    let target = |what, ours: f64, baseline: f64, goal: f64| {
        let ratio = if baseline > 0.0 { ours / baseline } else { 0.0 };
        Target {
            what,
            ours,
            baseline,
            ratio,
            goal,
            met: ratio >= goal,
        }
    };
    let targets = vec![
        target(
            "pass-through: gateway vs nginx proxy_pass (keepalive)",
            get("gw-pass"),
            get("nginx-pass"),
            1.0,
        ),
        target(
            "status polls: gateway vs nginx return 200",
            get("gw-status"),
            get("nginx-get"),
            0.5,
        ),
        target(
            "joins: gateway vs raw Redis INCR",
            get("gw-join"),
            get("redis-incr"),
            0.5,
        ),
        target(
            "holds on one hot tier: orders (in-process) vs bare UPDATE",
            case("c"),
            case("a"),
            5.0,
        ),
        target(
            "holds on one hot tier: orders HTTP API vs bare UPDATE",
            case("d"),
            case("a"),
            5.0,
        ),
    ];
    let mut md = String::from(
        "| target | ours /s | baseline /s | ratio | goal | met |\n| --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    for t in &targets {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2}× | ≥ {}× | {} |\n",
            t.what,
            t.ours,
            t.baseline,
            t.ratio,
            t.goal,
            if t.met { "yes" } else { "**no**" }
        ));
    }
    println!("\n{md}");
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(args.out_dir.join("bench.md"), &md)?;
    std::fs::write(
        args.out_dir.join("bench.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "targets": targets, "edge_medians": edge, "holds": holds,
        }))?,
    )?;
    println!(
        "bench: written to {} (edge raw outputs in {})",
        args.out_dir.join("bench.{json,md}").display(),
        edge_out.display()
    );
    Ok(())
}

/// Median req/s per measurement name from the edge bench's results.tsv
/// (name, round, req/s, ...; warm-ups are not in it).
fn medians(tsv: &str) -> BTreeMap<String, f64> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in tsv.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if let [name, _round, rps, ..] = cols.as_slice()
            && let Ok(v) = rps.parse::<f64>()
        {
            by.entry((*name).to_owned()).or_default().push(v);
        }
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let m = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            (k, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::medians;

    #[test]
    fn medians_of_the_edge_rounds() {
        let tsv = "gw-status\t1\t100.5\t1\t2\t0\tnone\n\
                   gw-status\t2\t300\t1\t2\t0\tnone\n\
                   gw-status\t3\t200\t1\t2\t0\tnone\n\
                   redis-incr\t1\t50\tNA\tNA\t0\tnone\n\
                   redis-incr\t2\t70\tNA\tNA\t0\tnone\n";
        let m = medians(tsv);
        assert_eq!(m["gw-status"], 200.0);
        assert_eq!(m["redis-incr"], 60.0);
    }
}
