//! The console process and its command line: `console serve`, `console migrate`,
//! `console token create --role admin --name NAME` (prints the token once).

use std::time::Duration;

use clap::{Parser, Subcommand};
use console::app::{AppState, router};
use console::auth::{self, Role};
use console::config::ConsoleConfig;
use orders::telemetry::HttpMetrics;
use waitroom::queue::Waitroom;

#[derive(Parser)]
#[command(about = "Floodgate operator console")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the console (CONSOLE_LISTEN).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage operator API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage operator accounts (people who sign in to the console).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator; the password is read from CONSOLE_PASSWORD or standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is not stored, only its hash).
    Create {
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = ConsoleConfig::from_env();
    let db = orders::db::connect(&config.database_url, 10).await?;
    orders::db::migrate(&db).await?;
    match cli.command {
        Command::Migrate => {
            eprintln!("migrations applied");
        }
        Command::Token {
            command: TokenCommand::Create { role, name },
        } => {
            let (_, token) = auth::create_token(&db, &name, role).await?;
            println!("{token}");
        }
        Command::Operator {
            command: OperatorCommand::Create { email, name, role },
        } => {
            let password = match std::env::var("CONSOLE_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            console::sessions::create_operator(&db, &email, &name, role, &password).await?;
            eprintln!("operator {email} created");
        }
        Command::Serve => {
            let room = Waitroom::connect(&config.redis).await?;
            let metrics = HttpMetrics::new("console");
            let live = console::live::Hub::new(&metrics.registry, Duration::from_secs(15));
            let state = AppState {
                db,
                room,
                metrics,
                live,
                secure_cookies: std::env::var("FLOODGATE_PUBLIC_URL")
                    .is_ok_and(|u| u.starts_with("https://")),
            };
            tokio::spawn(console::admission::mirror_forever(
                state.clone(),
                console::admission::MIRROR_EVERY,
            ));
            tokio::spawn(console::live::export_forever(
                state.clone(),
                Duration::from_secs(15),
            ));
            let listener = orders::listener::bind(&config.listen).await?;
            tracing::info!(listen = %config.listen, "console starting");
            axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
