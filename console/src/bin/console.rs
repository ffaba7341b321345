//! The console process and its command line: `console serve`, `console migrate`,
//! `console token create --role admin --name NAME` (prints the token once).

use clap::{Parser, Subcommand};
use console::auth::{self, Role};
use console::config::ConsoleConfig;
use console::startup::Application;
use platform::shutdown::Shutdown;

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
    platform::logs::init();
    let cli = Cli::parse();
    let config = ConsoleConfig::from_env()?;
    match cli.command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(listen = %app.local_addr(), "console starting");
            app.run_until_stopped(Shutdown::on_signal()).await?;
        }
        Command::Migrate => {
            console::startup::connect(&config).await?;
            eprintln!("migrations applied");
        }
        Command::Token {
            command: TokenCommand::Create { role, name },
        } => {
            let db = console::startup::connect(&config).await?;
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
            let db = console::startup::connect(&config).await?;
            console::sessions::create_operator(&db, &email, &name, role, &password).await?;
            eprintln!("operator {email} created");
        }
    }
    Ok(())
}
