//! The payment sandbox process (reads SANDBOX_LISTEN, SANDBOX_API_KEY,
//! SANDBOX_WEBHOOK_URL, SANDBOX_WEBHOOK_SECRET, SANDBOX_STATE_FILE and the fault
//! knobs; see the README).

use sandbox::{Sandbox, SandboxConfig, app};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    platform::logs::init();
    let config = SandboxConfig::from_env()?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    // Secrets print as *** (config::Secret).
    tracing::info!(
        listen = %listener.local_addr()?,
        webhook_url = %config.webhook_url,
        faults = ?config.faults,
        journal = ?config.state_file,
        "sandbox starting"
    );
    axum::serve(listener, app(Sandbox::new(config)?))
        .with_graceful_shutdown(platform::shutdown::signal())
        .await?;
    Ok(())
}
