//! The fulfilment service: JetStream consumer, email sender, `/join` (FULFILMENT_LISTEN).

use fulfilment::config::FulfilmentConfig;
use fulfilment::startup::Application;
use platform::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::logs::init();
    let config = FulfilmentConfig::from_env()?;
    let app = Application::build(config).await?;
    tracing::info!(listen = %app.local_addr(), "fulfilment starting");
    app.run_until_stopped(Shutdown::on_signal()).await
}
