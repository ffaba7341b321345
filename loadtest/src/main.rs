//! `loadtest`: the on-sale simulator's command line. Today it verifies pre-queue
//! lotteries; the on-sale simulation, verdict and benchmarks join it (issue 7).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use waitroom::lottery::LotteryRecord;

#[derive(Parser)]
#[command(about = "Floodgate on-sale simulator and verifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recompute an event's pre-queue draw from its revealed seed and compare it with
    /// the published order. Exits non-zero on any mismatch.
    Lottery {
        /// Gateway base URL.
        #[arg(
            long,
            env = "FLOODGATE_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// Event slug.
        #[arg(long)]
        event: String,
        /// Read the record from this JSON file instead of the gateway.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lottery { url, event, file } => {
            let record: LotteryRecord = match file {
                Some(path) => serde_json::from_slice(&std::fs::read(path)?)?,
                None => {
                    let r = reqwest::get(format!("{url}/queue/{event}/lottery")).await?;
                    anyhow::ensure!(r.status().is_success(), "gateway answered {}", r.status());
                    r.json().await?
                }
            };
            record.verify()?;
            println!(
                "lottery for {} verified: {} entrants, seed {} matches commitment {}",
                record.event,
                record.entrants.len(),
                record.seed.as_deref().unwrap_or("-"),
                record.commitment
            );
            Ok(())
        }
    }
}
